"""Issue 13, item 6: the admin's subscriber page (addresses, lists with consent source and
time, every event, deliveries; edit, unsubscribe, delete, export), the status filter and bulk
actions with a count and one more confirmation; public lists and their embeddable form."""

from __future__ import annotations

import json
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import AuditEntry, Event
from dispatch.models.subscriber import MailingList, Subscriber, Subscription, Suppression
from dispatch.subscribers import service
from test_web_support import login, make_user, seed

pytest_plugins = ["test_web_support"]


def _admin(client, engine) -> str:
    make_user(engine, "admin", "boss@example.org")
    return login(client, "boss@example.org")


def test_subscriber_page_shows_consent_events_and_deliveries(client, engine, settings):
    s = seed(engine, settings, n_subscribers=2)
    csrf = _admin(client, engine)
    sid = s.subscriber_ids[0]
    page = client.get(f"/admin/subscribers/{sid}")
    assert page.status_code == 200
    assert "reader0@example.org" in page.text
    lists_table = page.text.split('id="subscriber-lists"')[1].split("</table>")[0]
    assert "Members" in lists_table and "confirmed" in lists_table
    deliveries = page.text.split('id="subscriber-deliveries"')[1].split("</table>")[0]
    assert f"#{s.campaign_id}" in deliveries and "email" in deliveries
    events_table = page.text.split('id="subscriber-events"')[1].split("</table>")[0]
    assert "subscribed" in events_table
    # edit: name, language, preferred channel; recorded with the administrator as source
    r = client.post(
        f"/admin/subscribers/{sid}/edit",
        data={
            "csrf_token": csrf,
            "name": "Zhang",
            "email": "reader0@example.org",
            "locale": "en",
            "channel": "both",
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as session:
        person = session.get(Subscriber, sid)
        assert (person.name, person.locale, person.preferred_channel) == ("Zhang", "en", "both")
        change = session.scalar(select(Event).where(Event.kind == "prefs_changed"))
        assert change.data["source"] == "admin:boss@example.org"
    bad = client.post(
        f"/admin/subscribers/{sid}/edit",
        data={"csrf_token": csrf, "name": "x", "email": "reader1@example.org"},
    )
    assert bad.status_code == 422 and "reader1@example.org" in bad.text  # taken: named
    export = client.get(f"/admin/subscribers/{sid}/data.json")
    assert export.json()["subscriber"]["name"] == "Zhang"
    assert "reader1" not in export.text
    assert client.get("/admin/subscribers/999999").status_code == 404


def test_delete_from_the_admin_keeps_only_the_suppression(client, engine, settings):
    s = seed(engine, settings, n_subscribers=1)
    csrf = _admin(client, engine)
    sid = s.subscriber_ids[0]
    assert (
        client.post(f"/admin/subscribers/{sid}/delete", data={"csrf_token": csrf}).status_code
        == 422
    )
    r = client.post(
        f"/admin/subscribers/{sid}/delete",
        data={"csrf_token": csrf, "confirm": "yes"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    with Session(engine) as session:
        assert session.get(Subscriber, sid) is None
        assert [x.email for x in session.scalars(select(Suppression))] == ["reader0@example.org"]


def test_deleting_a_person_erases_their_address_from_earlier_audit_rows(client, engine, settings):
    """The staff's edit stays in the log (who, what, when), the person's address and name do
    not: only the suppression keeps the address."""
    s = seed(engine, settings, n_subscribers=2)
    csrf = _admin(client, engine)
    sid, other = s.subscriber_ids
    for person in (sid, other):
        edited = client.post(
            f"/admin/subscribers/{person}/edit",
            data={
                "csrf_token": csrf,
                "name": f"Name {person}",
                "email": f"new{person}@example.org",
            },
        )
        assert edited.status_code < 400
    client.post(f"/admin/subscribers/{sid}/delete", data={"csrf_token": csrf, "confirm": "yes"})
    with Session(engine) as session:
        rows = {
            (r.action, r.target_id): json.dumps([r.before, r.after])
            for r in session.scalars(select(AuditEntry))
        }
    assert ("change_subscriber", str(sid)) in rows and ("delete_subscriber", str(sid)) in rows
    text = "".join(rows.values())
    assert f"new{sid}@" not in text and "reader0@" not in text and f"Name {sid}" not in text
    assert f"new{other}@example.org" in text  # someone else's row is untouched


def test_status_filter_and_bulk_actions_ask_with_the_count_first(client, engine, settings):
    s = seed(engine, settings, n_subscribers=4)
    csrf = _admin(client, engine)
    with Session(engine) as session, session.begin():
        service.create_list(session, "vip", "VIP")
        service.unsubscribe(session, s.subscriber_ids[3], None)
    with Session(engine) as session:
        vip = session.scalar(select(MailingList.id).where(MailingList.slug == "vip"))
    page = client.get("/admin/subscribers?status=unsubscribed")
    listed = re.findall(r'name="ids" value="(\d+)"', page.text)
    assert listed == [str(s.subscriber_ids[3])]
    chosen = [str(i) for i in s.subscriber_ids[:2]]
    ask = client.post(
        "/admin/subscribers/bulk",
        data={"csrf_token": csrf, "action": "add_to_list", "list_id": str(vip), "ids": chosen},
    )
    assert ask.status_code == 200 and "2" in ask.text and "VIP" in ask.text
    with Session(engine) as session:  # nothing happened yet
        assert session.scalar(select(Subscription).where(Subscription.list_id == vip)) is None
    done = client.post(
        "/admin/subscribers/bulk",
        data={
            "csrf_token": csrf,
            "action": "add_to_list",
            "list_id": str(vip),
            "ids": chosen,
            "confirm": "yes",
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    with Session(engine) as session:
        rows = session.scalars(select(Subscription).where(Subscription.list_id == vip)).all()
        assert sorted(r.subscriber_id for r in rows) == sorted(s.subscriber_ids[:2])
        assert {r.source for r in rows} == {"admin-bulk:boss@example.org"}
    client.post(
        "/admin/subscribers/bulk",
        data={"csrf_token": csrf, "action": "unsubscribe", "ids": chosen, "confirm": "yes"},
    )
    with Session(engine) as session:
        assert {session.get(Subscriber, int(i)).status for i in chosen} == {"unsubscribed"}
    refused = client.post(
        "/admin/subscribers/bulk",
        data={"csrf_token": csrf, "action": "add_to_list", "ids": chosen, "confirm": "yes"},
    )
    assert refused.status_code == 422  # no list chosen
    assert (
        client.post(
            "/admin/subscribers/bulk", data={"action": "delete", "ids": chosen, "confirm": "yes"}
        ).status_code
        == 403
    )  # no CSRF token


def test_public_lists_and_the_embeddable_form(client, engine, settings):
    _admin_csrf = _admin(client, engine)
    r = client.post(
        "/admin/lists",
        data={"csrf_token": _admin_csrf, "slug": "bulletin", "name": "Bulletin", "public": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = client.get("/admin/lists")
    snippet = page.text.split('id="embed-bulletin"')[1].split("</details>")[0]
    assert "https://bulletin.example.org/subscribe" in snippet and "pow.js" in snippet
    assert "bulletin" in snippet and "google" not in snippet.lower()
    assert "Bulletin" in client.get("/subscribe").text
    with Session(engine) as session:
        list_id = session.scalar(select(MailingList.id).where(MailingList.slug == "bulletin"))
    client.post(f"/admin/lists/{list_id}/public", data={"csrf_token": _admin_csrf, "public": "0"})
    assert "Bulletin" not in client.get("/subscribe").text


def test_campaign_page_counts_people_for_a_send_on_both_channels(client, engine, settings):
    from dispatch.delivery import campaigns
    from dispatch.delivery.queue import ListQueue
    from dispatch.models import Delivery

    s = seed(engine, settings, n_subscribers=2)  # an email campaign already ran fan-out
    _admin(client, engine)
    with Session(engine) as session, session.begin():
        person = session.get(Subscriber, s.subscriber_ids[0])
        person.openid, person.preferred_channel = "oBOTH", "both"
        both = service.create_list(session, "both-channels", "Both")
        for sid in s.subscriber_ids:
            sub = session.get(Subscriber, sid)
            service.subscribe(session, sub, both, send_confirmation=False)
        ids = []
        for channel in ("email", "wechat"):
            c, _ = campaigns.create_or_get(
                session,
                issue_id=s.issue_id,
                channel=channel,
                list_ids=[both.id],
                options={"channels": ["email", "wechat"]},
            )
            ids.append(c.id)
    for cid in ids:
        campaigns.start(engine, settings, cid, ListQueue())
    with Session(engine) as session, session.begin():  # as if the workers had sent them
        for d in session.scalars(select(Delivery).where(Delivery.campaign_id.in_(ids))):
            d.status = "sent"
    page = client.get(f"/admin/campaigns/{ids[1]}")
    reach = page.text.split('id="reach">')[1].split("</p>")[0]
    assert "2 people" in reach and "3 messages" in reach, reach
