"""Service rules: lists, subscribers, opt-in, unsubscribe, suppression and the recipients query."""

from __future__ import annotations

import email
from datetime import datetime

import pytest
from sqlalchemy import JSON, Column, Integer, MetaData, String, Table, func, insert, literal, select

from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.subscribers import service
from dispatch.subscribers.optin import confirm_subscription
from dispatch.tokens import TokenError, make_confirmation_token


def _ids(session, list_ids, channel="email"):
    return [row.id for row in session.execute(service.recipients_select(list_ids, channel))]


def _outbox(settings):
    folder = settings.data_dir / "outbox"
    return sorted(folder.glob("*.eml")) if folder.exists() else []


def test_lists_crud(session):
    service.create_list(session, "news", "News", description="月报", optin="double")
    with pytest.raises(service.SubscriberError, match="already exists"):
        service.create_list(session, "news", "Again")
    with pytest.raises(service.SubscriberError, match="invalid list slug"):
        service.create_list(session, "Bad Slug", "x")
    with pytest.raises(service.SubscriberError, match="single or double"):
        service.create_list(session, "x", "x", optin="triple")
    updated = service.update_list(session, "news", name="Newsletter", optin="single")
    assert (updated.name, updated.optin, updated.description) == ("Newsletter", "single", "月报")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, updated)
    service.delete_list(session, "news")
    session.commit()
    assert service.all_lists(session) == []
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0
    assert session.get(Subscriber, person.id) is not None
    with pytest.raises(service.SubscriberError, match="no list 'news'"):
        service.get_list(session, "news")


def test_email_is_normalised_and_unique(session):
    person = service.add_subscriber(
        session, email="  Li.Lei@Example.ORG ", name=" 李雷 ", locale="zh_cn"
    )
    assert (person.email, person.name, person.locale) == ("Li.Lei@example.org", "李雷", "zh-CN")
    with pytest.raises(service.SubscriberError, match="already belongs"):
        service.add_subscriber(session, email="Li.Lei@EXAMPLE.org")
    with pytest.raises(service.SubscriberError, match="invalid email"):
        service.add_subscriber(session, email="li..lei@example.org")
    with pytest.raises(service.SubscriberError, match="unknown locale"):
        service.add_subscriber(session, email="x@example.org", locale="fr")
    with pytest.raises(service.SubscriberError, match="email or a WeChat openid"):
        service.add_subscriber(session, name="nobody")
    follower = service.add_subscriber(session, openid="oABC123")
    with pytest.raises(service.SubscriberError, match="openid oABC123 already belongs"):
        service.add_subscriber(session, openid="oABC123", email="y@example.org")
    assert follower.email is None
    # stored as given, found in any case (identity is the canonical form)
    assert service.get_subscriber(session, "li.lei@example.org").id == person.id
    assert service.get_subscriber(session, "Li.Lei@example.org").id == person.id
    assert service.get_subscriber(session, str(person.id)).id == person.id
    assert service.get_subscriber(session, "oABC123").id == follower.id
    with pytest.raises(
        service.SubscriberError, match="no subscriber"
    ):  # beyond INTEGER: names nobody
        service.get_subscriber(session, "36893488147419103232")
    assert service.find_subscriber(session, id=2**40) is None


def test_update_merges_attributes_and_remove_deletes(session):
    person = service.add_subscriber(
        session, email="a@example.org", attributes={"org": "CNIS", "city": "北京"}
    )
    service.update_subscriber(
        session, person, name="王芳", locale="en", attributes={"city": None, "role": "editor"}
    )
    assert person.attributes == {"org": "CNIS", "role": "editor"}
    assert (person.name, person.locale) == ("王芳", "en")
    news = service.create_list(session, "news", "News")
    service.subscribe(session, person, news)
    service.remove_subscriber(session, person)
    session.commit()
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0
    assert session.scalar(select(func.count()).select_from(Subscription)) == 0


def test_single_opt_in_confirms_at_once(session, settings):
    news = service.create_list(session, "news", "News")
    person = service.add_subscriber(session, email="a@example.org")
    sub = service.subscribe(session, person, news, settings=settings)
    assert sub.status == "confirmed" and sub.confirmed_at is not None
    assert person.confirmed_at is not None
    assert _outbox(settings) == []
    assert service.subscribe(session, person, news, settings=settings) is sub  # twice: no change


@pytest.mark.parametrize(
    "locale, subject_word", [("zh-CN", "确认订阅"), ("en", "confirm your subscription")]
)
def test_double_opt_in_sends_confirmation_in_locale(session, settings, locale, subject_word):
    news = service.create_list(session, "news", "工作简报", optin="double")
    person = service.add_subscriber(session, email="a@example.org", name="张三", locale=locale)
    sub = service.subscribe(session, person, news, settings=settings)
    session.commit()
    assert sub.status == "unconfirmed"
    assert _ids(session, [news.id]) == []
    [eml] = _outbox(settings)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert subject_word in message["Subject"]
    assert message["To"].addresses[0].addr_spec == "a@example.org"
    text = message.get_body(("plain",)).get_content()
    link = next(line for line in text.splitlines() if "/confirm/" in line)
    assert link.startswith("https://bulletin.example.org/confirm/")
    token = link.rsplit("/", 1)[1]

    assert confirm_subscription(session, token, settings) == (person.id, news.id, True)
    session.commit()
    assert confirm_subscription(session, token, settings) == (person.id, news.id, False)
    assert session.get(Subscription, (person.id, news.id)).status == "confirmed"
    assert _ids(session, [news.id]) == [person.id]
    assert (
        session.scalar(select(func.count()).select_from(Event).where(Event.kind == "confirmed"))
        == 1
    )


def test_double_opt_in_wechat_follower_is_confirmed_at_once(session, settings):
    news = service.create_list(session, "news", "News", optin="double")
    follower = service.add_subscriber(session, openid="oFOLLOWER")
    assert service.subscribe(session, follower, news, settings=settings).status == "confirmed"
    assert _outbox(settings) == []
    assert _ids(session, [news.id], "wechat") == [follower.id]


def test_bad_confirmation_tokens_change_nothing(session, settings):
    news = service.create_list(session, "news", "News", optin="double")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, news, settings=settings)
    session.commit()
    expired = make_confirmation_token(settings, person.id, news.id, ttl_seconds=-1)
    foreign = make_confirmation_token(settings.replace(secret_key="other"), person.id, news.id)
    other_list = make_confirmation_token(settings, person.id, news.id + 99)
    for token in (expired, foreign, other_list, "1.2.3.forged"):
        with pytest.raises(TokenError):
            confirm_subscription(session, token, settings)
        session.rollback()
    assert session.get(Subscription, (person.id, news.id)).status == "unconfirmed"


def test_unsubscribe_one_list_or_all_is_idempotent(session):
    news = service.create_list(session, "news", "News")
    other = service.create_list(session, "other", "Other")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, news)
    service.subscribe(session, person, other)
    assert service.unsubscribe(session, person.id, news.id) is True
    assert service.unsubscribe(session, person.id, news.id) is False
    assert _ids(session, [news.id]) == []
    assert _ids(session, [other.id]) == [person.id]
    assert service.unsubscribe(session, person.id, None) is True
    assert service.unsubscribe(session, person.id, None) is False
    session.commit()
    assert person.status == "unsubscribed"
    assert _ids(session, [other.id]) == []
    kinds = session.scalars(
        select(Event.list_id).where(Event.kind == "unsubscribed").order_by(Event.id)
    ).all()
    assert kinds == [news.id, None]
    # coming back needs an explicit resubscribe
    with pytest.raises(service.SubscriberError, match="--resubscribe"):
        service.subscribe(session, person, other)
    service.subscribe(session, person, other, resubscribe=True)
    assert person.status == "active"
    assert _ids(session, [other.id]) == [person.id]


def test_suppression_marks_status_and_blocks(session):
    news = service.create_list(session, "news", "News")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, news)
    first = service.suppress(session, email=" a@EXAMPLE.ORG", reason="bounced", source="smtp")
    again = service.suppress(session, email="a@example.org", reason="complained", source="smtp")
    session.commit()
    assert first.id == again.id and again.reason == "bounced"
    assert person.status == "bounced"
    assert service.is_suppressed(session, email=" a@Example.org ")
    assert not service.is_suppressed(session, email="b@example.org")
    assert _ids(session, [news.id], "email") == []
    with pytest.raises(service.SubscriberError, match="suppressed"):
        service.subscribe(session, person, news)
    assert service.unsuppress(session, email="a@example.org") is True
    assert service.unsuppress(session, email="a@example.org") is False
    session.commit()
    assert person.status == "active"
    assert _ids(session, [news.id]) == [person.id]
    assert (
        session.scalar(select(func.count()).select_from(Event).where(Event.kind == "suppressed"))
        == 1
    )


def test_bounce_on_one_channel_keeps_the_other(session):
    news = service.create_list(session, "news", "News")
    both = service.add_subscriber(session, email="both@example.org", openid="oBOTH")
    service.subscribe(session, both, news)
    service.suppress(session, email="both@example.org", reason="bounced", source="smtp")
    session.commit()
    assert both.status == "active"  # still reachable on WeChat
    assert _ids(session, [news.id], "email") == []
    assert _ids(session, [news.id], "wechat") == [both.id]
    other = service.create_list(session, "other", "Other")
    service.subscribe(session, both, other)  # allowed: WeChat still works
    service.suppress(session, openid="oBOTH", reason="bounced", source="wechat")
    session.commit()
    assert both.status == "bounced"  # now unreachable everywhere
    assert _ids(session, [news.id, other.id], "wechat") == []
    with pytest.raises(service.SubscriberError, match="suppressed"):
        service.subscribe(session, both, service.create_list(session, "third", "Third"))
    service.suppress(session, openid="oCOMPLAIN", reason="complained", source="wechat")
    complainer = service.add_subscriber(session, email="c@example.org", openid="oCOMPLAIN2")
    service.suppress(session, email="c@example.org", reason="complained", source="smtp")
    assert complainer.status == "complained"  # a complaint is about the person, not a mailbox


def test_suppressed_address_without_subscriber_and_openid_suppression(session):
    service.suppress(session, email="gone@example.org", reason="manual", source="admin")
    service.suppress(session, openid="oBLOCK", reason="blocklisted", source="admin")
    session.commit()
    assert session.scalar(select(func.count()).select_from(Suppression)) == 2
    news = service.create_list(session, "news", "News")
    person = service.add_subscriber(session, email="gone@example.org")
    with pytest.raises(service.SubscriberError, match="suppressed"):
        service.subscribe(session, person, news)
    follower = service.add_subscriber(session, openid="oBLOCK")
    with pytest.raises(service.SubscriberError, match="suppressed"):
        service.subscribe(session, follower, news)


def test_recipients_each_person_once_and_only_eligible(session):
    a = service.create_list(session, "a", "A")
    b = service.create_list(session, "b", "B")
    c = service.create_list(session, "c", "C", optin="double")
    both = service.add_subscriber(
        session, email="both@example.org", name="两个列表", openid="oBOTH", locale="en"
    )
    only_b = service.add_subscriber(session, email="b@example.org")
    wechat_only = service.add_subscriber(session, openid="oWECHAT")
    unconfirmed = service.add_subscriber(session, email="u@example.org")
    left_a = service.add_subscriber(session, email="left@example.org")
    bounced = service.add_subscriber(session, email="bounced@example.org")
    for person, lists in (
        (both, [a, b]),
        (only_b, [b]),
        (wechat_only, [a, b]),
        (left_a, [a, b]),
        (bounced, [a]),
    ):
        for mailing_list in lists:
            service.subscribe(session, person, mailing_list)
    service.subscribe(
        session, unconfirmed, c
    )  # double opt-in, never confirmed (no settings: no email)
    service.unsubscribe(session, left_a.id, a.id)
    service.unsubscribe(session, left_a.id, b.id)
    service.suppress(session, email="bounced@example.org", reason="bounced", source="smtp")
    session.commit()

    rows = session.execute(service.recipients_select([a.id, b.id, c.id], "email")).all()
    assert [r.id for r in rows] == [both.id, only_b.id]
    first = rows[0]
    assert (first.email, first.name, first.locale, first.openid) == (
        "both@example.org",
        "两个列表",
        "en",
        "oBOTH",
    )
    assert _ids(session, [a.id, b.id], "wechat") == [both.id, wechat_only.id]
    assert service.count_recipients(session, [a.id, b.id], "email") == 2
    assert service.count_recipients(session, [a.id, b.id], "wechat") == 2
    assert service.count_recipients(session, [], "email") == 0
    assert (
        service.count_recipients(session, [a.id, 2**40], "email")
        == service.count_recipients(session, [a.id], "email")
        == 1
    )
    assert service.list_member_counts(session, a.id) == {
        "unconfirmed": 0,
        "confirmed": 3,
        "unsubscribed": 1,
    }
    with pytest.raises(service.SubscriberError, match="email or wechat"):
        service.recipients_select([a.id], "sms")


def test_recipients_select_fans_out_with_insert_select(session):
    """The delivery engine's use: INSERT … SELECT from the query, no objects loaded."""
    news = service.create_list(session, "news", "News")
    extra = service.create_list(session, "extra", "Extra")
    people = [
        service.add_subscriber(session, email=f"p{i}@example.org", name=f"P{i}") for i in range(5)
    ]
    for person in people:
        service.subscribe(session, person, news)
        service.subscribe(session, person, extra)
    session.commit()
    outbox = Table(
        "fanout_probe",
        MetaData(),
        Column("id", Integer, primary_key=True),
        Column("subscriber_id", Integer),
        Column("email", String(320)),
        Column("campaign", Integer),
        Column("payload", JSON),
    )
    outbox.create(session.connection())
    try:
        recipients = service.recipients_select([news.id, extra.id], "email").subquery()
        session.execute(
            insert(outbox).from_select(
                ["subscriber_id", "email", "campaign"],
                select(recipients.c.id, recipients.c.email, literal(7)),
            )
        )
        rows = session.execute(
            select(outbox.c.subscriber_id, outbox.c.email).order_by(outbox.c.subscriber_id)
        ).all()
        assert rows == [(p.id, p.email) for p in people]
    finally:
        session.rollback()
        outbox.drop(session.connection(), checkfirst=True)
        session.commit()


def test_times_are_utc_aware(session):
    person = service.add_subscriber(session, email="a@example.org")
    session.commit()
    session.expire_all()
    created = session.get(Subscriber, person.id).created_at
    assert isinstance(created, datetime) and created.utcoffset().total_seconds() == 0
