"""The one SMTP reply classifier: every rule of its table, and the exception mapping."""

from __future__ import annotations

import smtplib

import pytest

from dispatch.channels.smtp_conversation import parse_smtp_url
from dispatch.channels.smtp_replies import (
    classify_smtp_error,
    classify_smtp_reply,
    enhanced_code,
)


@pytest.mark.parametrize(
    "code,text,stage,expected",
    [
        # rule 1: accepted
        (250, "2.0.0 OK queued as 1234", "data", "sent"),
        (251, "2.1.5 user not local; will forward", "rcpt", "sent"),
        # rule 2: our authentication is missing or wrong
        (530, "5.7.0 Authentication required", "mail", "paused"),
        (535, "5.7.8 Authentication credentials invalid", "auth", "paused"),
        (534, "5.7.9 Please log in with your web browser", "auth", "paused"),
        # rule 3: rate limits, temporary or permanent: slow down (that provider / relay), not pause
        (
            421,
            "4.7.0 Try again later, closing connection. Rate limit exceeded",
            "mail",
            "throttled",
        ),
        (450, "4.7.1 Too many messages from your account, slow down", "rcpt", "throttled"),
        (451, "4.7.0 Temporary rate limit: throttled", "data", "throttled"),
        (550, "5.7.1 Message rate too high for this sender", "data", "throttled"),
        (554, "5.4.5 Daily user sending quota exceeded", "data", "throttled"),
        # rule 4: policy refuses our sender
        (550, "5.7.1 Sender rejected: not permitted to send for this domain", "rcpt", "paused"),
        (554, "5.7.1 <x@example.net>: Relay access denied", "rcpt", "paused"),
        (
            550,
            "5.7.26 Unauthenticated email from example.org is not accepted due to DMARC policy",
            "data",
            "paused",
        ),
        (
            554,
            "5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
            "rcpt",
            "paused",
        ),
        # rule 5: refused before any recipient
        (553, "5.1.8 Domain of sender address does not exist", "mail", "paused"),
        (554, "No SMTP service here", "connect", "paused"),
        # rule 6: transient
        (421, "4.3.2 Service shutting down", "rcpt", "deferred"),
        (450, "4.2.1 Mailbox busy", "rcpt", "deferred"),
        (451, "4.7.1 Greylisted, please try again in 300 seconds", "rcpt", "deferred"),
        (452, "4.2.2 Mailbox full", "rcpt", "deferred"),
        (452, "4.5.3 Too many recipients", "rcpt", "deferred"),
        # rule 7: the content is refused, not the address
        (552, "5.3.4 Message size exceeds fixed limit", "data", "failed"),
        (554, "5.6.0 Message content rejected", "data", "failed"),
        (550, "5.7.1 Message rejected as spam", "data", "failed"),
        # rule 8: permanent for this address
        (550, "5.1.1 The email account that you tried to reach does not exist", "rcpt", "bounced"),
        (
            550,
            "5.7.1 <x@example.net>: Recipient address rejected: Access denied",
            "rcpt",
            "bounced",
        ),
        (553, "5.1.3 Bad recipient address syntax", "rcpt", "bounced"),
        (554, "5.0.0 Transaction failed", "data", "bounced"),
        # rule 9: unknown
        (None, "", "data", "deferred"),
        (199, "odd", "data", "deferred"),
    ],
)
def test_rules(code, text, stage, expected):
    assert classify_smtp_reply(code, text, stage=stage) == expected


def test_reply_text_may_be_bytes():
    assert classify_smtp_reply(550, b"5.1.1 no such user") == "bounced"


def test_enhanced_code_is_read_from_the_start_of_the_text():
    assert enhanced_code("5.7.1 Relay access denied") == (5, 7, 1)
    assert enhanced_code("Relay access denied") is None


@pytest.mark.parametrize(
    "exc,expected",
    [
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "deferred"),
        (ConnectionRefusedError(111, "Connection refused"), "deferred"),
        (ConnectionResetError(104, "Connection reset by peer"), "deferred"),
        (TimeoutError("timed out"), "deferred"),
        (TimeoutError(), "deferred"),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 Authentication failed"), "paused"),
        (smtplib.SMTPConnectError(554, b"5.7.1 go away"), "paused"),
        (smtplib.SMTPConnectError(421, b"4.3.2 busy"), "deferred"),
        (smtplib.SMTPDataError(550, b"5.1.1 no such user"), "bounced"),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), "paused"),
    ],
)
def test_exceptions(exc, expected):
    outcome, _code, text = classify_smtp_error(exc, "data")
    assert outcome == expected and text


def test_smtp_urls():
    plain = parse_smtp_url("smtp://127.0.0.1:2525")
    assert (plain.host, plain.port, plain.security) == ("127.0.0.1", 2525, "plain")
    assert parse_smtp_url("smtp://relay.example.org?starttls=1").security == "starttls"
    assert parse_smtp_url("smtp://relay.example.org?starttls=1").port == 587
    assert parse_smtp_url("smtps://relay.example.org").port == 465
    assert parse_smtp_url("smtps://h:4650?cafile=/tmp/ca.pem&verify=0").cafile == "/tmp/ca.pem"
    with pytest.raises(ValueError, match="smtp_username"):
        parse_smtp_url("smtp://user:secret@relay.example.org")
    with pytest.raises(ValueError) as info:
        parse_smtp_url("http://user:secret@relay.example.org")
    assert "secret" not in str(info.value)
