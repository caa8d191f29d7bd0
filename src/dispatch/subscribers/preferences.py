"""The preference centre's rules: what a person may change about themselves, and the two
rights that end with their data (a JSON copy of everything stored, and deletion).

Why a person may confirm a list here without a confirmation email: they arrived through a
signed link sent to their own address, which is the same proof a confirmation gives. Every
change is an Event with its source, so the administrator sees who changed what and where.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatch import audit, events
from dispatch.config import Settings
from dispatch.models import utcnow
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.event import Event
from dispatch.models.subscriber import (
    PREFERRED_CHANNELS,
    BindCode,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
)
from dispatch.subscribers import service
from dispatch.tokens import (
    TokenError,
    make_email_change_token,
    verify_email_change_token,
    verify_prefs_token,
    verify_unsubscribe_token,
)
from dispatch.vocabulary import AuditTarget


def subscriber_from_link(session: Session, settings: Settings, token: str) -> Subscriber:
    """A preference link, or an unsubscribe link (the footer of every email already carries
    one), names the person; TokenError for anything else."""
    try:
        subscriber_id = verify_prefs_token(settings, token)
    except TokenError as first:
        try:
            subscriber_id = verify_unsubscribe_token(settings, token).subscriber_id
        except TokenError:
            raise first from None
    subscriber = service.find_subscriber(session, id=subscriber_id)
    if subscriber is None:
        raise TokenError("unknown")
    return subscriber


def visible_lists(session: Session, subscriber: Subscriber) -> list[tuple[MailingList, str]]:
    """Public lists plus any private list the person is on, with their subscription status
    ("" when not subscribed)."""
    mine = {m.id: (m, s.status) for m, s in service.subscriptions_of(session, subscriber.id)}
    out: dict[int, tuple[MailingList, str]] = dict(mine)
    for mailing_list in session.scalars(select(MailingList).where(MailingList.public.is_(True))):
        out.setdefault(mailing_list.id, (mailing_list, ""))
    return sorted(out.values(), key=lambda pair: pair[0].name)


def update_preferences(
    session: Session,
    subscriber: Subscriber,
    *,
    list_ids: set[int] | None = None,
    locale: str | None = None,
    channel: str | None = None,
    name: str | None = None,
    source: str = "preference-centre",
) -> dict[str, Any]:
    """Apply the form; returns what changed (also recorded as one `prefs_changed` event).
    Joining is limited to public lists (and lists the person is already on)."""
    changes: dict[str, Any] = {}
    if name is not None and name.strip() != subscriber.name:
        if len(name) > 200 or any(ord(c) < 32 for c in name):
            raise service.SubscriberError("bad_status", value=name[:40], allowed="plain text")
        changes["name"] = [subscriber.name, name.strip()]
        subscriber.name = name.strip()
    if locale is not None:
        value = service._valid_locale(locale)
        if value != subscriber.locale:
            changes["locale"] = [subscriber.locale, value]
            subscriber.locale = value
    if channel is not None and channel != subscriber.preferred_channel:
        if channel not in PREFERRED_CHANNELS:
            raise service.SubscriberError("bad_channel", value=channel)
        changes["preferred_channel"] = [subscriber.preferred_channel, channel]
        subscriber.preferred_channel = channel
    if list_ids is not None:
        joined, left = _apply_lists(session, subscriber, list_ids, source)
        if joined or left:
            changes["lists"] = {"joined": joined, "left": left}
    if changes:
        events.record(
            session,
            "prefs_changed",
            channel="web",
            subscriber_id=subscriber.id,
            data={"source": source, "changes": changes},
        )
    session.flush()
    return changes


def _apply_lists(
    session: Session, subscriber: Subscriber, list_ids: set[int], source: str
) -> tuple[list[str], list[str]]:
    """Join the ticked visible lists, leave the unticked ones; returns (joined, left) slugs."""
    allowed = {m.id: (m, status) for m, status in visible_lists(session, subscriber)}
    joined, left = [], []
    now = utcnow()
    for list_id, (mailing_list, status) in allowed.items():
        wanted = list_id in list_ids
        if wanted and status != "confirmed":
            sub = session.get(Subscription, (subscriber.id, list_id))
            if sub is None:
                sub = Subscription(subscriber_id=subscriber.id, list_id=list_id, created_at=now)
                session.add(sub)
            sub.status, sub.confirmed_at, sub.unsubscribed_at = "confirmed", now, None
            sub.source = source
            joined.append(mailing_list.slug)
            events.record(
                session,
                "subscribed",
                channel="web",
                subscriber_id=subscriber.id,
                list_id=list_id,
                data={"source": source},
            )
        elif not wanted and status in ("confirmed", "unconfirmed"):
            service.unsubscribe(session, subscriber.id, list_id, source=source, channel="web")
            left.append(mailing_list.slug)
    if joined and subscriber.status == "unsubscribed":
        subscriber.status = "active"
    return joined, left


def request_email_change(
    session: Session, settings: Settings, subscriber: Subscriber, new_email: str
) -> str:
    """Validate the new address and mail it a confirmation link; nothing changes until that
    link's button is pressed. Returns the token (tests)."""
    from dispatch.subscribers.optin import send_email_change

    address = service._valid_email(new_email)
    if address is None:
        raise service.SubscriberError("no_address")
    service._ensure_free(session, address, None, subscriber.id)
    if service.is_suppressed(session, email=address):
        raise service.SubscriberError("suppressed", address=address)
    token = make_email_change_token(settings, subscriber.id, address)
    send_email_change(settings, subscriber, address, token)
    return token


def apply_email_change(session: Session, settings: Settings, token: str) -> Subscriber:
    claim = verify_email_change_token(settings, token)
    subscriber = service.find_subscriber(session, id=claim.subscriber_id)
    if subscriber is None:
        raise TokenError("unknown")
    if subscriber.email == claim.new_email:
        return subscriber
    if service.is_suppressed(session, email=claim.new_email):
        raise service.SubscriberError("suppressed", address=claim.new_email)
    old = subscriber.email
    service.update_subscriber(session, subscriber, email=claim.new_email)
    events.record(
        session,
        "email_changed",
        channel="web",
        subscriber_id=subscriber.id,
        data={"source": "preference-centre", "from": old, "to": claim.new_email},
    )
    session.flush()
    return subscriber


def _row(obj: Any, columns: list[str]) -> dict[str, Any]:
    out = {}
    for column in columns:
        value = getattr(obj, column)
        out[column] = value.isoformat() if hasattr(value, "isoformat") else value
    return out


def export_data(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """Everything stored about this person, nothing about anyone else."""
    person = _row(
        subscriber,
        [
            "id",
            "email",
            "openid",
            "name",
            "locale",
            "preferred_channel",
            "status",
            "attributes",
            "created_at",
            "confirmed_at",
        ],
    )
    subscriptions = [
        {
            "list": m.slug,
            "list_name": m.name,
            **_row(s, ["status", "source", "created_at", "confirmed_at", "unsubscribed_at"]),
        }
        for m, s in service.subscriptions_of(session, subscriber.id)
    ]
    deliveries = [
        {
            "campaign_id": d.campaign_id,
            "channel": channel,
            **_row(d, ["id", "email", "openid", "name", "status", "sent_at", "updated_at"]),
        }
        for d, channel in session.execute(
            select(Delivery, Campaign.channel)
            .join(Campaign, Campaign.id == Delivery.campaign_id)
            .where(Delivery.subscriber_id == subscriber.id)
            .order_by(Delivery.id)
        )
    ]
    history = [
        _row(e, ["kind", "channel", "occurred_at", "campaign_id", "list_id", "data"])
        for e in session.scalars(
            select(Event).where(Event.subscriber_id == subscriber.id).order_by(Event.id)
        )
    ]
    suppressions = [
        _row(s, ["email", "openid", "reason", "source", "created_at"])
        for s in session.scalars(select(Suppression).where(_addresses(Suppression, subscriber)))
    ]
    return {
        "subscriber": person,
        "subscriptions": subscriptions,
        "deliveries": deliveries,
        "events": history,
        "suppressions": suppressions,
    }


def _addresses(model: Any, subscriber: Subscriber) -> Any:
    if not subscriber.email and not subscriber.openid:
        return model.id.is_(None)
    return service._matching(model, subscriber.email, subscriber.openid)


def forget(session: Session, subscriber: Subscriber, *, source: str = "preference-centre") -> None:
    """Delete the person: subscriptions, events, bind codes and the personal fields of their
    delivery rows go; the addresses stay suppressed (the law lets, and the sender's reputation
    needs, a record that nothing may be sent to them again). A `deleted` event with no
    subscriber id says that it happened."""
    addresses: tuple[dict[str, Any], ...] = (
        {"email": subscriber.email},
        {"openid": subscriber.openid},
    )
    for address in addresses:
        if next(iter(address.values())):
            service.suppress(session, **address, reason="manual", source=f"deleted:{source}")
    sid = subscriber.id
    session.execute(
        update(Delivery)
        .where(Delivery.subscriber_id == sid)
        .values(email=None, openid=None, name="")
        .execution_options(synchronize_session=False)
    )
    session.execute(delete(Event).where(Event.subscriber_id == sid))
    session.execute(delete(BindCode).where(BindCode.subscriber_id == sid))
    audit.erase_subject(session, AuditTarget.SUBSCRIBER, sid)
    service.remove_subscriber(session, subscriber)
    events.record(session, "deleted", channel="web", data={"source": source})
    session.flush()
