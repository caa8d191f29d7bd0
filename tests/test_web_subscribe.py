"""The subscriber's door over HTTP (in-process app, SQLite and PostgreSQL): the form, the
confirmation page whose GET confirms nothing, the preference centre (lists, language,
channel, email change, export, delete) and WeChat binding (one-time code, snsapi_base)."""

from __future__ import annotations

import email
import email.policy
import re
import time

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery, Event
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.subscribers import binding, preferences, proof, service
from dispatch.tokens import make_prefs_token, make_unsubscribe_token
from dispatch.transactional import outbox_dir

pytest_plugins = ["test_web_support"]


@pytest.fixture
def settings(settings):
    return settings.replace(signup_pow_bits=4, signup_check_mx=False)


@pytest.fixture
def public_lists(engine):
    with Session(engine) as session, session.begin():
        news = service.create_list(session, "news", "News", optin="double")
        news.public = True
        events_list = service.create_list(session, "events", "Events", optin="double")
        events_list.public = True
        service.create_list(session, "staff", "Staff")
        return {"news": news.id, "events": events_list.id}


def _messages(settings) -> list[email.message.EmailMessage]:
    folder = outbox_dir(settings)
    return (
        [
            email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(folder.glob("*.eml"))
        ]
        if folder.exists()
        else []
    )


def _subscribe(client, settings, address: str, lists=("news",), locale="en"):
    page = client.get("/subscribe")
    challenge = re.search(r'data-challenge="([^"]+)"', page.text).group(1)
    time.sleep(1.05)  # a person takes at least a second to fill in the form
    counter = proof.solve(challenge, address, settings.signup_pow_bits)
    return client.post(
        "/subscribe",
        data={
            "email": address,
            "name": "Ada",
            "lists": list(lists),
            "locale": locale,
            "challenge": challenge,
            "pow": str(counter),
            "website": "",
        },
    )


def test_form_lists_public_lists_only_and_loads_nothing_from_outside(client, public_lists):
    page = client.get("/subscribe")
    assert page.status_code == 200
    assert "News" in page.text and "Events" in page.text and "Staff" not in page.text
    assert re.findall(r'src="([^"]+)"', page.text) == ["/subscribe/pow.js"]
    assert "<script>" not in page.text  # no inline script (CSP)
    assert client.get("/subscribe/pow.js").headers["content-type"].startswith("text/javascript")
    challenge = client.get("/subscribe/challenge").json()
    assert challenge["bits"] == 4 and challenge["challenge"]
    assert '/subscribe"' in client.get("/issues/").text  # the archive links to the form


def test_subscribe_then_get_confirms_nothing_and_the_button_does(
    client, engine, settings, public_lists
):
    answer = _subscribe(client, settings, "ada@example.org", lists=("news", "events"))
    assert answer.status_code == 200 and "ada@example.org" in answer.text
    sent = _messages(settings)
    assert len(sent) == 1 and sent[0]["To"].addresses[0].addr_spec == "ada@example.org"
    link = re.search(r"https://\S+/confirm/\S+", sent[0].get_body(("plain",)).get_content())
    path = link.group(0).split("bulletin.example.org", 1)[1]
    with Session(engine) as session:
        person = service.find_subscriber(session, email="ada@example.org")
        statuses = {s.status for s in session.scalars(select(Subscription))}
    assert statuses == {"unconfirmed"}
    for _ in range(3):  # a mail scanner fetching the link
        assert client.get(path).status_code == 200
    with Session(engine) as session:
        assert {s.status for s in session.scalars(select(Subscription))} == {"unconfirmed"}
    done = client.post(path)
    assert done.status_code == 200 and "confirmed" in done.text
    with Session(engine) as session:
        rows = session.scalars(select(Subscription).where(Subscription.subscriber_id == person.id))
        assert {(r.list_id, r.status, r.source) for r in rows} == {
            (public_lists["news"], "confirmed", "web-form"),
            (public_lists["events"], "confirmed", "web-form"),
        }
    assert client.post(path).status_code == 200  # pressing twice is harmless
    assert client.post(path[:-3] + "xyz").status_code == 404


def test_bad_input_is_answered_with_the_form_and_a_named_problem(client, public_lists, engine):
    r = client.post(
        "/subscribe",
        data={"email": "eve@example.org", "name": "Eve\r\nBcc: x@example.org", "lists": "news"},
    )
    assert r.status_code == 400 and "line breaks" in r.text or "换行" in r.text
    r = client.post("/subscribe", data={"email": "用户@example.org", "lists": "news"})
    assert r.status_code == 400 and ("non-ASCII" in r.text or "非 ASCII" in r.text)
    with Session(engine) as session:
        assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_the_cached_thanks_page_escapes_the_address_and_a_multipart_post_answers_alike(
    client, settings, public_lists
):
    """The url-encoded post (answered past the framework, page rendered once per language)
    and a multipart post (the framework's route) give the same page and one email each."""
    plain = _subscribe(client, settings, "a&b@example.org", locale="en")
    assert plain.status_code == 200 and "a&amp;b@example.org" in plain.text
    assert "a&b@example.org" not in plain.text and plain.headers["cache-control"] == "no-store"
    page = client.get("/subscribe")
    challenge = re.search(r'data-challenge="([^"]+)"', page.text).group(1)
    time.sleep(1.05)
    counter = proof.solve(challenge, "c&d@example.org", settings.signup_pow_bits)
    fields = {"email": "c&d@example.org", "lists": "news", "locale": "en", "website": ""}
    multipart = client.post(
        "/subscribe",
        data={**fields, "challenge": challenge, "pow": str(counter)},
        files={"attachment": ("x.txt", b"ignored")},  # forces multipart/form-data
    )
    assert multipart.status_code == 200
    assert multipart.text == plain.text.replace("a&amp;b@", "c&amp;d@")
    assert sorted(m["To"].addresses[0].addr_spec for m in _messages(settings)) == [
        "a&b@example.org",
        "c&d@example.org",
    ]


def test_the_mx_lookup_never_runs_on_the_event_loop(client, settings, public_lists, monkeypatch):
    """On SQLite the post's transaction runs on the event loop; a DNS server that takes two
    seconds must not stall every other request, so the lookup is made from a thread first."""
    import asyncio

    from dispatch.subscribers import maildomain

    asked = []

    def lookup(_settings, domain):
        try:
            asyncio.get_running_loop()
            asked.append((domain, "event loop"))
        except RuntimeError:
            asked.append((domain, "thread"))
        return False

    monkeypatch.setattr(maildomain, "_lookup", lookup)
    monkeypatch.setattr(maildomain, "_cache", {})  # no verdict left by another test
    client.app.state.settings = settings.replace(signup_check_mx=True)
    answer = _subscribe(client, settings, "x@no-mail.dispatch-test.cn")
    assert answer.status_code == 400 and "no-mail.dispatch-test.cn" in answer.text
    assert asked == [("no-mail.dispatch-test.cn", "thread")]


def _person(engine, settings, address="pat@example.org", locale="zh-CN"):
    with Session(engine) as session, session.begin():
        person = service.add_subscriber(session, email=address, name="Pat", locale=locale)
        for slug in ("news", "staff"):
            service.subscribe(
                session, person, service.get_list(session, slug), send_confirmation=False
            )
            session.get(
                Subscription, (person.id, service.get_list(session, slug).id)
            ).status = "confirmed"
        return person.id


def test_preferences_change_lists_and_language_and_the_next_send_honours_them(
    client, engine, settings, public_lists
):
    pid = _person(engine, settings)
    token = make_prefs_token(settings, pid)
    page = client.get(f"/p/{token}")
    assert page.status_code == 200 and "Staff" in page.text  # a private list they are on
    r = client.post(
        f"/p/{token}",
        data={
            "lists": [str(public_lists["events"])],
            "locale": "en",
            "channel": "email",
            "name": "Pat",
        },
    )
    assert r.status_code in (200, 303), r.text
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        news_campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[public_lists["news"]]
        )
        events_campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[public_lists["events"]]
        )
        ids = news_campaign.id, events_campaign.id
    with pytest.raises(campaigns.NoRecipients):  # they left news: nobody to send it to
        campaigns.start(engine, settings, ids[0], ListQueue())
    campaigns.start(engine, settings, ids[1], ListQueue())
    with Session(engine) as session:
        rows = session.execute(select(Delivery.campaign_id, Delivery.locale)).all()
        changed = session.scalar(select(Event).where(Event.kind == "prefs_changed"))
    assert rows == [(ids[1], "en")]  # left news, joined events, reads English now
    assert changed.data["source"] == "preference-centre"
    assert set(changed.data["changes"]) >= {"lists", "locale"}


def test_unsubscribe_link_opens_the_preference_centre(client, engine, settings, public_lists):
    pid = _person(engine, settings)
    token = make_unsubscribe_token(settings, pid, None)
    assert f'href="/p/{token}"' in client.get(f"/u/{token}").text
    assert client.get(f"/p/{token}").status_code == 200
    assert client.get("/p/1.2.AAAAAAAAAAAAAAAA").status_code == 404
    # the email footer's "preferences" link is the unsubscribe link with ?prefs=1
    hop = client.get(f"/u/{token}?prefs=1", follow_redirects=False)
    assert hop.status_code == 303 and hop.headers["location"] == f"/p/{token}"


def test_every_email_footer_links_preferences_and_the_form(engine, settings):
    from dispatch.content.parse import parse_issue
    from dispatch.render.email import render_email
    from dispatch.render.slots import RecipientSlots

    rendered = render_email(parse_issue(SAMPLE_ISSUE_DIR / "issue.md"), settings, tracking=False)
    unsub = "https://bulletin.example.org/u/7.-.SIGNATURESIGNATU"
    html, text_part = rendered.personalize(RecipientSlots(name="A", unsubscribe_url=unsub))
    for body in (html, text_part):
        assert f"{unsub}?prefs=1" in body
        assert "https://bulletin.example.org/subscribe" in body


def test_email_change_is_confirmed_at_the_new_address_first(client, engine, settings, public_lists):
    pid = _person(engine, settings)
    token = make_prefs_token(settings, pid)
    r = client.post(f"/p/{token}/email", data={"email": "pat.new@example.org"})
    assert r.status_code == 200
    sent = _messages(settings)
    assert [m["To"].addresses[0].addr_spec for m in sent] == ["pat.new@example.org"]
    path = re.search(r"/p/email/\S+", sent[0].get_body(("plain",)).get_content()).group(0)
    assert client.get(path).status_code == 200
    with Session(engine) as session:
        assert session.get(Subscriber, pid).email == "pat@example.org"  # GET changed nothing
    assert client.post(path).status_code == 200
    with Session(engine) as session:
        assert session.get(Subscriber, pid).email == "pat.new@example.org"
    other = _person(engine, settings, "taken@example.org")
    r = client.post(
        f"/p/{make_prefs_token(settings, other)}/email", data={"email": "pat.new@example.org"}
    )
    assert r.status_code == 400


def test_export_holds_everything_about_the_person_and_nothing_about_anyone_else(
    client, engine, settings, public_lists
):
    pid = _person(engine, settings)
    other = _person(engine, settings, "someone.else@example.org")
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[public_lists["news"]]
        )
        cid = campaign.id
    campaigns.start(engine, settings, cid, ListQueue())
    r = client.get(f"/p/{make_prefs_token(settings, pid)}/data.json")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    data = r.json()
    assert data["subscriber"]["email"] == "pat@example.org"
    assert {s["list"] for s in data["subscriptions"]} == {"news", "staff"}
    assert [d["campaign_id"] for d in data["deliveries"]] == [cid]
    assert {e["kind"] for e in data["events"]} >= {"subscribed"}
    assert "someone.else" not in r.text and f'"id": {other}' not in r.text


def test_delete_leaves_only_the_suppression(client, engine, settings, public_lists):
    pid = _person(engine, settings)
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[public_lists["news"]]
        )
        cid = campaign.id
    campaigns.start(engine, settings, cid, ListQueue())
    token = make_prefs_token(settings, pid)
    assert client.post(f"/p/{token}/delete", data={}).status_code == 400  # needs the tick
    assert client.post(f"/p/{token}/delete", data={"confirm": "yes"}).status_code == 200
    with Session(engine) as session:
        assert session.get(Subscriber, pid) is None
        assert session.scalar(select(func.count()).select_from(Subscription)) == 0
        assert session.scalar(select(func.count()).where(Event.subscriber_id == pid)) == 0
        assert [s.email for s in session.scalars(select(Suppression))] == ["pat@example.org"]
        dump = " ".join(
            str(row)
            for table in ("subscribers", "subscriptions", "deliveries", "events", "bind_codes")
            for row in session.execute(text(f"SELECT * FROM {table}"))
        )
        assert "pat@example.org" not in dump and "Pat" not in dump
    assert client.get(f"/p/{token}").status_code == 404
    # and the form cannot bring the address back
    answer = _subscribe(client, settings, "pat@example.org")
    assert answer.status_code == 200 and _messages(settings) == []


def test_one_time_code_binds_a_wechat_follower_into_the_person(
    client, engine, settings, public_lists
):
    pid = _person(engine, settings)
    with Session(engine) as session, session.begin():
        follower = service.add_subscriber(session, openid="oFOLLOWER1")
        service.subscribe(
            session, follower, service.get_list(session, "events"), send_confirmation=False
        )
        follower_id = follower.id
    client.app.state.settings = settings.replace(wechat_app_id="wxtest")  # an account exists
    token = make_prefs_token(settings, pid)
    page = client.post(f"/p/{token}/wechat-code")
    code = re.search(r'id="bind-code">(\d{6})<', page.text).group(1)
    with Session(engine) as session, session.begin():
        assert binding.bind_by_message(session, "oFOLLOWER1", "1234567890") is None  # not a code
        reply = binding.bind_by_message(session, "oFOLLOWER1", code)
    assert "绑定" in reply
    with Session(engine) as session:
        person = session.get(Subscriber, pid)
        assert person.openid == "oFOLLOWER1" and person.preferred_channel == "both"
        assert session.get(Subscriber, follower_id) is None  # merged, not two rows
        assert session.get(Subscription, (pid, public_lists["events"])) is not None
        assert (
            session.scalar(select(Event).where(Event.kind == "bound")).data["merged"] == follower_id
        )
    with Session(engine) as session, session.begin():  # a code works once
        assert binding.bind_by_message(session, "oOTHER", code) == binding.MESSAGES.get("bad_code")


def test_snsapi_base_authorisation_binds_inside_wechat(
    client, engine, settings, fake, public_lists
):
    app_settings = fake.settings_for(settings)
    client.app.state.settings = app_settings
    pid = _person(engine, settings)
    token = make_prefs_token(app_settings, pid)
    wechat_ua = {"User-Agent": "Mozilla/5.0 (iPhone) MicroMessenger/8.0.47"}
    assert 'id="wechat-oauth"' in client.get(f"/p/{token}", headers=wechat_ua).text
    go = client.get(f"/p/{token}/wechat", follow_redirects=False)
    assert go.status_code == 302
    target = go.headers["location"]
    assert target.startswith("https://open.weixin.qq.com/connect/oauth2/authorize?appid=")
    assert "scope=snsapi_base" in target and target.endswith("#wechat_redirect")
    state = re.search(r"state=([0-9a-f]+)", target).group(1)
    fake.state.oauth_codes["CODE123"] = "oINWECHAT"
    back = client.get(f"/p/wechat/callback?code=CODE123&state={state}", follow_redirects=False)
    assert back.status_code == 303 and "done=bound" in back.headers["location"]
    with Session(engine) as session:
        assert session.get(Subscriber, pid).openid == "oINWECHAT"
    replay = client.get(f"/p/wechat/callback?code=CODE123&state={state}", follow_redirects=False)
    assert replay.status_code == 400  # state and code are both single-use
    with Session(engine) as session:
        assert (
            preferences.export_data(session, session.get(Subscriber, pid))["subscriber"]["openid"]
            == "oINWECHAT"
        )
