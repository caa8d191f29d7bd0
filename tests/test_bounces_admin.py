"""Suppression management (API and admin page), the bounce behind an entry, and "retry failed"
for a finished campaign, which sends each failed recipient once more and nobody else."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from bounce_helpers import postfix_dsn, sent_campaign
from dispatch.bounces.record import process_message
from dispatch.channels.base import SendResult
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery, Event
from dispatch.models.subscriber import Suppression
from dispatch.subscribers import service
from dispatch.web.app import create_app
from test_delivery_support import channel_factory, make_issue, make_list_with
from test_web_support import bearer, login, make_user

ADDRESSES = ["alice@example.net", "bob@example.net", "carol@example.net"]


@pytest.fixture
def webapp(settings, engine):
    app = create_app(settings.replace(bounce_address="bounces@bounce.example.org"))
    app.state.batch_queue = ListQueue()
    return app


@pytest.fixture
def http(webapp):
    with TestClient(webapp, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def admin(engine):
    return bearer(make_user(engine, "admin"))


def test_suppression_api_search_raw_bounce_remove_with_note(http, admin, session, settings):
    sent_campaign(session, ADDRESSES)
    process_message(session, settings, postfix_dsn("bob@example.net"), source="imap")
    session.commit()
    http.post(
        "/api/suppressions",
        json={"email": "carol@example.net", "note": "asked by phone"},
        headers=admin,
    )
    found = http.get("/api/suppressions", params={"q": "bob"}, headers=admin).json()
    assert found["total"] == 1
    bob = found["items"][0]
    assert (bob["reason"], bob["source"], bob["bounce"]["status"]) == (
        "bounced",
        "bounce:imap",
        "5.1.1",
    )
    raw = http.get(f"/api/bounces/{bob['bounce_id']}", headers=admin).json()
    assert "Final-Recipient: rfc822; bob@example.net" in raw["raw"] and raw["kind"] == "hard"
    manual = http.get("/api/suppressions", params={"reason": "manual"}, headers=admin).json()
    assert [i["email"] for i in manual["items"]] == ["carol@example.net"]
    assert manual["items"][0]["note"] == "asked by phone"

    no_note = http.post(f"/api/suppressions/{bob['id']}/remove", json={"note": ""}, headers=admin)
    assert no_note.status_code == 422
    assert http.get("/api/suppressions", params={"q": "bob"}, headers=admin).json()["total"] == 1
    done = http.post(
        f"/api/suppressions/{bob['id']}/remove", json={"note": "mailbox restored"}, headers=admin
    )
    assert done.status_code == 200
    session.expire_all()
    assert not service.is_suppressed(session, email="bob@example.net")
    event = session.scalars(select(Event).where(Event.kind == "unsuppressed")).one()
    assert event.data["note"] == "mailbox restored" and event.data["email"] == "bob@example.net"
    assert (
        http.post("/api/suppressions/99999/remove", json={"note": "x"}, headers=admin).status_code
        == 404
    )


def test_suppression_csv_import_reports_bad_lines_and_export_round_trips(http, admin, session):
    body = (
        "email,reason,note\n"
        "ok1@example.net,,\n"
        "not-an-address,,\n"
        "ok2@example.net,complained,fbl\n"
        "ok3@example.net,bogus,\n"
    )
    report = http.post(
        "/api/suppressions/import",
        content=body.encode(),
        headers={**admin, "Content-Type": "text/csv"},
    ).json()
    assert report["added"] == 2 and report["already"] == 0
    assert [(p["line"], p["email"]) for p in report["problems"]] == [
        (3, "not-an-address"),
        (5, "ok3@example.net"),
    ]
    again = http.post("/api/suppressions/import", content=body.encode(), headers=admin).json()
    assert again["added"] == 0 and again["already"] == 2
    no_column = http.post(
        "/api/suppressions/import", content=b"address\nx@example.net\n", headers=admin
    )
    assert no_column.status_code == 422 and "email" in no_column.json()["detail"]
    exported = http.get("/api/suppressions/export", headers=admin)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert {(r["email"], r["reason"], r["note"]) for r in rows} == {
        ("ok1@example.net", "manual", ""),
        ("ok2@example.net", "complained", "fbl"),
    }


def test_suppressions_admin_page_lists_and_removes(http, engine, session, settings):
    sent_campaign(session, ADDRESSES)
    process_message(session, settings, postfix_dsn("alice@example.net"), source="smtp")
    session.commit()
    make_user(engine, "admin")
    csrf = login(http, "admin@example.org")
    page = http.get("/admin/suppressions")
    assert page.status_code == 200 and "alice@example.net" in page.text
    assert "/admin/bounces/" in page.text
    suppression_id = session.scalars(select(Suppression.id)).one()
    bounce = http.get(
        page.text.split('href="/admin/bounces/')[1].split('"')[0].join(["/admin/bounces/", ""])
    )
    assert bounce.status_code == 200 and "Final-Recipient" in bounce.text
    refused = http.post(
        f"/admin/suppressions/{suppression_id}/remove", data={"csrf_token": csrf, "note": ""}
    )
    assert refused.status_code == 422
    ok = http.post(
        f"/admin/suppressions/{suppression_id}/remove",
        data={"csrf_token": csrf, "note": "restored"},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(Suppression)) == 0


def test_campaign_show_and_page_carry_bounce_counts_and_reasons(http, admin, session, settings):
    sent = sent_campaign(session, ADDRESSES)
    process_message(session, settings, postfix_dsn("alice@example.net"), source="imap")
    session.commit()
    progress = http.get(f"/api/campaigns/{sent.campaign_id}/progress", headers=admin).json()
    assert progress["after_send"]["counts"] == {"hard": 1, "soft": 0, "complaint": 0}
    assert progress["after_send"]["rates"]["hard"] == round(1 / 3, 4)


def _failing_setup(engine, settings, session):
    issue = make_issue(session)
    emails = [f"r{i}@example.org" for i in range(6)]
    list_id = make_list_with(session, "readers", emails)
    session.commit()
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id]
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    failing = {"r1@example.org", "r3@example.org", "r4@example.org"}

    def script(recipient, seen):
        if recipient.email in failing and seen == 0:
            return SendResult(recipient.delivery_id, "failed", 554, "5.6.0 content refused")
        return SendResult(
            recipient.delivery_id, "sent", 250, "ok", message_id=f"<{recipient.delivery_id}@t>"
        )

    return campaign.id, queue, script, failing


def test_retry_failed_sends_each_failed_recipient_once_and_no_one_else(
    http, admin, webapp, engine, session, settings
):
    campaign_id, queue, script, failing = _failing_setup(engine, settings, session)
    first: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(first, script))
    assert campaigns.counts(session, campaign_id)["failed"] == 3
    assert session.get(campaigns.Campaign, campaign_id).status == "finished"
    # suppressed since then, written in another case: still the same mailbox (canonical key)
    service.suppress(session, email="R4@Example.ORG", reason="manual", source="test")
    session.commit()

    answer = http.post(f"/api/campaigns/{campaign_id}/retry-failed", headers=admin)
    assert answer.status_code == 200, answer.text
    assert (answer.json()["retried"], answer.json()["skipped"]) == (2, 1)
    before = len(first)  # one log for both runs: the script fails an address only the first time
    drain(
        engine, settings, webapp.state.batch_queue, channel_factory=channel_factory(first, script)
    )
    second = first[before:]
    assert sorted(r.email for r in second) == ["r1@example.org", "r3@example.org"]
    session.expire_all()
    counts = campaigns.counts(session, campaign_id)
    assert (counts["sent"], counts["failed"], counts["skipped"]) == (5, 0, 1)
    assert session.get(campaigns.Campaign, campaign_id).status == "finished"
    # a second retry finds nothing to do; a running campaign cannot be retried
    again = http.post(f"/api/campaigns/{campaign_id}/retry-failed", headers=admin).json()
    assert again["retried"] == 0
    delivered = session.scalars(select(Delivery.email).where(Delivery.status == "sent")).all()
    assert sorted(delivered) == sorted(
        f"r{i}@example.org" for i in range(6) if f"r{i}@example.org" != "r4@example.org"
    )


def test_retry_failed_refuses_an_unfinished_campaign(http, admin, engine, session, settings):
    campaign_id, queue, _, _ = _failing_setup(engine, settings, session)
    answer = http.post(f"/api/campaigns/{campaign_id}/retry-failed", headers=admin)
    assert answer.status_code == 409 and "finished" in answer.json()["detail"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_bounce_pages_read_on_a_375px_phone(http, engine, session, settings, artifacts_dir):
    """The suppression list, a raw bounce and the campaign page (long diagnostics, long
    addresses) in headless Chromium at 375 px: no sideways scrolling."""
    from playwright.sync_api import sync_playwright

    from test_web_browser import CHROMIUM, CHROMIUM_ARGS

    long_address = (
        "a.very.long.local.part.of.an.address.for.wrapping@subdomain.example-university.edu.cn"
    )
    sent = sent_campaign(session, ADDRESSES + [long_address])
    process_message(session, settings, postfix_dsn(long_address), source="imap")
    process_message(session, settings, postfix_dsn("bob@example.net"), source="smtp")
    session.commit()
    make_user(engine, "admin")
    login(http, "admin@example.org")
    bounce_id = session.scalars(select(Suppression.bounce_id)).first()
    pages = {
        "suppressions": http.get("/admin/suppressions").text,
        "bounce": http.get(f"/admin/bounces/{bounce_id}").text,
        "campaign": http.get(f"/admin/campaigns/{sent.campaign_id}").text,
    }
    widths = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 800})
            for name, html in pages.items():
                page.set_content(html, wait_until="load")
                widths[name] = page.evaluate("document.scrollingElement.scrollWidth")
                page.screenshot(path=str(artifacts_dir / f"bounces-{name}-375.png"), full_page=True)
        finally:
            browser.close()
    assert all(w <= 375 for w in widths.values()), widths
