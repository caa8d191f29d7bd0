"""Unsubscribe (RFC 8058 one-click and the page) and double opt-in confirmation: no login, no
cookie; GET changes nothing; every path idempotent and recorded."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.subscribers import service
from dispatch.tokens import make_confirmation_token, make_unsubscribe_token
from test_web_support import seed

pytest_plugins = ["test_web_support"]


def _subscription_status(engine, subscriber_id: int, list_id: int) -> str:
    with Session(engine) as session:
        return session.get(Subscription, (subscriber_id, list_id)).status


def _unsub_events(engine) -> list[Event]:
    with Session(engine) as session:
        return list(session.scalars(select(Event).where(Event.kind == "unsubscribed")))


def test_one_click_post_unsubscribes_without_page_or_cookie(client, engine, settings):
    s = seed(engine, settings)
    sub = s.subscriber_ids[0]
    token = make_unsubscribe_token(settings, sub, s.list_id)
    client.cookies.clear()
    r = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    assert r.text == ""
    assert "set-cookie" not in r.headers
    assert _subscription_status(engine, sub, s.list_id) == "unsubscribed"
    again = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200
    events = _unsub_events(engine)
    assert len(events) == 1 and events[0].subscriber_id == sub and events[0].list_id == s.list_id
    # the others are untouched
    assert _subscription_status(engine, s.subscriber_ids[1], s.list_id) == "confirmed"


def test_get_shows_a_page_in_the_subscribers_language_and_changes_nothing(client, engine, settings):
    s = seed(engine, settings)
    zh_sub, en_sub = s.subscriber_ids[0], s.subscriber_ids[1]  # seed: even ids zh-CN, odd en
    zh = client.get(f"/u/{make_unsubscribe_token(settings, zh_sub, s.list_id)}")
    en = client.get(f"/u/{make_unsubscribe_token(settings, en_sub, s.list_id)}")
    assert zh.status_code == 200 and "确认退订" in zh.text and 'lang="zh-CN"' in zh.text
    assert en.status_code == 200 and "Confirm" in en.text and 'lang="en"' in en.text
    assert 'value="all"' in en.text and 'value="one"' in en.text  # the choice: this list or all
    assert "csrf" not in en.text.lower() and "set-cookie" not in en.headers
    for sid in (zh_sub, en_sub):
        assert _subscription_status(engine, sid, s.list_id) == "confirmed"
    assert _unsub_events(engine) == []


def test_page_form_can_leave_all_lists(client, engine, settings):
    s = seed(engine, settings)
    sub = s.subscriber_ids[1]
    with Session(engine, expire_on_commit=False) as session, session.begin():
        other = service.create_list(session, "others", "Others")
        service.subscribe(session, session.get(Subscriber, sub), other)
        other_id = other.id
    token = make_unsubscribe_token(settings, sub, s.list_id)
    r = client.post(f"/u/{token}", data={"scope": "all"})
    assert r.status_code == 200 and "unsubscribed" in r.text.lower()
    assert _subscription_status(engine, sub, s.list_id) == "unsubscribed"
    assert _subscription_status(engine, sub, other_id) == "unsubscribed"
    with Session(engine) as session:
        assert session.get(Subscriber, sub).status == "unsubscribed"
    r2 = client.post(f"/u/{token}", data={"scope": "all"})
    assert r2.status_code == 200
    assert len(_unsub_events(engine)) == 1


def test_page_form_leaving_one_list_keeps_the_others(client, engine, settings):
    s = seed(engine, settings)
    sub = s.subscriber_ids[0]
    with Session(engine, expire_on_commit=False) as session, session.begin():
        other = service.create_list(session, "others", "Others")
        service.subscribe(session, session.get(Subscriber, sub), other)
        other_id = other.id
    r = client.post(f"/u/{make_unsubscribe_token(settings, sub, s.list_id)}", data={"scope": "one"})
    assert r.status_code == 200 and "已退订" in r.text
    assert _subscription_status(engine, sub, s.list_id) == "unsubscribed"
    assert _subscription_status(engine, sub, other_id) == "confirmed"


def test_forged_unsubscribe_token_changes_nothing(client, engine, settings):
    s = seed(engine, settings)
    token = make_unsubscribe_token(settings, s.subscriber_ids[0], s.list_id)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/u/{forged}").status_code == 404
    assert client.post(f"/u/{forged}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    other_id = make_unsubscribe_token(settings, s.subscriber_ids[1], s.list_id).split(".")[-1]
    tampered = f"{s.subscriber_ids[0]}.{s.list_id}.{other_id}"
    assert client.post(f"/u/{tampered}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert _unsub_events(engine) == []


def test_confirmation_link_opens_a_page_whose_button_confirms(client, engine, settings):
    s = seed(engine, settings)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        double = service.create_list(session, "double", "Double", optin="double")
        subscriber = service.add_subscriber(session, email="new@example.org", locale="en")
        service.subscribe(session, subscriber, double, send_confirmation=False)
        sub_id, list_id = subscriber.id, double.id
    assert _subscription_status(engine, sub_id, list_id) == "unconfirmed"
    token = make_confirmation_token(settings, sub_id, list_id)
    r = client.get(f"/confirm/{token}")  # what a mail scanner does: nothing changes
    assert r.status_code == 200 and 'id="confirm-button"' in r.text
    assert _subscription_status(engine, sub_id, list_id) == "unconfirmed"
    r = client.post(f"/confirm/{token}")
    assert r.status_code == 200 and "confirmed" in r.text
    assert _subscription_status(engine, sub_id, list_id) == "confirmed"
    assert client.post(f"/confirm/{token}").status_code == 200  # idempotent
    assert client.get(f"/confirm/{token[:-3]}xyz").status_code == 404
    assert client.post(f"/confirm/{token[:-3]}xyz").status_code == 404
    assert s.list_id != list_id
