"""Nothing said a worker must run (issue 9, item 3): workers and beat record heartbeats, and
`send`, `campaigns watch` (also piped) and the campaign page say when none has been seen."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session

from dispatch.cli import main
from dispatch.delivery import campaigns
from dispatch.delivery.heartbeat import missing_process_message, record
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign, utcnow
from dispatch.models.heartbeat import ProcessHeartbeat
from test_delivery_support import make_issue, make_list_with

NO_WORKER = "no worker has been seen yet: start one with `dispatch worker`"


def _running(engine, session, settings) -> int:
    issue = make_issue(session)
    members = make_list_with(session, "members", ["a@example.org", "b@example.org"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[members]
    )
    session.commit()
    campaigns.start(engine, settings, campaign.id, ListQueue())
    return campaign.id


def test_the_warning_follows_the_heartbeats(engine, session, settings):
    campaign_id = _running(engine, session, settings)
    campaign = session.get(Campaign, campaign_id)
    assert missing_process_message(session, settings, campaign).endswith(NO_WORKER)
    record(engine, "worker", "worker@test:1")
    assert missing_process_message(session, settings, campaign) is None
    session.execute(update(ProcessHeartbeat).values(seen_at=utcnow() - timedelta(seconds=95)))
    session.commit()
    text = missing_process_message(session, settings, campaign, locale="en")
    assert text.startswith("no worker has been seen for 9") and "`dispatch worker`" in text
    zh = missing_process_message(session, settings, campaign, locale="zh-CN")
    assert "秒没有看到 worker" in zh
    # a scheduled campaign past its time waits for beat, not for a worker
    session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id)
        .values(status="scheduled", scheduled_at=utcnow() - timedelta(minutes=5))
    )
    session.commit()
    session.expire_all()
    due = missing_process_message(session, settings, session.get(Campaign, campaign_id), "en")
    assert "no beat has been seen yet" in due and "dispatch worker --beat" in due


def test_send_and_piped_watch_say_no_worker_runs(engine, session, settings, tmp_path):
    from test_delivery_workers import _small_issue

    make_list_with(session, "members", ["a@example.org"])
    session.commit()
    source = str(_small_issue(tmp_path / "issue"))
    sent = CliRunner().invoke(main, ["send", source, "--lists", "members"])
    assert sent.exit_code == 0, sent.output
    assert NO_WORKER in sent.stderr and "还没有看到任何 worker" in sent.stderr
    campaign_id = session.scalars(select(Campaign.id)).one()
    # CliRunner's stdout is no terminal: watch prints plain progress lines there
    watched = CliRunner().invoke(
        main, ["campaigns", "watch", str(campaign_id), "--interval", "0.2", "--timeout", "1"]
    )
    assert watched.exit_code == 0, watched.output
    assert f"#{campaign_id} 发送中 / running  0/1  sent 0" in watched.stdout
    assert NO_WORKER in watched.stderr


def test_campaign_page_warns_until_a_worker_is_seen(engine, session, settings):
    from fastapi.testclient import TestClient

    from dispatch.web.app import create_app
    from test_web_support import login, make_user

    campaign_id = _running(engine, session, settings)
    make_user(engine, "editor")
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        login(client, "editor@example.org")
        page = client.get(f"/admin/campaigns/{campaign_id}")
        assert 'id="process-warning"' in page.text and "`dispatch worker`" in page.text
        record(engine, "worker", "worker@test:2")
        page = client.get(f"/admin/campaigns/{campaign_id}")
        assert 'id="process-warning"' not in page.text


@pytest.mark.slow
def test_a_real_worker_and_beat_record_heartbeats(tmp_path):
    """`dispatch worker --beat` on the embedded default writes both heartbeats."""
    data_dir = tmp_path / "var"
    env = {
        **os.environ,
        "DISPATCH_DATA_DIR": str(data_dir),
        "DISPATCH_HEARTBEAT_SECONDS": "1",
    }
    env.pop("DISPATCH_DATABASE_URL", None)
    env.pop("DISPATCH_BROKER_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-c", "from dispatch.cli import main; main()"]
        + ["worker", "--beat", "-c", "1"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    engine = None
    try:
        deadline = time.monotonic() + 90
        kinds: set[str] = set()
        while time.monotonic() < deadline and kinds != {"worker", "beat"}:
            time.sleep(0.5)
            if (data_dir / "dispatch.db").exists():
                engine = engine or create_engine(f"sqlite:///{data_dir / 'dispatch.db'}")
                try:
                    with Session(engine) as s:
                        kinds = set(s.scalars(select(ProcessHeartbeat.kind)))
                except Exception:  # noqa: BLE001 - the table appears once migrated
                    kinds = set()
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert kinds == {"worker", "beat"}
        with Session(engine) as s:
            first = s.scalar(
                select(ProcessHeartbeat.seen_at).where(ProcessHeartbeat.kind == "worker")
            )
        time.sleep(2.5)
        with Session(engine) as s:
            later = s.scalar(
                select(ProcessHeartbeat.seen_at).where(ProcessHeartbeat.kind == "worker")
            )
        assert later > first  # it keeps beating
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if engine is not None:
            engine.dispose()


def test_watch_returns_at_once_for_a_draft(engine, session, settings):
    """A draft (never started, or its start refused) moves by itself never: watch says so."""
    issue = make_issue(session)
    members = make_list_with(session, "members", ["a@example.org"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[members]
    )
    session.commit()
    started = time.monotonic()
    watched = CliRunner().invoke(
        main, ["campaigns", "watch", str(campaign.id), "--interval", "0.2", "--timeout", "20"]
    )
    assert watched.exit_code == 0 and "草稿 / draft" in watched.stdout
    assert time.monotonic() - started < 10
