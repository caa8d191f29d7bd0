"""`dispatch bench send --providers`: does one provider's throttling slow the others down?

A campaign over a realistic mix (50 % qq.com, 20 % 163.com, 10 % gmail.com, 20 % other
domains) is sent twice through real Celery workers (Redis broker, a fresh PostgreSQL
database), each provider's mail going to its own local "MX" (an aiosmtpd server on loopback,
counting): (A) nobody throttles; (B) NetEase's MX answers `421 HL:IFC` for a few seconds every
time it has taken a burst of messages. The figure is the rate the non-throttled providers
(QQ, Gmail, other) reach in B against A, measured from the campaign's start to their last
message; the target is at least 90 %. A run stops once every non-NetEase recipient is served
(NetEase's tail, which is deliberately slowed, is reported but not waited for).

The provider table's rates are lifted for the bench (an override file), so the figure is the
engine's isolation of a throttled provider, not the shipped cautious rates.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from dispatch.config import Settings, set_settings
from dispatch.dev.bench import bench_settings
from dispatch.i18n import Catalog
from dispatch.outbox import free_port

MESSAGES = Catalog(
    {
        "run_a": (
            "(A) 不限速：其他服务商 {n} 封 {s:.1f} 秒，{rate:.0f} 封/秒；网易已发 {ne} 封",
            "(A) nobody throttles: other providers {n} messages in {s:.1f} s, {rate:.0f} msg/s; "
            "NetEase sent {ne}",
        ),
        "run_b": (
            "(B) 网易限速：其他服务商 {n} 封 {s:.1f} 秒，{rate:.0f} 封/秒；网易已发 {ne} 封，"
            "限速回复 {thr} 次",
            "(B) NetEase throttles: other providers {n} messages in {s:.1f} s, {rate:.0f} msg/s; "
            "NetEase sent {ne}, throttle replies {thr}",
        ),
        "ratio": (
            "网易限速时其他服务商保持 {ratio:.0%} 的速度（目标 ≥ 90%）",
            "with NetEase throttling the other providers keep {ratio:.0%} of their rate (target ≥ "
            "90%)",
        ),
    }
)

MIX = (("qq.com", 5), ("163.com", 2), ("gmail.com", 1), ("other", 2))  # tenths
OTHER_DOMAINS = ("pku.edu.cn", "tsinghua.edu.cn", "corp.example.cn", "sina.com", "outlook.com")
FAST_TABLE = """
[providers.qq]
rate_per_second = 0
max_connections = 0
[providers.netease]
rate_per_second = 0
rate_per_hour = 0
max_connections = 0
[providers.gmail]
rate_per_second = 0
max_connections = 0
[providers.sina]
rate_per_second = 0
max_connections = 0
[providers.microsoft]
rate_per_second = 0
max_connections = 0
"""


@dataclass
class MxCounter:
    """A counting MX: accepts everything, or answers a throttle reply for `pause` seconds
    after every `burst` messages it took."""

    name: str
    burst: int = 0
    pause: float = 0.0
    reply: str = "421 HL:IFC 127.0.0.1 too many mails in a short time"
    accepted: int = 0
    last_at: float = 0.0
    throttled: int = 0
    since_pause: int = 0
    paused_until: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        with self.lock:
            if self.burst and time.monotonic() < self.paused_until:
                self.throttled += 1
                return self.reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.accepted += len(envelope.rcpt_tos)
            self.last_at = time.monotonic()
            self.since_pause += 1
            if self.burst and self.since_pause >= self.burst:
                self.since_pause = 0
                self.paused_until = time.monotonic() + self.pause
        return "250 2.0.0 OK"


def _start(handler: MxCounter):
    from aiosmtpd.controller import Controller

    port = free_port("127.0.0.1")
    controller = Controller(handler, hostname="127.0.0.1", port=port, ready_timeout=10)
    controller.start()
    return controller, f"smtp://127.0.0.1:{port}"


def _seed(settings: Settings, recipients: int) -> tuple[int, int, dict[str, int]]:
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from dispatch.content.store import publish_source
    from dispatch.db import make_engine
    from dispatch.dev.bench.send import SAMPLE_ISSUE
    from dispatch.models import utcnow
    from dispatch.models.subscriber import MailingList, Subscriber, Subscription

    engine = make_engine(settings.resolved_database_url)
    now = utcnow()
    shares: dict[str, int] = {}
    addresses = []
    for i in range(recipients):
        tenth = i % 10
        acc = 0
        domain = "other"
        for candidate, share in MIX:
            acc += share
            domain = candidate
            if tenth < acc:
                break
        if domain == "other":
            domain = OTHER_DOMAINS[(i // 10) % len(OTHER_DOMAINS)]
        key = {"qq.com": "qq", "163.com": "netease", "gmail.com": "gmail"}.get(domain, "other")
        shares[key] = shares.get(key, 0) + 1
        addresses.append(f"reader{i}@{domain}")
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE)
        mailing_list = MailingList(slug="bench", name="Bench", optin="single", created_at=now)
        session.add(mailing_list)
        session.flush()
        issue_id, list_id = issue.id, mailing_list.id
        for start in range(0, recipients, 5000):
            session.execute(
                insert(Subscriber.__table__),
                [
                    {
                        "email": a,
                        "email_key": a,
                        "name": "读者",
                        "locale": "zh-CN",
                        "attributes": {},
                        "status": "active",
                        "created_at": now,
                    }
                    for a in addresses[start : start + 5000]
                ],
            )
        ids = session.scalars(select(Subscriber.id)).all()
        for start in range(0, len(ids), 5000):
            session.execute(
                insert(Subscription.__table__),
                [
                    {
                        "subscriber_id": i,
                        "list_id": list_id,
                        "status": "confirmed",
                        "created_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids[start : start + 5000]
                ],
            )
    engine.dispose()
    return issue_id, list_id, shares


def _ping(app, names: list[str]) -> list:
    """Workers answering; none while the shared Redis is briefly away (restarted by a test)."""
    try:
        return app.control.ping(destination=names, timeout=1.0)
    except Exception:  # noqa: BLE001 - kombu/redis connection errors: ask again
        time.sleep(1.0)
        return []


def run_once(
    base: Settings, recipients: int, workers: int, work: Path, *, throttle: bool
) -> dict[str, Any]:
    from sqlalchemy.orm import Session

    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.delivery.engine import sweep
    from dispatch.dev.bench.send import WorkerPool, _delete_redis_keys, fresh_database
    from dispatch.tasks import CeleryQueue, app, configure

    mx = {
        "qq": MxCounter("qq"),
        "netease": MxCounter("netease", burst=150 if throttle else 0, pause=4.0),
        "gmail": MxCounter("gmail"),
        "other": MxCounter("other"),
    }
    controllers, urls = {}, {}
    for name, handler in mx.items():
        controllers[name], urls[name] = _start(handler)
    tag = uuid.uuid4().hex[:8]
    table = work / "providers.toml"
    table.write_text(FAST_TABLE)
    relays = [
        {"name": f"{name}-mx", "url": url, "providers": [name]}
        for name, url in urls.items()
        if name != "other"
    ] + [{"name": "other-mx", "url": urls["other"], "providers": ["other", "sina", "microsoft"]}]
    try:
        with fresh_database() as url:
            settings = base.replace(
                database_url=url,
                celery_queue=f"dispatch-bench-{tag}",
                relays=relays,
                providers_file=str(table),
            )
            issue_id, list_id, shares = _seed(settings, recipients)
            set_settings(settings)
            configure(app, settings)
            pool = WorkerPool(settings, workers, work)
            pool.env.update(
                {
                    "DISPATCH_RELAYS": json.dumps(relays),
                    "DISPATCH_PROVIDERS_FILE": str(table),
                    "DISPATCH_THROTTLE_BASE_SECONDS": str(settings.throttle_base_seconds),
                    "DISPATCH_THROTTLE_MAX_SECONDS": str(settings.throttle_max_seconds),
                    "DISPATCH_THROTTLE_RECOVERY_SECONDS": str(settings.throttle_recovery_seconds),
                    "DISPATCH_PROVIDER_MX_LOOKUP": "0",
                }
            )
            queue = CeleryQueue(app, settings.celery_queue)
            others = shares["qq"] + shares["gmail"] + shares["other"]
            try:
                pool.start_all()
                deadline = time.monotonic() + 90
                while len(_ping(app, pool.names)) < workers:
                    pool.sample()
                    if time.monotonic() > deadline:
                        raise click.ClickException(f"workers did not start:\n{pool.log_tail(0)}")
                engine = make_engine(url)
                with Session(engine) as session, session.begin():
                    campaign, _ = campaigns.create_or_get(
                        session, issue_id=issue_id, channel="email", list_ids=[list_id]
                    )
                    campaign_id = campaign.id
                started = time.monotonic()
                campaigns.start(engine, settings, campaign_id, queue)
                next_sweep = time.monotonic() + 1.0
                limit = time.monotonic() + 1800
                while time.monotonic() < limit:
                    served = mx["qq"].accepted + mx["gmail"].accepted + mx["other"].accepted
                    if served >= others:
                        break
                    pool.sample()
                    if time.monotonic() > next_sweep:
                        try:
                            sweep(engine, settings, queue)
                        except Exception as exc:  # noqa: BLE001 - broker away: the next sweep retries
                            click.echo(f"sweep failed: {exc}", err=True)
                        next_sweep = time.monotonic() + 1.0
                    time.sleep(0.1)
                last = max(mx[n].last_at for n in ("qq", "gmail", "other"))
                seconds = last - started
                try:  # NetEase's held tail is not waited for
                    with Session(engine) as session, session.begin():
                        campaigns.cancel(session, campaign_id, reason="benchmark done")
                except campaigns.CampaignError:  # finished already
                    pass
                engine.dispose()
            finally:
                pool.stop()
                _delete_redis_keys(settings.redis_key_prefix)
    finally:
        for controller in controllers.values():
            controller.stop()
    served = mx["qq"].accepted + mx["gmail"].accepted + mx["other"].accepted
    return {
        "others_sent": served,
        "others_expected": others,
        "seconds": round(seconds, 2),
        "others_rate": round(served / seconds, 1) if seconds > 0 else None,
        "netease_sent": mx["netease"].accepted,
        "netease_recipients": shares["netease"],
        "netease_throttle_replies": mx["netease"].throttled,
        "per_provider_sent": {name: h.accepted for name, h in mx.items()},
    }


def run(recipients: int, workers: int, as_json: bool) -> None:
    from dispatch.dev.bench.send import REDIS_URL

    work = Path(tempfile.mkdtemp(prefix="dispatch-bench-providers-"))
    base = bench_settings(
        data_dir=work / "var",
        secret_key="bench-secret-key",
        public_base_url="https://bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
        broker_url=REDIS_URL,
        redis_url=REDIS_URL,
        lease_seconds=120.0,
        # one prefix for both runs: the Celery app's broker connection keeps it (its keys are
        # deleted after each run)
        redis_key_prefix=f"dispatch-bench:{uuid.uuid4().hex[:8]}:",
        provider_mx_lookup=False,
        throttle_base_seconds=2.0,
        throttle_max_seconds=8.0,
        throttle_recovery_seconds=5.0,
    )
    result: dict[str, Any] = {
        "recipients": recipients,
        "workers": workers,
        "mix": "50% qq.com, 20% 163.com, 10% gmail.com, 20% other",
        "load_before": os.getloadavg(),
    }
    lines = []
    try:
        for key, throttle in (("no_throttle", False), ("netease_throttles", True)):
            measured = run_once(base, recipients, workers, work, throttle=throttle)
            result[key] = measured
            line = MESSAGES.both(
                "run_b" if throttle else "run_a",
                n=measured["others_sent"],
                s=measured["seconds"],
                rate=measured["others_rate"] or 0,
                ne=measured["netease_sent"],
                thr=measured["netease_throttle_replies"],
            )
            lines.append(line)
            if not as_json:
                click.echo(line)
    except BaseException:
        click.echo(f"logs kept in {work}", err=True)
        raise
    a, b = result["no_throttle"]["others_rate"], result["netease_throttles"]["others_rate"]
    result["ratio"] = round(b / a, 3) if a and b else None
    result["target"] = 0.9
    result["load_after"] = os.getloadavg()
    if result["ratio"] is not None and not as_json:
        click.echo(MESSAGES.both("ratio", ratio=result["ratio"]))
    shutil.rmtree(work, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
