"""DKIM: signed with List-Unsubscribe and List-Unsubscribe-Post, verified by dkimpy, tamper-evident."""

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
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
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
    assert {b"list-unsubscribe", b"list-unsubscribe-post", b"from", b"subject", b"message-id"} <= signed
    assert sig.signature_fields[b"c"] == b"relaxed/relaxed"
    assert sig.signature_fields[b"a"] == b"rsa-sha256"


@pytest.mark.parametrize(
    "old,new",
    [
        (b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: List-Unsubscribe=Two-Click"),
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
    tampered = raw.replace(b"MIME-Version:", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version:", 1)
    assert not dkim.verify(tampered, dnsfunc=dnsfunc_for(txt))


def test_no_signer_without_settings_and_clear_errors_when_half_configured(tmp_path):
    assert signer_from_settings(load_settings(env={})) is None
    with pytest.raises(DkimConfigError, match="dkim_key_file"):
        signer_from_settings(load_settings(env={}).replace(dkim_selector="s", dkim_domain="example.org"))
    with pytest.raises(DkimConfigError, match="cannot read"):
        signer_from_settings(
            load_settings(env={}).replace(
                dkim_key_file=str(tmp_path / "missing.pem"), dkim_selector="s", dkim_domain="example.org"
            )
        )


def test_signer_repr_hides_the_key(key_pair):
    key_file, _ = key_pair
    settings = load_settings(env={}).replace(dkim_key_file=str(key_file), dkim_selector=SELECTOR, dkim_domain=DOMAIN)
    assert "PRIVATE" not in repr(signer_from_settings(settings))
