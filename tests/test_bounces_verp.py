"""VERP envelope senders: signed, case-insensitive tokens naming one delivery; the channel and
transactional mail put them in MAIL FROM (seen by a real SMTP server), the From header stays."""

from __future__ import annotations

from email import message_from_bytes
from email.message import EmailMessage

import pytest

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.email_source import build_campaign_source
from dispatch.channels.smtp import SmtpChannel
from dispatch.config import load_settings
from dispatch.tokens import (
    TokenError,
    bounce_token_in,
    make_bounce_token,
    verify_bounce_token,
    verp_address,
)
from dispatch.transactional import send_transactional
from smtp_server import smtp_server  # noqa: F401
from test_smtp_channel import SampleRendered

SETTINGS = load_settings(env={}).replace(
    secret_key="test-secret-key-not-for-production",
    bounce_address="bounces@bounce.example.org",
    from_address="bulletin@example.org",
    public_base_url="https://bulletin.example.org",
)


def test_round_trip_and_case_insensitive():
    address = verp_address(SETTINGS, "c", 12, 3456)
    assert address.startswith("bounces+c12-3456-") and address.endswith("@bounce.example.org")
    token = bounce_token_in(SETTINGS, address.upper())
    assert token is not None
    claim = verify_bounce_token(SETTINGS, token)
    assert (claim.kind, claim.campaign_id, claim.ref_id) == ("c", 12, 3456)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t.replace("c12-3456", "c12-3457"),  # another delivery
        lambda t: t.replace("c12", "c13"),  # another campaign
        lambda t: t.replace("c12", "t12"),  # another kind
        lambda t: t[:-1] + ("0" if t[-1] != "0" else "1"),  # altered signature
        lambda t: t[:-2],  # truncated
        lambda t: "c12-3456",  # unsigned
        lambda t: "x" * 200,
    ],
)
def test_forged_or_altered_tokens_are_refused(mangle):
    token = make_bounce_token(SETTINGS, "c", 12, 3456)
    with pytest.raises(TokenError):
        verify_bounce_token(SETTINGS, mangle(token))


def test_another_key_refuses_the_token():
    token = make_bounce_token(SETTINGS, "c", 1, 2)
    with pytest.raises(TokenError):
        verify_bounce_token(SETTINGS.replace(secret_key="another-key"), token)


@pytest.mark.parametrize(
    "address",
    [
        "bounces@bounce.example.org",  # no token
        "bounces+c1-2-abc@other.example.org",  # another domain
        "other+c1-2-abc@bounce.example.org",  # another local part
        "",
    ],
)
def test_addresses_that_are_not_ours(address):
    assert bounce_token_in(SETTINGS, address) is None


def _send_one(settings, url, *, is_test=False):
    settings = settings.replace(smtp_url=url, smtp_timeout=5.0)
    context = CampaignContext(
        campaign_id=7, issue_id=1, batch_no=0, list_ids=(1,), tracking=False, is_test=is_test
    )
    source = build_campaign_source(settings, context, SampleRendered())
    channel = SmtpChannel(settings, context, source=source)
    channel.open()
    try:
        return channel.send([Recipient(41, 9, "reader@example.net", "读者", "zh-CN")])
    finally:
        channel.close()


def test_channel_mail_from_is_the_verp_address_and_from_header_unchanged(smtp_server):  # noqa: F811
    [result] = _send_one(SETTINGS, smtp_server.url)
    assert result.outcome == "sent"
    [received] = smtp_server.messages
    assert received.mail_from == verp_address(SETTINGS, "c", 7, 41)
    assert "bulletin@example.org" in message_from_bytes(received.data)["From"]


def test_test_sends_get_their_own_kind(smtp_server):  # noqa: F811
    _send_one(SETTINGS, smtp_server.url, is_test=True)
    token = bounce_token_in(SETTINGS, smtp_server.messages[0].mail_from)
    assert token is not None and verify_bounce_token(SETTINGS, token).kind == "t"


def test_off_means_the_from_address(smtp_server):  # noqa: F811
    _send_one(SETTINGS.replace(bounce_address=""), smtp_server.url)
    assert smtp_server.messages[0].mail_from == "bulletin@example.org"


def test_transactional_mail_gets_a_transactional_token(smtp_server):  # noqa: F811
    message = EmailMessage()
    message["To"] = "new@example.net"
    message["Subject"] = "请确认订阅"
    message.set_content("确认链接")
    send_transactional(SETTINGS.replace(smtp_url=smtp_server.url), message, subscriber_id=5)
    token = bounce_token_in(SETTINGS, smtp_server.messages[0].mail_from)
    assert token is not None
    claim = verify_bounce_token(SETTINGS, token)
    assert (claim.kind, claim.campaign_id, claim.ref_id) == ("t", 0, 5)
