"""send_transactional: the embedded outbox, and real SMTP (plain, STARTTLS + AUTH) on loopback."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from dispatch.config import load_settings
from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.subscribers.optin import build_confirmation_email, send_confirmation
from dispatch.tokens import verify_confirmation_token
from dispatch.transactional import send_transactional
from smtp_server import ScriptedSmtpServer, make_self_signed_cert


@pytest.fixture
def base(tmp_path):
    return load_settings(env={}).replace(
        data_dir=tmp_path / "var", secret_key="k", public_base_url="https://news.example.org"
    )


def _message(to: str = "reader@example.org") -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = "测试 / test"
    message["To"] = to
    message.set_content("你好 hello")
    return message


def test_outbox_when_no_smtp_url(base):
    message_id = send_transactional(base, _message())
    [eml] = list((base.data_dir / "outbox").glob("*.eml"))
    parsed = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert parsed["Message-ID"] == message_id
    assert parsed["From"] == base.from_address and parsed["Date"]
    assert parsed.get_content().strip() == "你好 hello"
    assert not list((base.data_dir / "outbox").glob("*.tmp"))


def test_plain_smtp(base, tmp_path):
    with ScriptedSmtpServer() as server:
        send_transactional(base.replace(smtp_url=server.url), _message())
    [received] = server.messages
    assert received.rcpt_tos == ("reader@example.org",)
    assert (
        "你好 hello"
        in email.message_from_bytes(received.data, policy=email.policy.default).get_content()
    )


def test_starttls_with_auth(base, tmp_path):
    cert, key = make_self_signed_cert(tmp_path)
    with ScriptedSmtpServer(starttls_cert=(cert, key), credentials={"mailer": "s3cret"}) as server:
        settings = base.replace(
            smtp_url=f"{server.url}&cafile={cert}", smtp_username="mailer", smtp_password="s3cret"
        )
        send_transactional(settings, _message())
        assert server.auth_attempts == [("mailer", True)]
        assert len(server.messages) == 1
        with pytest.raises(Exception):  # noqa: B017 - wrong password: the SMTP error reaches the caller
            send_transactional(settings.replace(smtp_password="wrong"), _message())
        assert len(server.messages) == 1


def test_confirmation_email_in_english_and_none_without_email(base):
    person = Subscriber(id=5, email="amy@example.org", name="Amy", locale="en")
    news = MailingList(id=2, slug="news", name="Monthly Bulletin", optin="double")
    message = build_confirmation_email(base, person, news)
    assert message["Subject"] == "Please confirm your subscription: Monthly Bulletin"
    text = message.get_body(("plain",)).get_content()
    assert text.startswith("Hello Amy,")
    token = next(line for line in text.splitlines() if "/confirm/" in line).rsplit("/", 1)[1]
    assert verify_confirmation_token(base, token)[:2] == (5, 2)
    html = message.get_body(("html",)).get_content()
    assert 'lang="en"' in html and "Confirm subscription" in html
    assert (
        send_confirmation(base, Subscriber(id=6, openid="oX", name="", locale="zh-CN"), news)
        is None
    )
