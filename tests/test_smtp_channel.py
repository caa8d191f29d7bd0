"""SmtpChannel against a real SMTP server on loopback whose replies the test scripts."""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass
from html import escape
from pathlib import Path

import pytest

from dispatch.channels import make_channel
from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.email_source import build_campaign_source
from dispatch.channels.smtp import SmtpChannel
from dispatch.config import Settings, load_settings
from dispatch.log import JsonFormatter
from dispatch.outbox import LocalOutbox, free_port
from dispatch.tokens import verify_unsubscribe_token
from smtp_server import ScriptedSmtpServer, make_self_signed_cert, smtp_server  # noqa: F401

CONTEXT = CampaignContext(campaign_id=11, issue_id=5, batch_no=0, list_ids=(3,), tracking=True)


@dataclass
class SampleRendered:
    """A stand-in for dispatch.render.email.RenderedEmail with the same three members."""

    subject: str = "中国质量发展研究院 工作简报 2023年第2期"
    link_count: int = 2

    def personalize(self, slots) -> tuple[str, str]:
        links = "".join(f'<a href="{escape(u)}">链接</a>' for u in slots.click_urls or ())
        html = (
            f"<html><body><p>{escape(slots.name)}，您好</p>{links}"
            f'<img src="{escape(slots.open_url or "")}"><a '
            f'href="{escape(slots.unsubscribe_url)}">退订</a></body></html>'
        )
        return html, f"{slots.name}，您好\n退订: {slots.unsubscribe_url}\n"


def channel_settings(url: str, **changes) -> Settings:
    values = dict(
        smtp_url=url,
        secret_key="test-secret-key-not-for-production",
        public_base_url="https://bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
        smtp_timeout=5.0,
    )
    return load_settings(env={}).replace(**{**values, **changes})


PIPELINING: list[bool | None] = [None]


@pytest.fixture(autouse=True, params=[False, True], ids=["one-by-one", "pipelined"])
def pipelining(request):
    """Every channel test runs with MAIL/RCPT/DATA one by one and pipelined (RFC 2920)."""
    PIPELINING[0] = request.param
    yield request.param
    PIPELINING[0] = None


def make(settings: Settings, context: CampaignContext = CONTEXT, rendered=None) -> SmtpChannel:
    source = build_campaign_source(settings, context, rendered or SampleRendered())
    return SmtpChannel(settings, context, source=source, pipelining=PIPELINING[0])


def recipients(*addresses: str) -> list[Recipient]:
    return [Recipient(i + 1, 100 + i, a, f"读者{i + 1}", "zh-CN") for i, a in enumerate(addresses)]


def send(settings: Settings, batch: list[Recipient], **kwargs):
    channel = make(settings, **kwargs)
    channel.open()
    try:
        return channel.send(batch)
    finally:
        channel.close()
        channel.close()  # safe twice


def outcomes(results) -> list[str]:
    return [r.outcome for r in results]


def test_sent_deferred_bounced_per_recipient(smtp_server):  # noqa: F811
    smtp_server.script.rcpt["busy@example.net"] = "450 4.2.1 Mailbox busy"
    smtp_server.script.rcpt["gone@example.net"] = "550 5.1.1 No such user"
    smtp_server.script.data["late@example.net"] = "451 4.3.0 Try again later"
    smtp_server.script.data["big@example.net"] = "552 5.3.4 Message size exceeds fixed limit"
    batch = recipients(
        "a@example.net",
        "busy@example.net",
        "gone@example.net",
        "late@example.net",
        "big@example.net",
        "b@example.net",
    )
    results = send(channel_settings(smtp_server.url), batch)
    assert outcomes(results) == ["sent", "deferred", "bounced", "deferred", "failed", "sent"]
    assert [r.delivery_id for r in results] == [1, 2, 3, 4, 5, 6]
    assert results[2].code == 550 and "No such user" in results[2].text
    assert results[1].code == 450
    assert all(r.message_id == f"<d{r.delivery_id}.c11@example.org>" for r in results)
    received = sorted(a for m in smtp_server.messages for a in m.rcpt_tos)
    assert received == ["a@example.net", "b@example.net"]
    assert (
        smtp_server.connections == 1
    )  # one connection reused for the whole batch (RSET after refusals)


def test_one_rcpt_of_many_rejected_only_bounces_that_one(smtp_server):  # noqa: F811
    addresses = [f"r{i}@example.net" for i in range(20)]
    smtp_server.script.rcpt["r7@example.net"] = "550 5.1.1 User unknown"
    results = send(channel_settings(smtp_server.url), recipients(*addresses))
    assert outcomes(results).count("bounced") == 1 and results[7].outcome == "bounced"
    assert outcomes(results).count("sent") == 19
    assert len(smtp_server.messages) == 19
    assert not smtp_server.received_by("r7@example.net")


def test_a_dropped_connection_is_reconnected_once(smtp_server):  # noqa: F811
    smtp_server.script.drop_after = 3
    smtp_server.script.max_drops = 1
    addresses = [f"r{i}@example.net" for i in range(8)]
    results = send(channel_settings(smtp_server.url), recipients(*addresses))
    assert outcomes(results) == ["sent"] * 8
    assert smtp_server.connections == 2 and smtp_server.drops == 1
    assert sorted(a for m in smtp_server.messages for a in m.rcpt_tos) == sorted(addresses)


def test_a_second_drop_defers_only_the_unsent_rest(smtp_server):  # noqa: F811
    smtp_server.script.drop_after = 2  # every connection dies after two messages
    addresses = [f"r{i}@example.net" for i in range(10)]
    results = send(channel_settings(smtp_server.url), recipients(*addresses))
    assert outcomes(results) == ["sent"] * 4 + ["deferred"] * 6
    sent = {addresses[i] for i, r in enumerate(results) if r.outcome == "sent"}
    received = [a for m in smtp_server.messages for a in m.rcpt_tos]
    assert sorted(received) == sorted(sent)  # nothing lost, nothing doubled, nothing sent twice
    assert all(r.code is None and r.text for r in results[4:])


def test_a_drop_after_data_defers_that_recipient_without_resending_it(smtp_server):  # noqa: F811
    smtp_server.script.data["b@example.net"] = "DROP_AFTER_DATA"
    results = send(
        channel_settings(smtp_server.url),
        recipients("a@example.net", "b@example.net", "c@example.net"),
    )
    assert outcomes(results) == ["sent", "deferred", "sent"]
    assert (
        len(smtp_server.received_by("b@example.net")) == 1
    )  # taken once; the engine's retry may repeat it


def test_sender_policy_refusal_pauses_the_rest_of_the_batch(smtp_server):  # noqa: F811
    smtp_server.script.mail = ["550 5.7.1 Sender rejected: not authorised to send as example.org"]
    results = send(
        channel_settings(smtp_server.url),
        recipients("a@example.net", "b@example.net", "c@example.net"),
    )
    assert outcomes(results) == ["paused"] * 3
    assert all("Sender rejected" in r.text for r in results)
    assert smtp_server.messages == []


def test_a_rate_limit_reply_throttles_that_provider_and_does_not_bounce(smtp_server):  # noqa: F811
    """Issue 12: a rate reply slows down only the recipient's provider: the rest of that
    provider's recipients in the send are held untried (not bounced, not paused)."""
    smtp_server.script.rcpt["b@example.net"] = "451 4.7.0 Rate limit exceeded, try again later"
    results = send(
        channel_settings(smtp_server.url),
        recipients("a@example.net", "b@example.net", "c@example.net"),
    )
    assert outcomes(results) == ["sent", "throttled", "throttled"]
    assert results[1].code == 451 and "Rate limit" in results[2].text
    assert results[2].data["stage"] == "not_attempted"
    assert [m.rcpt_tos for m in smtp_server.messages] == [("a@example.net",)]


def test_a_421_defers_and_the_channel_reconnects(smtp_server):  # noqa: F811
    smtp_server.script.rcpt["b@example.net"] = ["421 4.3.2 Service shutting down"]
    results = send(
        channel_settings(smtp_server.url),
        recipients("a@example.net", "b@example.net", "c@example.net"),
    )
    assert outcomes(results) == ["sent", "deferred", "sent"]


def test_a_timeout_defers(smtp_server):  # noqa: F811
    smtp_server.script.data_delay = 1.0
    results = send(
        channel_settings(smtp_server.url, smtp_timeout=0.3),
        recipients("a@example.net", "b@example.net"),
    )
    assert outcomes(results) == ["deferred", "deferred"]
    assert "timeout" in results[0].text


def test_connection_refused_defers_the_whole_batch():
    url = f"smtp://127.0.0.1:{free_port()}"
    results = send(channel_settings(url), recipients("a@example.net", "b@example.net"))
    assert outcomes(results) == ["deferred", "deferred"]
    assert "refused" in results[0].text.lower()


def test_a_recipient_whose_message_cannot_be_built_fails_alone(smtp_server):  # noqa: F811
    batch = recipients("a@example.net", "bad\r\nRCPT TO:<x@example.net>", "c@example.net")
    results = send(channel_settings(smtp_server.url), batch)
    assert outcomes(results) == ["sent", "failed", "sent"]
    assert len(smtp_server.messages) == 2


def parse(raw: bytes):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_the_received_message_has_both_parts_and_every_header(smtp_server):  # noqa: F811
    settings = channel_settings(smtp_server.url, reply_to="editor@example.org")
    results = send(settings, [Recipient(77, 501, "reader@example.net", "王五", "zh-CN")])
    assert outcomes(results) == ["sent"]
    (message,) = smtp_server.messages
    assert message.mail_from == settings.from_address and message.rcpt_tos == (
        "reader@example.net",
    )
    msg = parse(message.data)
    for header in (
        "From",
        "To",
        "Reply-To",
        "Subject",
        "Date",
        "Message-ID",
        "MIME-Version",
        "List-Id",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    ):
        assert msg[header], header
    assert msg["Message-ID"] == "<d77.c11@example.org>" == results[0].message_id
    assert msg["Subject"] == SampleRendered.subject
    assert msg["To"].addresses[0].display_name == "王五"
    assert msg["List-Id"] == f"<{settings.list_id}>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain, html = list(msg.iter_parts())
    expected_html, expected_text = SampleRendered().personalize(
        make(settings).source().slots(Recipient(77, 501, "reader@example.net", "王五", "zh-CN"))
    )
    assert html.get_content() == expected_html and plain.get_content() == expected_text
    # the List-Unsubscribe URL carries a valid token for this subscriber and the campaign's list
    url = msg["List-Unsubscribe"].split(",")[0].strip().strip("<>")
    assert url.startswith("https://bulletin.example.org/u/")
    token = verify_unsubscribe_token(settings, url.rsplit("/", 1)[1])
    assert token.subscriber_id == 501 and token.list_id == 3


def test_no_header_injection_through_the_wire(smtp_server):  # noqa: F811
    rendered = SampleRendered(subject="Issue 2\r\nBcc: victim@example.com")
    batch = [
        Recipient(1, 1, "reader@example.net", "Eve\r\nBcc: victim2@example.com\r\n\r\nhi", "en")
    ]
    assert outcomes(send(channel_settings(smtp_server.url), batch, rendered=rendered)) == ["sent"]
    msg = parse(smtp_server.messages[0].data)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Issue 2 Bcc: victim@example.com"
    assert msg.get_content_type() == "multipart/alternative" and len(list(msg.iter_parts())) == 2
    assert smtp_server.messages[0].rcpt_tos == ("reader@example.net",)


def test_a_test_send_is_marked_in_the_subject(smtp_server):  # noqa: F811
    context = CampaignContext(
        campaign_id=12, issue_id=5, batch_no=0, list_ids=(), tracking=False, is_test=True
    )
    send(channel_settings(smtp_server.url), recipients("editor@example.net"), context=context)
    assert parse(smtp_server.messages[0].data)["Subject"].startswith("[测试] ")


@pytest.fixture
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def _all_log_output(caplog) -> str:
    formatter = JsonFormatter()
    return caplog.text + "\n".join(formatter.format(r) for r in caplog.records)


def test_starttls_and_auth_with_credentials_from_settings(tls_files, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    password = "s3cret-Passw0rd-never-logged"
    with ScriptedSmtpServer(starttls_cert=tls_files, credentials={"mailer": password}) as server:
        settings = channel_settings(
            f"{server.url}&cafile={tls_files[0]}", smtp_username="mailer", smtp_password=password
        )
        results = send(settings, recipients("a@example.net", "b@example.net"))
        assert outcomes(results) == ["sent", "sent"]
        assert server.auth_attempts == [("mailer", True)]
        assert len(server.messages) == 2
    captured = capsys.readouterr()
    assert password not in _all_log_output(caplog) + captured.out + captured.err


def test_wrong_credentials_pause_instead_of_bouncing(tls_files, caplog):
    caplog.set_level(logging.DEBUG)
    with ScriptedSmtpServer(starttls_cert=tls_files, credentials={"mailer": "right"}) as server:
        settings = channel_settings(
            f"{server.url}&cafile={tls_files[0]}",
            smtp_username="mailer",
            smtp_password="wrong-password-xyz",
        )
        results = send(settings, recipients("a@example.net", "b@example.net"))
        assert outcomes(results) == ["paused", "paused"]
        assert results[0].code == 535
        assert server.messages == []
    assert "wrong-password-xyz" not in _all_log_output(caplog)


def test_an_untrusted_certificate_pauses(tls_files):
    with ScriptedSmtpServer(starttls_cert=tls_files) as server:
        results = send(channel_settings(server.url), recipients("a@example.net"))
    assert outcomes(results) == ["paused"] and "certificate" in results[0].text


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls(tls_files):
    with ScriptedSmtpServer(
        starttls_cert=tls_files, implicit_tls=True, credentials={"u": "p"}
    ) as server:
        settings = channel_settings(
            f"{server.url}?cafile={tls_files[0]}", smtp_username="u", smtp_password="p"
        )
        assert outcomes(send(settings, recipients("a@example.net"))) == ["sent"]
        assert len(server.messages) == 1


def test_make_channel_builds_the_smtp_channel():
    channel = make_channel("email", channel_settings("smtp://127.0.0.1:25"), CONTEXT)
    assert isinstance(channel, SmtpChannel) and channel.name == "email"


def test_the_local_outbox_writes_one_eml_per_recipient(tmp_path):
    with LocalOutbox(tmp_path / "outbox") as sink:
        results = send(
            channel_settings(sink.url), recipients("a@example.net", "b/../x@example.net")
        )
        assert outcomes(results) == ["sent", "sent"]
        assert sink.count == 2
        files = sink.files()
    assert [f.name for f in files] == ["000001-a@example.net.eml", "000002-b_.._x@example.net.eml"]
    assert all(f.parent == tmp_path / "outbox" for f in files)
    assert parse(files[0].read_bytes())["To"].addresses[0].addr_spec == "a@example.net"


def test_smtp_data_dot_stuffs_only_when_needed(smtp_server):  # noqa: F811
    import smtplib

    from dispatch.channels.smtp_conversation import smtp_data

    with_dots = b"Subject: dots\r\n\r\n.first line\r\nmiddle\r\n..two\r\n.\r\nend"
    smtp = smtplib.SMTP("127.0.0.1", smtp_server.port)
    smtp.ehlo()
    try:
        for body in (with_dots, b"Subject: plain\r\n\r\nno dots here\r\n"):
            assert smtp.mail("a@example.org")[0] == 250 and smtp.rcpt("b@example.net")[0] == 250
            assert smtp_data(smtp, body)[0] == 250
    finally:
        smtp.quit()
    received = [m.data for m in smtp_server.messages]
    assert received[0].rstrip(b"\r\n") == with_dots
    assert received[1] == b"Subject: plain\r\n\r\nno dots here\r\n"


def test_one_reconnect_per_batch_across_the_engines_chunks(smtp_server):  # noqa: F811
    smtp_server.script.drop_after = 2  # every connection dies after two messages
    channel = make(channel_settings(smtp_server.url))
    batch = recipients(*[f"r{i}@example.net" for i in range(10)])
    channel.open()  # the engine opens once per batch and sends it in chunks
    first, second, third = (
        channel.send(batch[:3]),
        channel.send(batch[3:6]),
        channel.send(batch[6:9]),
    )
    channel.close()
    assert outcomes(first) == ["sent"] * 3
    assert outcomes(second) == ["sent", "deferred", "deferred"]
    assert outcomes(third) == ["deferred"] * 3
    assert smtp_server.connections == 2
    channel.open()  # the next batch starts afresh
    assert outcomes(channel.send(batch[9:])) == ["sent"]
    channel.close()
    assert len(smtp_server.messages) == 5


def test_two_outboxes_sharing_a_folder_never_share_a_number(tmp_path):
    """The CLI's sink and a worker's sink write to one folder: numbers stay unique (issue 9)."""
    folder = tmp_path / "outbox"
    with LocalOutbox(folder) as first, LocalOutbox(folder) as second:
        for i in range(3):
            for sink, who in ((first, "editor"), (second, "li.na")):
                results = send(channel_settings(sink.url), recipients(f"{who}{i}@example.net"))
                assert outcomes(results) == ["sent"]
    numbers = [f.name.split("-")[0] for f in sorted(folder.glob("*.eml"))]
    assert len(numbers) == 6 and len(set(numbers)) == 6, numbers
    with LocalOutbox(folder) as later:  # a sink started later continues after them
        send(channel_settings(later.url), recipients("late@example.net"))
    assert sorted(folder.glob("*.eml"))[-1].name == "000007-late@example.net.eml"


def test_the_next_envelope_leaves_with_the_final_dot(smtp_server, pipelining, monkeypatch):  # noqa: F811
    """RFC 2920: message content may open a pipelined group, so the next message's MAIL, RCPT
    and DATA go out in the same write as this one's final dot: one round trip per message."""
    from dispatch.channels import smtp_conversation

    after_dots: list[bytes] = []
    real_send_body = smtp_conversation.send_body

    def spy(smtp, message, while_waiting=None, after_dot=b""):
        after_dots.append(after_dot)
        return real_send_body(smtp, message, while_waiting, after_dot)

    monkeypatch.setattr(smtp_conversation, "send_body", spy)
    addresses = [f"r{i}@example.net" for i in range(5)]
    results = send(channel_settings(smtp_server.url), recipients(*addresses))
    assert outcomes(results) == ["sent"] * 5
    assert sorted(a for m in smtp_server.messages for a in m.rcpt_tos) == addresses
    assert smtp_server.connections == 1
    if pipelining:
        assert [d.startswith(b"MAIL FROM:<") for d in after_dots] == [True] * 4 + [False]
        assert b"RCPT TO:<r1@example.net>\r\nDATA\r\n" in after_dots[0]
    else:
        assert after_dots == [b""] * 5


def test_an_envelope_sent_ahead_for_a_message_that_then_waits_closes_the_line(smtp_server):  # noqa: F811
    """b's reply throttles its provider after c's envelope already left: c is held, so the
    server (waiting for c's body) must see the line closed, never a next command read as
    message text; the channel's next chunk starts on a new line and every message arrives
    whole, once."""
    smtp_server.script.data["b@example.net"] = ["451 4.7.0 Rate limit exceeded, try again later"]
    channel = make(channel_settings(smtp_server.url))
    channel.open()
    try:
        first = channel.send(recipients("a@example.net", "b@example.net", "c@example.net"))
        second = channel.send(recipients("d@example.net", "e@example.net"))
    finally:
        channel.close()
    assert outcomes(first) == ["sent", "throttled", "throttled"]
    assert first[2].data["stage"] == "not_attempted"
    assert outcomes(second) == ["sent", "sent"]
    received = sorted(a for m in smtp_server.messages for a in m.rcpt_tos)
    assert received == ["a@example.net", "d@example.net", "e@example.net"]  # b: refused
    assert not smtp_server.received_by("c@example.net")
    assert all(b"MAIL FROM:" not in m.data and b"QUIT" not in m.data for m in smtp_server.messages)
