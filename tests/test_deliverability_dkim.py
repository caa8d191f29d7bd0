"""DKIM keys that dispatch refuses, and Ed25519 beside RSA (RFC 8463) against keys served by
dnsmasq on loopback: Perl's Mail::DKIM (Debian's has no Ed25519) passes the message on its RSA
signature and calls the Ed25519 one unsupported, which is why Ed25519 only goes beside RSA;
dkimpy, asking dnspython pointed at the same server, verifies the Ed25519 signature."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import dkim
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from dispatch.channels.dkim import DkimConfigError, public_key_record, signer_from_settings
from dispatch.channels.email_message import build_template
from dispatch.config import load_settings, set_settings
from dispatch.deliverability.dns import Resolver, parse_nameservers
from dns_server import DnsmasqServer, Zone
from test_deliverability_content import VERIFY_PL

DOMAIN = "example.org"


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _settings(tmp_path: Path, key, **extra):
    path = tmp_path / f"key-{len(list(tmp_path.iterdir()))}.pem"
    path.write_bytes(_pem(key) if not isinstance(key, bytes) else key)
    return load_settings(env={}).replace(
        from_address=f"bulletin@{DOMAIN}",
        dkim_selector="rsa2026",
        dkim_domain=DOMAIN,
        dkim_key_file=str(path),
        **extra,
    )


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024), "RSA key of 1024 bits"),
        (ed25519.Ed25519PrivateKey.generate(), "Ed25519 key alone"),
        (ec.generate_private_key(ec.SECP256R1()), "DKIM needs RSA of at least 2048 bits"),
        (b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", "not a usable"),
    ],
)
def test_keys_dkim_refuses_and_why(tmp_path, key, problem):
    with pytest.raises(DkimConfigError, match=problem):
        signer_from_settings(_settings(tmp_path, key))


def test_unaligned_signing_domain_is_refused_unless_asked(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    settings = _settings(tmp_path, key).replace(dkim_domain="relay-provider.net")
    with pytest.raises(DkimConfigError, match="does not align with the From domain"):
        signer_from_settings(settings)
    assert signer_from_settings(settings.replace(dkim_allow_unaligned=True)) is not None
    # a parent of the From domain aligns (relaxed), a sibling under edu.cn does not
    sub = settings.replace(from_address="bulletin@news.example.org", dkim_domain=DOMAIN)
    assert signer_from_settings(sub) is not None
    edu = settings.replace(from_address="x@a.edu.cn", dkim_domain="b.edu.cn")
    with pytest.raises(DkimConfigError, match="does not align"):
        signer_from_settings(edu)


def test_ed25519_only_beside_rsa(tmp_path):
    ed = tmp_path / "ed.pem"
    ed.write_bytes(_pem(ed25519.Ed25519PrivateKey.generate()))
    alone = load_settings(env={}).replace(
        dkim_ed25519_selector="ed2026", dkim_ed25519_key_file=str(ed)
    )
    with pytest.raises(DkimConfigError, match="only used beside an RSA one"):
        signer_from_settings(alone)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    half = _settings(tmp_path, key, dkim_ed25519_selector="ed2026")
    with pytest.raises(DkimConfigError, match="dkim_ed25519_key_file"):
        signer_from_settings(half)


def test_rsa_and_ed25519_signatures_verify_with_mail_dkim_over_dns(tmp_path):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_file = tmp_path / "ed.pem"
    ed_file.write_bytes(_pem(ed_key))
    settings = _settings(
        tmp_path, rsa_key, dkim_ed25519_selector="ed2026", dkim_ed25519_key_file=str(ed_file)
    )
    signer = signer_from_settings(settings)
    assert "ed2026" in repr(signer) and "PRIVATE" not in repr(signer)
    template = build_template(
        campaign_id=1,
        subject="工作简报",
        from_address=settings.from_address,
        from_name="工作简报",
        list_id="bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
    )
    raw = signer.sign(
        template.fill(
            delivery_id=1,
            to_address="reader@example.net",
            to_name="读者",
            unsubscribe_url="https://bulletin.example.org/u/T",
            html="<p>正文</p>",
            text="正文",
        )
    )
    assert raw.count(b"DKIM-Signature:") == 2
    zone = Zone()
    zone.add_txt(f"rsa2026._domainkey.{DOMAIN}", public_key_record(rsa_key))
    zone.add_txt(f"ed2026._domainkey.{DOMAIN}", public_key_record(ed_key))
    script = tmp_path / "verify.pl"
    script.write_text(VERIFY_PL)
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        out = subprocess.run(
            ["perl", str(script), str(dns.port)], input=raw, capture_output=True, timeout=60
        )
        resolver = Resolver(parse_nameservers(dns.nameservers), 2.0)

        def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
            return "".join(resolver.txt(name.decode().rstrip("."))).encode()

        # the Ed25519 header comes first (DkimSigner.sign prepends it before the RSA one)
        assert b"a=ed25519-sha256" in raw[: raw.index(b"DKIM-Signature:", 1)]
        assert dkim.DKIM(raw).verify(idx=0, dnsfunc=dnsfunc)
        tampered = raw.replace(b"Subject:", b"Subject: Re:", 1)
        assert not dkim.DKIM(tampered).verify(idx=0, dnsfunc=dnsfunc)
    text = out.stdout.decode()
    assert out.returncode == 0, out.stderr.decode()
    results = dict(re.findall(r"s=(\S+) result=(\S+)", text))
    assert results["rsa2026"] == "pass", text
    assert results["ed2026"] == "pass" or "unsupported algorithm ed25519" in text, text
    assert "result=pass" in text  # the message passes: receivers without Ed25519 use RSA


def test_dkim_generate_ed25519_prints_its_record(tmp_path):
    from dispatch.cli import main

    set_settings(load_settings(env={}).replace(data_dir=tmp_path / "var"))
    try:
        result = CliRunner().invoke(
            main,
            ["dkim", "generate", "--type", "ed25519", "--selector", "ed2026",
             "--key-file", str(tmp_path / "ed.pem"), "--json"],
        )  # fmt: skip
    finally:
        set_settings(None)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["txt"].startswith("v=DKIM1; k=ed25519; p=")
    assert data["settings"] == {
        "dkim_ed25519_selector": "ed2026",
        "dkim_ed25519_key_file": str(tmp_path / "ed.pem"),
    }
