"""Admin pages a new user trips over (issue 9): 404 keeps the navigation, test sends with a bad
address, the import report and list choice, the no-worker warning."""

from __future__ import annotations

from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]


def test_admin_404_keeps_the_admin_navigation(client, engine, settings):
    make_user(engine, "admin")
    login(client, "admin@example.org")
    page = client.get("/admin/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404
    assert 'href="/admin/campaigns"' in page.text and 'href="/admin/lists"' in page.text
    assert "admin@example.org" in page.text  # signed in, with the logout button
    client.cookies.clear()
    anonymous = client.get("/admin/no-such-page", headers={"accept": "text/html"})
    assert anonymous.status_code == 404 and 'href="/admin/campaigns"' not in anonymous.text


def test_web_import_needs_an_explicit_list_and_reports_additions(client, engine, settings):
    from sqlalchemy.orm import Session

    from dispatch.subscribers import service

    make_user(engine, "admin")
    csrf = login(client, "admin@example.org")
    with Session(engine) as session, session.begin():
        first = service.create_list(session, "aaa", "AAA first alphabetically")
        second = service.create_list(session, "zzz", "ZZZ")
        first_id, second_id = first.id, second.id
    page = client.get("/admin/subscribers")
    form = page.text.split('id="import-form"')[1]
    assert '<option value="" disabled selected>' in form  # nothing chosen for the editor
    csv_text = b"email,name\nann@example.org,Ann\nbob@example.org,Bob\n"

    def upload(list_id: str):
        return client.post(
            "/admin/subscribers/import",
            data={"csrf_token": csrf, "list_id": list_id},
            files={"file": ("people.csv", csv_text, "text/csv")},
        )

    refused = upload("")
    assert refused.status_code == 422 and "choose the list" in refused.text.lower() + " "
    with Session(engine) as session:
        assert service.count_recipients(session, [first_id], "email") == 0
    assert upload(str(first_id)).status_code == 200
    again = upload(str(second_id))
    assert again.status_code == 200
    assert "added to the list 2, details updated 0" in again.text


def test_a_test_send_with_one_bad_address_goes_to_the_good_one(client, engine, settings):
    """Issue 9: "tester@example.org, bad-address" rejected the whole test and landed on the
    issues list; now the good address gets it, the bad one is named, on the preview."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from dispatch.content.store import publish_source
    from dispatch.models import Campaign, Delivery
    from dispatch.paths import SAMPLE_ISSUE_DIR

    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    with Session(engine) as session, session.begin():
        issue_id = publish_source(session, SAMPLE_ISSUE_DIR).id
    answer = client.post(
        f"/admin/issues/{issue_id}/test",
        data={"csrf_token": csrf, "emails": "tester@example.org, bad-address"},
    )
    assert answer.status_code == 200
    assert answer.url.path == f"/admin/issues/{issue_id}"
    assert "tester@example.org" in answer.text and "bad-address" in answer.text
    with Session(engine) as session:
        campaign = session.scalars(select(Campaign)).one()
        emails = session.scalars(
            select(Delivery.email).where(Delivery.campaign_id == campaign.id)
        ).all()
    assert campaign.is_test and emails == ["tester@example.org"]

    refused = client.post(
        f"/admin/issues/{issue_id}/test", data={"csrf_token": csrf, "emails": "bad-address"}
    )
    assert refused.status_code == 422 and "bad-address" in refused.text
    assert 'id="preview-phone"' in refused.text  # still on the preview, not the issues list


def test_finished_campaign_page_sends_to_those_not_yet_reached(client, engine, settings):
    from sqlalchemy import select, update
    from sqlalchemy.orm import Session

    from dispatch.delivery import campaigns
    from dispatch.delivery.queue import ListQueue
    from dispatch.models import Delivery
    from test_delivery_support import make_issue, make_list_with

    make_user(engine, "editor")
    csrf = login(client, "editor@example.org")
    with Session(engine, expire_on_commit=False) as session:
        issue = make_issue(session)
        members = make_list_with(session, "members", ["a@example.org"])
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[members]
        )
        session.commit()
        campaigns.start(engine, settings, campaign.id, ListQueue())
        session.execute(update(Delivery).values(status="sent"))
        campaigns.finish_if_done(session, campaign.id)
        make_list_with(session, "members", ["new@example.org"])
        session.commit()
    page = client.get(f"/admin/campaigns/{campaign.id}")
    assert 'id="include-new-button"' in page.text
    done = client.post(f"/admin/campaigns/{campaign.id}/include-new", data={"csrf_token": csrf})
    assert done.status_code == 200, done.text
    with Session(engine) as session:
        rows = session.execute(select(Delivery.email, Delivery.status).order_by(Delivery.id)).all()
    assert [tuple(r) for r in rows] == [("a@example.org", "sent"), ("new@example.org", "pending")]
