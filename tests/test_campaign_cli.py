"""`dispatch send` and `dispatch campaigns …` through the CLI, delivered by an in-process worker
over the embedded broker to a real SMTP server on loopback."""

from __future__ import annotations

import json
import time

import pytest
from celery.contrib.testing.worker import start_worker
from click.testing import CliRunner
from sqlalchemy.orm import Session

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.delivery import campaigns
from smtp_server import ScriptedSmtpServer
from test_delivery_support import make_list_with
from test_delivery_workers import _small_issue


def run(*args: str, ok: bool = True):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_json(*args: str):
    return json.loads(run(*args, "--json").output)


def _until_done(engine, campaign_id: int, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as s:
            status = campaigns.get(s, campaign_id).status
        if status in ("finished", "cancelled", "failed"):
            return status
        time.sleep(0.2)
    raise AssertionError(f"campaign {campaign_id} still {status}")


@pytest.fixture
def smtp(tmp_path):
    with ScriptedSmtpServer() as server:
        yield server


def test_send_control_and_watch(engine, session, settings, smtp, tmp_path):
    settings = settings.replace(smtp_url=smtp.url, batch_size=3)
    set_settings(settings)
    make_list_with(session, "alpha", [f"a{i}@example.org" for i in range(4)])
    make_list_with(session, "beta", ["a0@example.org", "b1@example.org"])
    session.commit()
    source = str(_small_issue(tmp_path / "issue"))

    first = run_json("send", source, "--lists", "alpha,beta")
    assert (
        first["created"]
        and first["total"] == 5
        and first["batches"] == 2
        and first["status"] == "running"
    )
    again = run_json("send", "2023-07", "--lists", "beta,alpha")
    assert again == {"id": first["id"], "status": "running", "created": False}
    assert "nothing more is sent" in run("send", "2023-07", "--lists", "beta,alpha").output

    cid = first["id"]
    assert run_json("campaigns", "pause", str(cid))["status"] == "paused"
    assert run_json("campaigns", "show", str(cid))["status"] == "paused"
    bad = run("campaigns", "pause", str(cid), ok=False)
    assert bad.exit_code == 1 and "'paused' to 'paused'" in bad.output
    from dispatch.tasks import app

    with start_worker(
        app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"
    ):
        time.sleep(1.5)  # queued batches reach the worker while paused: nothing is sent
        assert smtp.messages == []
        resumed = run_json("campaigns", "resume", str(cid))
        assert resumed["batches"] == 2
        assert _until_done(engine, cid) == "finished"
        test_send = run_json(
            "send", "2023-07", "--test", "editor@example.org", "--test", "a1@example.org"
        )
        assert test_send["is_test"] and test_send["total"] == 2 and test_send["list_ids"] == []
        assert _until_done(engine, test_send["id"]) == "finished"

    watched = run_json("campaigns", "watch", str(cid), "--interval", "0.1")
    assert watched["status"] == "finished" and watched["counts"]["sent"] == 5
    received = sorted(r for m in smtp.messages for r in m.rcpt_tos)
    assert received == sorted(
        [
            "a0@example.org",
            "a1@example.org",
            "a2@example.org",
            "a3@example.org",
            "b1@example.org",
            "editor@example.org",
            "a1@example.org",
        ]
    )
    listed = run_json("campaigns", "list")
    assert [c["id"] for c in listed] == [test_send["id"], cid]
    assert "finished" in run("campaigns", "list").output

    scheduled = run_json("send", "2023-07", "--lists", "alpha", "--at", "2999-01-01T09:00+08:00")
    assert scheduled["status"] == "scheduled"
    assert run_json("campaigns", "show", str(scheduled["id"]))["scheduled_at"].startswith(
        "2999-01-01T01:00"
    )
    assert run_json("campaigns", "cancel", str(scheduled["id"]))["status"] == "cancelled"


def test_send_errors_are_one_clear_line(engine, session, settings, tmp_path):
    make_list_with(session, "alpha", ["a@example.org"])
    session.commit()
    missing = run("send", "no-such-issue", "--lists", "alpha", ok=False)
    assert missing.exit_code == 1 and "no issue 'no-such-issue'" in missing.output
    source = str(_small_issue(tmp_path / "issue"))
    unknown = run("send", source, "--lists", "alpha,nope", ok=False)
    assert unknown.exit_code == 1 and "nope" in unknown.output
    nolists = run("send", source, ok=False)
    assert nolists.exit_code == 1 and "--lists" in nolists.output
    bad_time = run("send", source, "--lists", "alpha", "--at", "tomorrow", ok=False)
    assert bad_time.exit_code == 2 and "ISO 8601" in bad_time.output
    assert "campaign 4242 not found" in run("campaigns", "show", "4242", ok=False).output
