"""dispatch doctor against a real DNS server (dnsmasq on loopback) and a real TLS relay.

The good zone passes every check; each broken zone (two SPF records, an SPF needing more than
10 lookups, a truncated DKIM key, a DMARC syntax error) fails exactly the check it breaks and
nothing else; a DNS server that never answers is reported as a timeout, never a crash.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dispatch.channels.dkim import public_key_record
from dispatch.config import load_settings, set_settings
from dispatch.deliverability.doctor import run_doctor
from dns_server import DnsmasqServer, Zone, silent_dns_server
from smtp_server import ScriptedSmtpServer, make_self_signed_cert

SELECTOR = "mail2026"
DOMAIN = "example.org"
DNS_CHECKS = {"spf", "dkim", "dmarc", "bounce_mx", "relay_ptr"}


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory) -> tuple[Path, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, public_key_record(key)


@pytest.fixture(scope="module")
def relay(tmp_path_factory):
    """A relay offering STARTTLS with a certificate the doctor can verify (cafile)."""
    folder = tmp_path_factory.mktemp("relay")
    cert, key = make_self_signed_cert(folder)
    with ScriptedSmtpServer(starttls_cert=(cert, key)) as server:
        yield server, cert


def good_zone(dkim_txt: str) -> Zone:
    zone = Zone()
    zone.add_txt(DOMAIN, "v=spf1 ip4:127.0.0.1 include:_spf.relay.test -all")
    zone.add_txt(DOMAIN, "google-site-verification=abc")  # other TXT records are not SPF
    zone.add_txt("_spf.relay.test", "v=spf1 ip4:192.0.2.0/24 ~all")
    zone.add_txt(f"{SELECTOR}._domainkey.{DOMAIN}", dkim_txt)
    zone.add_txt(
        f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org; adkim=r; aspf=r"
    )
    zone.mx[DOMAIN] = [("mx.example.org", 10)]
    zone.a["mx.example.org"] = "127.0.0.5"
    zone.a["relay.example.org"] = "127.0.0.1"  # host-record also answers its PTR
    return zone


def broken_zones(dkim_txt: str) -> dict[str, tuple[Zone, str, str]]:
    """name -> (zone, the check that must fail, its reason key)."""
    zones: dict[str, tuple[Zone, str, str]] = {}
    good = good_zone(dkim_txt)

    two_spf = copy.deepcopy(good)
    two_spf.add_txt(DOMAIN, "v=spf1 mx -all")
    zones["two_spf"] = (two_spf, "spf", "spf.many")

    many_lookups = copy.deepcopy(good)
    includes = " ".join(f"include:s{i}.relay.test" for i in range(4))
    many_lookups.txt[DOMAIN] = [f"v=spf1 ip4:127.0.0.1 {includes} -all"]
    for i in range(4):  # 4 includes, each with a and mx: 12 lookups
        many_lookups.add_txt(f"s{i}.relay.test", "v=spf1 a mx -all")
    zones["spf_lookups"] = (many_lookups, "spf", "spf.lookups")

    truncated = copy.deepcopy(good)
    truncated.txt[f"{SELECTOR}._domainkey.{DOMAIN}"] = [dkim_txt[:200]]
    zones["dkim_truncated"] = (truncated, "dkim", "dkim.bad_record")

    dmarc_syntax = copy.deepcopy(good)
    dmarc_syntax.txt[f"_dmarc.{DOMAIN}"] = [
        "v=DMARC1; p=quarantine; adkim=x; rua=dmarc@example.org"
    ]
    zones["dmarc_syntax"] = (dmarc_syntax, "dmarc", "dmarc.syntax")
    return zones


def doctor_settings(tmp_path: Path, key_file: Path, relay_url: str, nameservers: str):
    return load_settings(env={}).replace(
        data_dir=tmp_path / "var",
        from_address=f"bulletin@{DOMAIN}",
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        dkim_key_file=str(key_file),
        smtp_url=relay_url,
        dns_nameservers=nameservers,
        dns_timeout=1.0,
        bounce_mx_hosts="mx.example.org",
        public_base_url="https://bulletin.example.org",
        unsubscribe_mailto=f"unsubscribe@{DOMAIN}",
        postal_address="北京市海淀区学院路 1 号 / 1 Xueyuan Rd, Beijing",
    )


def _relay_url(relay) -> str:
    server, cert = relay
    return f"{server.url}&cafile={cert}"


def test_good_zone_passes_every_check(tmp_path, dkim_key, relay):
    key_file, txt = dkim_key
    with DnsmasqServer(good_zone(txt), tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        report = run_doctor(settings)
    failing = {r.check: r.reason("en") for r in report.results if r.status != "pass"}
    assert failing == {}
    assert report.status == "pass"
    assert report.get("dkim").params["bits"] == 2048
    assert "TLS" in report.get("relay_tls").params["version"]
    assert report.get("relay_ptr").params["name"] == "relay.example.org"


@pytest.mark.parametrize("zone_name", ["two_spf", "spf_lookups", "dkim_truncated", "dmarc_syntax"])
def test_each_broken_zone_fails_exactly_its_check(tmp_path, dkim_key, relay, zone_name):
    key_file, txt = dkim_key
    zone, check, key = broken_zones(txt)[zone_name]
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        report = run_doctor(settings)
    not_passing = {r.check: (r.status, r.key) for r in report.results if r.status != "pass"}
    assert not_passing == {check: ("fail", key)}
    result = report.get(check)
    assert result.record  # the record to publish instead
    assert (
        result.reason("zh-CN")
        and result.reason("en")
        and result.reason("zh-CN") != result.reason("en")
    )


def test_reasons_name_the_rule(tmp_path, dkim_key, relay):
    key_file, txt = dkim_key
    zones = broken_zones(txt)
    with DnsmasqServer(zones["spf_lookups"][0], tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        assert "12 DNS lookups" in run_doctor(settings).get("spf").reason("en")
    with DnsmasqServer(zones["dkim_truncated"][0], tmp_path / "dns2") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        assert "truncated" in run_doctor(settings).get("dkim").reason("en")
    with DnsmasqServer(zones["dmarc_syntax"][0], tmp_path / "dns3") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        assert "adkim='x'" in run_doctor(settings).get("dmarc").reason("en")


def test_missing_records_and_wrong_key_say_what_to_publish(tmp_path, dkim_key, relay):
    key_file, txt = dkim_key
    zone = good_zone(txt)
    del zone.txt[f"_dmarc.{DOMAIN}"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    zone.txt[f"{SELECTOR}._domainkey.{DOMAIN}"] = [public_key_record(other)]
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        report = run_doctor(settings)
    assert report.get("dmarc").key == "dmarc.none"
    assert report.get("dmarc").record.startswith(
        '_dmarc.example.org. IN TXT "v=DMARC1; p=quarantine'
    )
    assert report.get("dkim").key == "dkim.mismatch"
    assert txt in report.get("dkim").record  # the key dispatch really signs with


def test_silent_dns_server_is_a_timeout_not_a_crash(tmp_path, dkim_key, relay):
    key_file, _ = dkim_key
    with silent_dns_server() as nameservers:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), nameservers).replace(
            dns_timeout=0.3
        )
        started = time.monotonic()
        report = run_doctor(settings)
        elapsed = time.monotonic() - started
    for check in DNS_CHECKS:
        result = report.get(check)
        assert (result.status, result.key) == ("fail", "dns.timeout"), check
        assert "did not answer" in result.reason("en")
    assert report.get("relay_tls").status == "pass"  # TLS does not need DNS: still probed
    assert elapsed < 10  # each question given up after dns_timeout, asked once


def test_unaligned_dkim_domain_and_http_url_fail(tmp_path, dkim_key, relay):
    key_file, txt = dkim_key
    with DnsmasqServer(good_zone(txt), tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers).replace(
            dkim_domain="relay-provider.net", public_base_url="http://bulletin.example.org"
        )
        report = run_doctor(settings)
    assert report.get("dkim").key == "dkim.config"
    assert "does not align" in report.get("dkim").reason("en")
    assert report.get("public_url").status == "fail"


def test_cli_json_and_exit_code(tmp_path, dkim_key, relay):
    key_file, txt = dkim_key
    zone = broken_zones(txt)["two_spf"][0]
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers)
        set_settings(settings)
        try:
            from dispatch.cli import main

            result = CliRunner().invoke(main, ["doctor", "--json"])
            human = CliRunner().invoke(main, ["doctor"])
        finally:
            set_settings(None)
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    assert data["status"] == "fail"
    spf = next(c for c in data["checks"] if c["check"] == "spf")
    assert spf["status"] == "fail" and "SPF" in spf["reason"]["zh-CN"]
    assert "✗ SPF 记录 / SPF record: 失败 / fail" in human.output
    assert 'example.org. IN TXT "v=spf1' in human.output


def test_bad_nameserver_setting_is_a_clear_error(tmp_path, dkim_key):
    key_file, _ = dkim_key
    settings = doctor_settings(tmp_path, key_file, "", "dns.example.org:53")
    set_settings(settings)
    try:
        from dispatch.cli import main

        result = CliRunner().invoke(main, ["doctor"])
    finally:
        set_settings(None)
    assert result.exit_code == 1
    assert "dns_nameservers" in result.output and "dns.example.org:53" in result.output


def test_dkim_generate_writes_a_key_doctor_accepts(tmp_path):
    from dispatch.cli import main

    set_settings(load_settings(env={}).replace(data_dir=tmp_path / "var"))
    try:
        key_file = tmp_path / "keys" / "dkim.pem"
        result = CliRunner().invoke(
            main, ["dkim", "generate", "--selector", "b2026", "--key-file", str(key_file), "--json"]
        )
        again = CliRunner().invoke(
            main, ["dkim", "generate", "--selector", "b2026", "--key-file", str(key_file)]
        )
        weak = CliRunner().invoke(
            main,
            [
                "dkim",
                "generate",
                "--selector",
                "b",
                "--key-file",
                str(tmp_path / "w"),
                "--bits",
                "1024",
            ],
        )
    finally:
        set_settings(None)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["name"] == "b2026._domainkey.example.org"
    assert data["txt"].startswith("v=DKIM1; k=rsa; p=")
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert again.exit_code == 1 and "--force" in again.output
    assert weak.exit_code == 1 and "2048" in weak.output


def test_ed25519_beside_rsa_must_be_published_too(tmp_path, dkim_key, relay):
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key_file, txt = dkim_key
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_file = tmp_path / "ed.pem"
    ed_file.write_bytes(
        ed_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    zone = good_zone(txt)
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        settings = doctor_settings(tmp_path, key_file, _relay_url(relay), dns.nameservers).replace(
            dkim_ed25519_selector="ed2026", dkim_ed25519_key_file=str(ed_file)
        )
        missing = run_doctor(settings).get("dkim")
    assert (missing.status, missing.key) == ("fail", "dkim.none")
    assert missing.record.startswith(
        'ed2026._domainkey.example.org. IN TXT "v=DKIM1; k=ed25519; p='
    )
    zone.add_txt(f"ed2026._domainkey.{DOMAIN}", public_key_record(ed_key))
    with DnsmasqServer(zone, tmp_path / "dns2") as dns:
        report = run_doctor(settings.replace(dns_nameservers=dns.nameservers))
    assert report.get("dkim").status == "pass", report.get("dkim").reason("en")


def test_every_relay_is_probed_and_named(tmp_path, dkim_key, relay):
    """With several relays (dispatch.delivery.relays), each gets its own PTR and TLS finding,
    and SPF must authorise all of them."""
    key_file, txt = dkim_key
    zone = good_zone(txt)
    zone.txt[DOMAIN] = ["v=spf1 ip4:127.0.0.1 -all"]  # 127.0.0.2 (the second relay) missing
    zone.a["relay2.example.org"] = "127.0.0.2"
    plain = ScriptedSmtpServer()
    plain.host = "127.0.0.2"  # a relay without STARTTLS on another loopback address
    with plain, DnsmasqServer(zone, tmp_path / "dns") as dns:
        plain_url = plain.url
        settings = doctor_settings(tmp_path, key_file, "", dns.nameservers).replace(
            relays=[
                {"name": "exmail", "url": _relay_url(relay)},
                {"name": "campus", "url": plain_url},
            ]
        )
        report = run_doctor(settings)
    tls = [r for r in report.results if r.check == "relay_tls"]
    ptr = [r for r in report.results if r.check == "relay_ptr"]
    assert [r.params["relay"] for r in tls] == ["exmail", "campus"]
    assert [r.status for r in ptr] == ["pass", "pass"]
    assert tls[0].status == "pass"
    assert (tls[1].status, tls[1].key) == ("warn", "tls.plain")
    assert tls[1].reason("en").startswith("[campus] the connection to the relay is not encrypted")
    spf = report.get("spf")
    assert (spf.status, spf.key, spf.params["address"]) == (
        "fail",
        "spf.relay_not_authorised",
        "127.0.0.2",
    )
    assert "ip4:127.0.0.2" in spf.record
