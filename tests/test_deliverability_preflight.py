"""Before a send: a stale list (role and invalid addresses) and a failing domain check are
flagged by `dispatch send`; doctor_enforce refuses; lists can ask for NetEase's "(AD)" marker."""

from __future__ import annotations

import email
import email.policy
import json

from click.testing import CliRunner
from sqlalchemy import func, select

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.content.store import publish_source
from dispatch.deliverability.doctor import CheckResult, DoctorReport, save_report
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign
from dispatch.models.subscriber import MailingList
from dispatch.paths import PROJECT_ROOT
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import make_list_with

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"


def _cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _passing_report(settings) -> None:
    save_report(settings, DoctorReport("example.org", [CheckResult("spf", "pass", "spf.ok")]))


def test_import_of_a_stale_list_is_flagged_before_sending(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    tmp_path,
):
    settings = settings.replace(smtp_url=smtp_server.url)
    set_settings(settings)
    _passing_report(settings)
    rows = ["email,name"]
    rows += [f"member{i}@example.net,M{i}" for i in range(40)]
    rows += ["info@example.com,", "postmaster@example.com,", "noreply@example.com,"]
    rows += [f"not-an-address-{i}," for i in range(4)]
    csv = tmp_path / "alumni.csv"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    assert _cli("lists", "create", "alumni").exit_code == 0
    imported = _cli("subscribers", "import", str(csv), "--list", "alumni")
    assert imported.exit_code == 0, imported.output
    session.expire_all()
    stats = session.scalars(select(MailingList).where(MailingList.slug == "alumni")).one()
    assert stats.import_stats["invalid"] == 4 and stats.import_stats["role"] == 3
    publish_source(session, SAMPLE_ISSUE)
    session.commit()

    sent = _cli("send", "2023-02", "--lists", "alumni", "--json")
    assert sent.exit_code == 0, sent.output
    warnings = json.loads(sent.output)["warnings"]
    assert any("last import (alumni.csv): 4 invalid and 3 role addresses" in w for w in warnings)
    assert any("3 of 43 addresses" in w and "info@example.com" in w for w in warnings)
    human = _cli("send", "2023-02", "--lists", "alumni")  # the same send: exists already
    assert human.exit_code == 0

    clean_csv = tmp_path / "clean.csv"
    clean_csv.write_text(
        "email\n" + "\n".join(f"p{i}@example.net" for i in range(30)) + "\n", encoding="utf-8"
    )
    _cli("lists", "create", "clean")
    _cli("subscribers", "import", str(clean_csv), "--list", "clean")
    clean = json.loads(_cli("send", "2023-02", "--lists", "clean", "--json").output)
    assert clean["warnings"] == []
    set_settings(None)


def test_doctor_enforce_refuses_and_creates_nothing(engine, session, settings, smtp_server):  # noqa: F811
    settings = settings.replace(smtp_url=smtp_server.url, doctor_enforce=True)
    set_settings(settings)
    make_list_with(session, "members", ["a@example.net"])
    publish_source(session, SAMPLE_ISSUE)
    session.commit()
    never = _cli("send", "2023-02", "--lists", "members")
    assert never.exit_code == 1 and "dispatch doctor" in never.output  # never checked
    save_report(
        settings,
        DoctorReport("example.org", [CheckResult("dmarc", "fail", "dmarc.none", {"domain": "x"})]),
    )
    refused = _cli("send", "2023-02", "--lists", "members")
    assert refused.exit_code == 1
    assert "doctor_enforce" in refused.output and "dmarc" in refused.output
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0
    # test sends are not judged: they reach the editor, not the list
    test = _cli("send", "2023-02", "--lists", "members", "--test", "editor@example.org")
    assert test.exit_code == 0, test.output
    set_settings(None)


def test_ad_marker_is_per_list_and_off_by_default(engine, session, settings, smtp_server):  # noqa: F811
    settings = settings.replace(smtp_url=smtp_server.url)
    set_settings(settings)
    issue = publish_source(session, SAMPLE_ISSUE)
    members = make_list_with(session, "members", ["m@example.net"])
    make_list_with(session, "promo", ["p@163.com"])
    session.commit()
    changed = _cli("lists", "set", "promo", "--ad-marker", "--json")
    assert json.loads(changed.output)["ad_marker"] is True
    session.expire_all()
    promo = session.scalars(select(MailingList).where(MailingList.slug == "promo")).one()
    queue = ListQueue()
    for list_id in (members, promo.id):
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[list_id], tracking=False
        )
        session.commit()
        campaigns.start(engine, settings, campaign.id, queue)
    drain(engine, settings, queue)
    subjects = {
        address: email.message_from_bytes(
            smtp_server.received_by(address)[0].data, policy=email.policy.default
        )["Subject"]
        for address in ("m@example.net", "p@163.com")
    }
    assert not subjects["m@example.net"].startswith("(AD)")
    assert subjects["p@163.com"] == "(AD) " + subjects["m@example.net"]
    set_settings(None)
