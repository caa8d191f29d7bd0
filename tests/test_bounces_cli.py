"""`dispatch bounces ingest` (files, .mbox, folders; --json, --dry-run), `show`, the SMTP intake
refusing foreign recipients, and `dispatch campaigns show` printing the after-send counts."""

from __future__ import annotations

import json
import mailbox
import smtplib

from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bounce_helpers import arf_report, postfix_dsn, sent_campaign
from dispatch.bounces.intake import BounceIntake
from dispatch.cli import main
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Suppression
from dispatch.outbox import free_port
from dispatch.tokens import verp_address

ADDRESSES = ["alice@example.net", "bob@example.net", "carol@example.net"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_ingest_json_one_object_per_message_from_eml_mbox_and_folders(session, settings, tmp_path):
    sent_campaign(session, ADDRESSES)
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "one.eml").write_bytes(postfix_dsn("alice@example.net"))
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    box.add(postfix_dsn("stranger@example.com"))
    box.add(arf_report("carol@example.net"))
    box.flush()
    box.close()
    result = run("bounces", "ingest", "--json", str(folder), str(tmp_path / "bounces.mbox"))
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["kind"] for r in rows] == ["hard", "hard", "complaint"]
    assert {"file", "kind", "recipient", "status", "diagnostic", "delivery_id"} <= set(rows[0])
    assert rows[0]["file"].endswith("one.eml") and rows[1]["file"].endswith("bounces.mbox#1")
    assert rows[1]["delivery_id"] is None and rows[1]["recipient"] == "stranger@example.com"
    assert rows[0]["delivery_id"] is not None and rows[0]["status"] == "5.1.1"
    session.expire_all()
    assert {s.email for s in session.scalars(select(Suppression))} == {
        "alice@example.net",
        "carol@example.net",
    }
    again = run("bounces", "ingest", "--json", str(folder))
    assert json.loads(again.output)["duplicate"] is True


def test_ingest_dry_run_records_nothing(session, settings, tmp_path):
    sent_campaign(session, ADDRESSES)
    path = tmp_path / "x.eml"
    path.write_bytes(postfix_dsn("bob@example.net"))
    result = run("bounces", "ingest", "--dry-run", str(path))
    assert result.exit_code == 0 and "hard" in result.output
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(BounceMessage)) == 0
    assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_ingest_missing_path_is_a_clear_error(settings, tmp_path):
    result = CliRunner().invoke(main, ["bounces", "ingest", str(tmp_path / "nope.eml")])
    assert result.exit_code == 1 and "nope.eml" in result.output


def test_show_prints_the_raw_message(session, settings, tmp_path):
    sent_campaign(session, ADDRESSES)
    path = tmp_path / "x.eml"
    path.write_bytes(postfix_dsn("bob@example.net"))
    run("bounces", "ingest", str(path))
    bounce_id = session.scalar(select(BounceMessage.id))
    shown = json.loads(run("bounces", "show", str(bounce_id), "--raw", "--json").output)
    assert shown["kind"] == "hard" and "Final-Recipient: rfc822; bob@example.net" in shown["raw"]


def test_intake_refuses_foreign_recipients_and_stores_before_250(engine, session, settings):
    settings = settings.replace(bounce_address="bounces@bounce.example.org")
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(settings, "c", sent.campaign_id, sent.deliveries["bob@example.net"])
    intake = BounceIntake(settings, engine, "127.0.0.1", free_port("127.0.0.1")).start()
    try:
        with smtplib.SMTP("127.0.0.1", intake.port) as client:
            client.ehlo()
            code, _ = client.docmd("MAIL FROM:<>")
            assert code == 250
            code, _ = client.docmd("RCPT TO:<someone@elsewhere.example>")
            assert code == 550  # not an open mail drop
            client.rset()
            dsn = postfix_dsn("bob@example.net", envelope_to=verp).replace(b"\n", b"\r\n")
            refused = client.sendmail("", [verp], dsn)
            assert refused == {}
    finally:
        intake.stop()
    with Session(engine) as fresh:
        row = fresh.scalars(select(BounceMessage)).one()
        assert (row.source, row.kind, row.delivery_id) == (
            "smtp",
            "hard",
            sent.deliveries["bob@example.net"],
        )


def test_campaigns_show_prints_after_send_counts(session, settings):
    sent = sent_campaign(session, ADDRESSES)
    from dispatch.bounces.record import process_message

    process_message(session, settings, postfix_dsn("alice@example.net"), source="file")
    session.commit()
    shown = run("campaigns", "show", str(sent.campaign_id))
    assert "hard bounces" in shown.output and "1 (33.33%)" in shown.output
    data = json.loads(run("campaigns", "show", str(sent.campaign_id), "--json").output)
    assert data["after_send"]["counts"]["hard"] == 1


def test_beat_polls_the_bounce_mailbox_only_when_one_is_configured(settings):
    from dispatch.tasks import POLL_BOUNCES, celery_config

    assert "dispatch-poll-bounces" not in celery_config(settings)["beat_schedule"]
    configured = settings.replace(
        bounce_mailbox_url="imaps://bounces@imap.example.org/INBOX", bounce_poll_seconds=120
    )
    entry = celery_config(configured)["beat_schedule"]["dispatch-poll-bounces"]
    assert entry["task"] == POLL_BOUNCES and entry["schedule"].total_seconds() == 120
