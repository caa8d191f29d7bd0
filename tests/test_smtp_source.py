"""The channel's data path from the database: issue row → IssueDoc → rendered email → template."""

from __future__ import annotations

import email
import email.policy
import time

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.email_source import load_campaign_source
from dispatch.channels.smtp import SmtpChannel
from dispatch.content.store import publish_source
from dispatch.paths import PROJECT_ROOT
from smtp_server import smtp_server  # noqa: F401

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"


def test_the_sample_issue_goes_out_personalised_and_tracked(session, settings, smtp_server):  # noqa: F811
    issue = publish_source(session, SAMPLE_ISSUE)
    session.commit()
    settings = settings.replace(smtp_url=smtp_server.url)
    context = CampaignContext(
        campaign_id=21, issue_id=issue.id, batch_no=0, list_ids=(4,), tracking=True
    )
    source = load_campaign_source(session, context, settings)
    assert load_campaign_source(session, context, settings).template is source.template  # cached
    channel = SmtpChannel(settings, context, source=source)
    channel.open()
    try:
        results = channel.send(
            [
                Recipient(1, 31, "li.si@example.net", "李四", "zh-CN"),
                Recipient(2, 32, "w@example.net", "", "en"),
            ]
        )
    finally:
        channel.close()
    assert [r.outcome for r in results] == ["sent", "sent"]
    msg = email.message_from_bytes(
        smtp_server.received_by("li.si@example.net")[0].data, policy=email.policy.default
    )
    assert msg["Subject"] == source.rendered.subject
    plain, html = list(msg.iter_parts())
    body = html.get_content()
    assert "李四" in body
    assert "https://bulletin.example.org/t/o/" in body  # open pixel of this delivery
    assert "https://bulletin.example.org/t/c/1." in body  # click links of delivery 1
    unsubscribe = msg["List-Unsubscribe"].split(",")[0].strip("<> ")
    assert unsubscribe in body or unsubscribe in plain.get_content()
    assert len(smtp_server.messages[0].data) < 140_000


def test_a_missing_issue_pauses_the_batch_with_the_reason(session, settings):
    context = CampaignContext(
        campaign_id=22, issue_id=987654, batch_no=0, list_ids=(1,), tracking=True
    )
    channel = SmtpChannel(settings.replace(smtp_url="smtp://127.0.0.1:9"), context)
    results = channel.send([Recipient(1, 1, "a@example.net", "", "en")])
    channel.close()
    assert [r.outcome for r in results] == ["paused"]
    assert "987654" in results[0].text


def test_without_smtp_url_messages_go_to_the_local_outbox(session, settings):
    issue = publish_source(session, SAMPLE_ISSUE)
    session.commit()
    context = CampaignContext(
        campaign_id=23, issue_id=issue.id, batch_no=0, list_ids=(1,), tracking=False
    )
    channel = SmtpChannel(
        settings.replace(smtp_url=""), context
    )  # loads its source from the database
    channel.open()
    try:
        results = channel.send(
            [
                Recipient(1, 1, "a@example.net", "甲", "zh-CN"),
                Recipient(2, 2, "b@example.net", "", "en"),
            ]
        )
    finally:
        channel.close()
    assert [r.outcome for r in results] == ["sent", "sent"]
    files = sorted((settings.data_dir / "outbox").glob("*.eml"))
    assert [f.name.split("-", 1)[1] for f in files] == ["a@example.net.eml", "b@example.net.eml"]
    msg = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert msg["To"].addresses[0].addr_spec == "a@example.net"


def test_prepare_channel_warms_the_per_process_source(session, settings):
    from dispatch.channels import prepare_channel
    from dispatch.channels.email_source import _SOURCE_CACHE

    issue = publish_source(session, SAMPLE_ISSUE)
    session.commit()
    context = CampaignContext(
        campaign_id=24, issue_id=issue.id, batch_no=3, list_ids=(1,), tracking=True
    )
    prepare_channel("email", settings, context)
    assert any(24 in key[:3] for key in _SOURCE_CACHE)  # (branding, campaign id, issue id, ...)


def test_the_greeting_follows_the_subscribers_language(session, settings):
    """Issue 9: an English-named subscriber was greeted "Partner 07，您好！"."""
    issue = publish_source(session, SAMPLE_ISSUE)
    session.commit()
    context = CampaignContext(
        campaign_id=23, issue_id=issue.id, batch_no=0, list_ids=(4,), tracking=False
    )
    source = load_campaign_source(session, context, settings)

    def parts(recipient: Recipient) -> tuple[str, str]:
        _, data = source.message_for(recipient)
        msg = email.message_from_bytes(data, policy=email.policy.default)
        plain, html = list(msg.iter_parts())
        return plain.get_content(), html.get_content()

    text_en, html_en = parts(Recipient(1, 41, "p07@example.com", "Partner 07", "en"))
    assert "Hello Partner 07," in text_en and "Hello Partner 07," in html_en
    assert "Partner 07，您好" not in text_en + html_en
    text_zh, _ = parts(Recipient(2, 42, "li@example.net", "李四", "zh-CN"))
    assert "李四，您好！" in text_zh
    text_anon, _ = parts(Recipient(3, 43, "x@example.com", "", "en"))
    assert "Hello," in text_anon


def test_a_batch_reuses_the_source_looked_up_moments_ago_then_asks_again(
    session, settings, monkeypatch
):
    """Each batch looked the issue, branding and lists up twice (prepare, then channel): six
    queries per 200 messages. Within RECENT_SOURCE_SECONDS a worker reuses its lookup; after
    it, the database is asked again (an edit reaches the messages at most that much later)."""
    import dataclasses

    from sqlalchemy import event

    from dispatch.channels import email_source
    from dispatch.db import get_engine

    issue = publish_source(session, SAMPLE_ISSUE)
    session.commit()
    context = CampaignContext(
        campaign_id=25, issue_id=issue.id, batch_no=0, list_ids=(1,), tracking=True
    )
    engine = get_engine(settings)
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", seen)
    try:
        first = email_source.load_source_from_database(settings, context)
        looked_up = len(statements)
        assert looked_up >= 3  # issue, lists, branding
        again = email_source.load_source_from_database(
            settings, dataclasses.replace(context, batch_no=1)
        )
        assert len(statements) == looked_up  # no query
        assert again.template is first.template and again.context.batch_no == 1
        later = time.monotonic() + email_source.RECENT_SOURCE_SECONDS + 1
        monkeypatch.setattr(email_source.time, "monotonic", lambda: later)
        email_source.load_source_from_database(settings, context)
        assert len(statements) > looked_up
    finally:
        event.remove(engine, "before_cursor_execute", seen)
