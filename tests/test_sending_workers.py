"""Issue 12 through real `celery worker` processes (Redis broker, PostgreSQL, beat's sweep):
163.com throttles with 421 HL:IFC after 50 messages; QQ and Gmail go on, every 163 recipient
arrives exactly once after the backoff, shared throttle state across two workers."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections import Counter

import pytest
import redis as redis_lib
from celery import Celery
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session

from dispatch.config import load_settings
from dispatch.content.store import publish_source
from dispatch.db import make_engine, upgrade
from dispatch.delivery import campaigns
from dispatch.models import Campaign, Delivery, Event, MailingList, Subscriber, Subscription
from dispatch.tasks import CeleryQueue, configure
from smtp_server import ScriptedSmtpServer
from test_delivery_workers import CELERY, ROOT, _pg_database, _small_issue

pytestmark = pytest.mark.slow
REDIS_URL = os.environ.get("DISPATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def test_netease_throttle_through_real_workers(tmp_path):
    url, admin = _pg_database()
    engine = make_engine(url)
    upgrade(engine)
    qq, netease, gmail = (ScriptedSmtpServer().start() for _ in range(3))
    netease.script.throttle_after = 50
    netease.script.throttle_reply = "421 HL:IFC 127.0.0.1 too many mails in a short time"
    netease.script.throttle_seconds = 1.5
    providers = tmp_path / "providers.toml"
    providers.write_text(
        "[providers.qq]\nrate_per_second = 0\nmax_connections = 0\n"
        "[providers.netease]\nrate_per_second = 0\nrate_per_hour = 0\nmax_connections = 0\n"
        "[providers.gmail]\nrate_per_second = 0\nmax_connections = 0\n"
    )
    run = uuid.uuid4().hex[:8]
    relays = [
        {"name": "qq-mx", "url": qq.url, "providers": ["qq"]},
        {"name": "163-mx", "url": netease.url, "providers": ["netease"]},
        {"name": "gmail-mx", "url": gmail.url, "providers": ["gmail", "other"]},
    ]
    values = {
        "data_dir": str(tmp_path / "var"),
        "database_url": url,
        "broker_url": REDIS_URL,
        "redis_url": REDIS_URL,
        "redis_key_prefix": f"dispatch-test:{run}:",
        "celery_queue": f"dispatch-test-{run}",
        "relays": json.dumps(relays),
        "providers_file": str(providers),
        "smtp_timeout": "10",
        "secret_key": "test-secret-key-not-for-production",
        "public_base_url": "https://bulletin.example.org",
        "batch_size": "40",
        "lease_seconds": "10",
        "sweep_seconds": "0.5",
        "throttle_base_seconds": "1",
        "throttle_max_seconds": "4",
        "throttle_recovery_seconds": "2",
    }
    env = {**os.environ, **{f"DISPATCH_{k.upper()}": v for k, v in values.items()}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    settings = load_settings(env={k: v for k, v in env.items() if k.startswith("DISPATCH_")})
    app = configure(Celery(f"dispatch-test-{run}"), settings)
    procs: list[subprocess.Popen] = []
    try:
        with Session(engine) as session, session.begin():
            issue_id = publish_source(session, _small_issue(tmp_path / "issue")).id
        addresses = (
            [f"q{i}@qq.com" for i in range(150)]
            + [f"n{i}@163.com" for i in range(90)]
            + [f"g{i}@gmail.com" for i in range(60)]
        )
        with Session(engine) as session, session.begin():
            mailing_list = MailingList(slug="mix", name="mix", optin="single")
            session.add(mailing_list)
            session.flush()
            session.execute(
                insert(Subscriber),
                [{"email": a, "name": "读者", "status": "active"} for a in addresses],
            )
            ids = session.scalars(select(Subscriber.id)).all()
            session.execute(
                insert(Subscription),
                [
                    {"subscriber_id": i, "list_id": mailing_list.id, "status": "confirmed"}
                    for i in ids
                ],
            )
            campaign, _ = campaigns.create_or_get(
                session, issue_id=issue_id, channel="email", list_ids=[mailing_list.id]
            )
            campaign_id = campaign.id
        for name in ("w1", "w2"):
            log = open(tmp_path / f"{name}.log", "ab")
            procs.append(
                subprocess.Popen(
                    [*CELERY, "-Q", settings.celery_queue, "-n", f"{name}@%h"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        beat_log = open(tmp_path / "beat.log", "ab")
        procs.append(
            subprocess.Popen(
                [
                    *CELERY[:4],
                    "worker",
                    "beat",
                    "-l",
                    "WARNING",
                    "-s",
                    str(tmp_path / "beat-schedule"),
                    "--pidfile=",
                ],
                cwd=ROOT,
                env=env,
                stdout=beat_log,
                stderr=subprocess.STDOUT,
            )
        )
        campaigns.start(engine, settings, campaign_id, CeleryQueue(app, settings.celery_queue))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with Session(engine) as session:
                status = session.get(Campaign, campaign_id).status
            if status in ("finished", "paused", "failed"):
                break
            time.sleep(0.3)
        with Session(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            counts = campaigns.counts(session, campaign_id)
            throttled = dict(
                session.execute(
                    select(Delivery.provider, func.count())
                    .join(Event, Event.delivery_id == Delivery.id)
                    .where(Event.campaign_id == campaign_id, Event.kind == "throttled")
                    .group_by(Delivery.provider)
                ).all()
            )
        logs = "\n".join(
            (tmp_path / f"{n}.log").read_text(errors="replace")[-2000:] for n in ("w1", "w2")
        )
        assert campaign.status == "finished", (campaign.paused_reason, counts, logs)
        got = Counter(r for s in (qq, netease, gmail) for m in s.messages for r in m.rcpt_tos)
        assert set(got) == set(addresses) and max(got.values()) == 1
        assert netease.script.throttled_replies >= 1 and set(throttled) == {"netease"}
        last_netease = max(m.received_at for m in netease.messages)
        assert max(m.received_at for m in qq.messages + gmail.messages) < last_netease
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for server in (qq, netease, gmail):
            server.stop()
        client = redis_lib.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{settings.redis_key_prefix}*", count=1000):
            client.delete(key)
        client.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{url.rpartition("/")[2]}" WITH (FORCE)'))
        admin.dispose()
