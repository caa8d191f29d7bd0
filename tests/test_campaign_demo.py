"""`dispatch demo` on a bare machine: embedded SQLite, broker file, in-process worker, local
sink."""

from __future__ import annotations

import email
import email.policy
import json
from collections import Counter

from click.testing import CliRunner

from dispatch.cli import main
from dispatch.config import load_settings, set_settings


def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path):
    set_settings(load_settings(env={}).replace(data_dir=tmp_path / "var"))
    try:
        result = CliRunner().invoke(
            main, ["demo", "--json", "--timeout", "120"], catch_exceptions=False
        )
    finally:
        set_settings(None)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)  # logs go to stderr, the JSON report to stdout
    campaign = out["campaign"]
    # 38 people on two lists, one on both (one message), one suppressed (no message)
    assert campaign["status"] == "finished" and campaign["total"] == 37
    assert campaign["counts"]["sent"] == 37 and out["outbox_files"] == 37
    assert out["database"] == "sqlite" and out["data_dir"] == str(
        (tmp_path / "var" / "demo").resolve()
    )
    files = sorted((tmp_path / "var" / "demo" / "outbox").glob("*.eml"))
    recipients = Counter()
    for path in files:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        recipients[str(message["To"]).split("<")[-1].rstrip(">")] += 1
        assert message.get_body(("plain",)) is not None and message.get_body(("html",)) is not None
    assert recipients["reader00@example.org"] == 1
    assert "reader07@example.org" not in recipients
    # the WeChat step: the five followers among the readers get one mass send
    wechat = out["wechat"]
    assert wechat["campaign_status"] == "finished" and wechat["deliveries"]["sent"] == 5
    assert wechat["draft_media_id"] and wechat["msg_ids"], wechat


def test_demo_prints_the_wechat_draft_and_message_ids(tmp_path):
    set_settings(load_settings(env={}).replace(data_dir=tmp_path / "var"))
    try:
        result = CliRunner().invoke(main, ["demo", "--timeout", "120"], catch_exceptions=False)
    finally:
        set_settings(None)
    assert result.exit_code == 0, result.output
    assert "WeChat draft media_id: " in result.output and "mass-send msg_id: " in result.output
    assert "mass-send msg_id: -" not in result.output
