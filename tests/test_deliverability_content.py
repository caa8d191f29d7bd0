"""Content that filters like: a message produced by a real campaign, scored by SpamAssassin and
its DKIM signature verified by Perl's Mail::DKIM fetching the key from a local DNS server.

SpamAssassin runs with -L (local tests only: no network); the report is kept under
test-artifacts/ for a person to read. Mail::DKIM is a verifier independent of dkimpy, which
signs; it asks dnsmasq (on a loopback port) for the selector's TXT record.
"""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dispatch.channels.dkim import public_key_record
from dispatch.paths import PROJECT_ROOT
from dns_server import DnsmasqServer, Zone
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import send_sample_campaign

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"
SELECTOR = "bulletin2026"
DOMAIN = "example.org"
POSTAL = "北京市海淀区学院路 30 号 100083 / 30 Xueyuan Road, Haidian, Beijing 100083"
VERIFY_PL = r"""
use strict; use warnings;
use Mail::DKIM::Verifier; use Net::DNS::Resolver;
my ($port) = @ARGV;
Mail::DKIM::DNS::resolver(Net::DNS::Resolver->new(
    nameservers => ['127.0.0.1'], port => $port, recurse => 1, udp_timeout => 5));
my $v = Mail::DKIM::Verifier->new();
binmode STDIN;
while (<STDIN>) { s/\r?\n\z/\r\n/; $v->PRINT($_); }
$v->CLOSE;
foreach my $sig ($v->signatures) {
    printf "signature d=%s s=%s result=%s detail=%s h=%s\n", $sig->domain, $sig->selector,
        $sig->result, ($sig->result_detail // ''), join(':', $sig->headerlist);
}
print "result=", $v->result, "\n";
"""


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


def _campaign_message(session, engine, settings, server, address: str) -> bytes:
    emails = [address, "other@example.net"]
    send_sample_campaign(session, engine, settings, "members", emails, tracking=True)
    received = server.received_by(address)
    assert len(received) == 1
    return received[0].data


def _settings(settings, server, key_file: Path):
    return settings.replace(
        smtp_url=server.url,
        from_address=f"bulletin@{DOMAIN}",
        dkim_selector=SELECTOR,
        dkim_domain=DOMAIN,
        dkim_key_file=str(key_file),
        unsubscribe_mailto=f"unsubscribe@{DOMAIN}",
        postal_address=POSTAL,
    )


@pytest.mark.slow
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_campaign_message_scores_at_most_zero_in_spamassassin(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    dkim_key,
    artifacts_dir,
    tmp_path,
):
    spamassassin = shutil.which("spamassassin")
    assert spamassassin, "Debian's spamassassin package is needed (scripts/test installs it)"
    settings = _settings(settings, smtp_server, dkim_key[0])
    raw = _campaign_message(session, engine, settings, smtp_server, "li.si@example.net")
    (artifacts_dir / "spamassassin-message.eml").write_bytes(raw)
    prefs = tmp_path / "user_prefs"
    prefs.write_text("")
    result = subprocess.run(
        [spamassassin, "-L", "-t", "-p", str(prefs)],
        input=raw,
        capture_output=True,
        timeout=180,
        env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    report = result.stdout.decode("utf-8", "replace")
    header, _, _ = report.partition("\n\n")
    match = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", header, re.M)
    assert match, report[:2000]
    score = float(match[1])
    details = report[report.find("Content analysis details") :]
    (artifacts_dir / "spamassassin-report.txt").write_text(
        f"score: {score}\n\n{details}", encoding="utf-8"
    )
    assert score <= 0.0, details
    fired = set(re.findall(r"^\s*-?\d+\.\d+ ([A-Z0-9_]+)\s", details, re.M))
    # informational rules only: nothing about contrast, images, missing headers
    # (WEIRD_QUOTING matches bytes of UTF-8 CJK text next to Chinese quotation marks; 0 points)
    assert fired <= {"NO_RECEIVED", "NO_RELAYS", "HTML_MESSAGE", "WEIRD_QUOTING"}, details


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_message_has_unsubscribe_headers_postal_address_and_matching_text(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    dkim_key,
):
    settings = _settings(settings, smtp_server, dkim_key[0])
    raw = _campaign_message(session, engine, settings, smtp_server, "li.si@example.net")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    unsubscribe = [u.strip(" <>") for u in msg["List-Unsubscribe"].split(",")]
    assert unsubscribe[0].startswith("https://bulletin.example.org/u/")
    assert unsubscribe[1].startswith(f"mailto:unsubscribe@{DOMAIN}")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    plain, html = (part.get_content() for part in msg.iter_parts())
    assert unsubscribe[0] in html and unsubscribe[0] in plain  # a visible link in both parts
    assert POSTAL in plain and POSTAL in html
    # the plain part carries what the HTML carries: every article title
    titles = re.findall(r'class="article-title"[^>]*>(?:<a [^>]*>)?([^<]+)<', html)
    assert titles
    for title in titles:
        assert title.strip() in plain


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mail_dkim_verifies_campaign_and_confirmation_over_dns(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    dkim_key,
    tmp_path,
):
    key_file, txt = dkim_key
    settings = _settings(settings, smtp_server, key_file)
    raw = _campaign_message(session, engine, settings, smtp_server, "li.si@example.net")
    script = tmp_path / "verify.pl"
    script.write_text(VERIFY_PL)
    zone = Zone().add_txt(f"{SELECTOR}._domainkey.{DOMAIN}", txt)
    with DnsmasqServer(zone, tmp_path / "dns") as dns:

        def verify(message: bytes) -> str:
            done = subprocess.run(
                ["perl", str(script), str(dns.port)], input=message, capture_output=True, timeout=60
            )
            assert done.returncode == 0, done.stderr.decode()
            return done.stdout.decode()

        out = verify(raw)
        assert "result=pass" in out, out
        signed = re.search(r"h=(\S+)", out)[1].lower().split(":")
        for name in ("list-unsubscribe-post", "list-unsubscribe", "from", "subject", "to"):
            assert name in signed
        # over-signed: a second copy of To, Date, Message-ID, List-Id breaks the signature
        for header in (
            b"To: attacker@example.com",
            b"Date: Mon, 1 Jan 2024 00:00:00 +0000",
            b"Message-ID: <forged@example.com>",
            b"List-Id: <other.example.com>",
            b"Content-Type: text/plain",
        ):
            tampered = header + b"\r\n" + raw
            assert "result=fail" in verify(tampered), header

        # transactional mail (a double opt-in confirmation) is signed too
        from email.message import EmailMessage

        from dispatch.transactional import send_transactional

        message = EmailMessage()
        message["To"] = "new.member@example.net"
        message["From"] = f"bulletin@{DOMAIN}"
        message["Subject"] = "请确认订阅 / Please confirm"
        message.set_content("https://bulletin.example.org/c/TOKEN")
        send_transactional(settings, message)
        confirmation = smtp_server.received_by("new.member@example.net")[0].data
        assert "result=pass" in verify(confirmation)
