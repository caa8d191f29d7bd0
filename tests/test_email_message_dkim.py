"""DKIM: signed with List-Unsubscribe and List-Unsubscribe-Post, verified by dkimpy,
tamper-evident."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dispatch.channels.dkim import DkimConfigError, signer_from_settings
from dispatch.channels.email_message import build_template
from dispatch.config import load_settings
from smtp_server import smtp_server  # noqa: F401

SELECTOR = "mail2026"
DOMAIN = "example.org"


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory) -> tuple[Path, bytes]:
    """A fresh RSA key file and the DNS TXT record publishing its public half."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path_factory.mktemp("dkim")
    key_file = folder / "dkim.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    txt = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public_der)
    return key_file, txt


def dnsfunc_for(txt: bytes):
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return txt if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else None

    return dnsfunc


def signed_message(key_file: Path) -> bytes:
    settings = load_settings(env={}).replace(
        dkim_key_file=str(key_file), dkim_selector=SELECTOR, dkim_domain=DOMAIN
    )
    signer = signer_from_settings(settings)
    assert signer is not None
    tpl = build_template(
        campaign_id=3,
        subject="工作简报 2023年第2期",
        from_address="bulletin@example.org",
        from_name="工作简报",
        list_id="bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    raw = tpl.fill(
        delivery_id=9,
        to_address="reader@example.net",
        to_name="读者",
        unsubscribe_url="https://bulletin.example.org/u/TOKEN",
        html="<p>正文</p>",
        text="正文",
    )
    return signer.sign(raw)


def test_signature_verifies_and_covers_list_unsubscribe_post(key_pair):
    key_file, txt = key_pair
    raw = signed_message(key_file)
    assert raw.startswith(b"DKIM-Signature:")
    assert dkim.verify(raw, dnsfunc=dnsfunc_for(txt))
    sig = dkim.DKIM(raw)
    sig.verify(dnsfunc=dnsfunc_for(txt))
    signed = {h.lower() for h in sig.include_headers}
    assert {
        b"list-unsubscribe",
        b"list-unsubscribe-post",
        b"from",
        b"subject",
        b"message-id",
    } <= signed
    assert sig.signature_fields[b"c"] == b"relaxed/relaxed"
    assert sig.signature_fields[b"a"] == b"rsa-sha256"


@pytest.mark.parametrize(
    "old,new",
    [
        (
            b"List-Unsubscribe-Post: List-Unsubscribe=One-Click",
            b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click",
        ),
        (b"<https://bulletin.example.org/u/TOKEN>", b"<https://evil.example.com/u/TOKEN>"),
        (b"Message-ID: <d9.c3@example.org>", b"Message-ID: <d10.c3@example.org>"),
    ],
)
def test_a_modified_header_fails_verification(key_pair, old, new):
    key_file, txt = key_pair
    raw = signed_message(key_file)
    assert old in raw
    assert not dkim.verify(raw.replace(old, new), dnsfunc=dnsfunc_for(txt))


def test_an_added_list_unsubscribe_post_fails_verification(key_pair):
    key_file, txt = key_pair
    raw = signed_message(key_file)
    tampered = raw.replace(
        b"MIME-Version:", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version:", 1
    )
    assert not dkim.verify(tampered, dnsfunc=dnsfunc_for(txt))


def test_no_signer_without_settings_and_clear_errors_when_half_configured(tmp_path):
    assert signer_from_settings(load_settings(env={})) is None
    with pytest.raises(DkimConfigError, match="dkim_key_file"):
        signer_from_settings(
            load_settings(env={}).replace(dkim_selector="s", dkim_domain="example.org")
        )
    with pytest.raises(DkimConfigError, match="cannot read") as unreadable:
        signer_from_settings(
            load_settings(env={}).replace(
                dkim_key_file=str(tmp_path / "missing.pem"),
                dkim_selector="s",
                dkim_domain="example.org",
            )
        )
    assert "无法读取私钥" in str(unreadable.value)  # every CLI-visible error in both languages


def test_signer_repr_hides_the_key(key_pair):
    key_file, _ = key_pair
    settings = load_settings(env={}).replace(
        dkim_key_file=str(key_file), dkim_selector=SELECTOR, dkim_domain=DOMAIN
    )
    assert "PRIVATE" not in repr(signer_from_settings(settings))


def test_the_message_a_recipient_gets_carries_a_valid_signature(key_pair, smtp_server):  # noqa: F811
    from dispatch.channels.base import CampaignContext, Recipient
    from dispatch.channels.email_source import build_campaign_source
    from dispatch.channels.smtp import SmtpChannel

    class Rendered:
        subject = "工作简报"
        link_count = 0

        def personalize(self, slots):
            return f"<p>{slots.name}</p>", slots.name

    key_file, txt = key_pair
    settings = load_settings(env={}).replace(
        smtp_url=smtp_server.url,
        secret_key="k",
        dkim_key_file=str(key_file),
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        unsubscribe_mailto="unsubscribe@example.org",
    )
    context = CampaignContext(campaign_id=1, issue_id=1, batch_no=0, list_ids=(1,), tracking=False)
    channel = SmtpChannel(
        settings, context, source=build_campaign_source(settings, context, Rendered())
    )
    channel.open()
    try:
        assert [
            r.outcome
            for r in channel.send([Recipient(5, 6, "reader@example.net", "读者", "zh-CN")])
        ] == ["sent"]
    finally:
        channel.close()
    received = smtp_server.messages[0].data
    assert received.startswith(b"DKIM-Signature:")
    assert dkim.verify(received, dnsfunc=dnsfunc_for(txt))
