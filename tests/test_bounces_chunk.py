"""A chunk of messages writes exactly the rows that processing them one by one writes: the
bulk path (one query per table for the whole chunk) keeps the duplicate, soft-threshold and
complaint semantics of the one-message path."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bounce_helpers import arf_report, postfix_dsn, sent_campaign
from dispatch.bounces.record import Inbound, process_message, record_chunk
from dispatch.models import Delivery, Event
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.tokens import verp_address

ADDRESSES = [f"{name}@example.net" for name in ("alice", "bob", "carol", "dave", "erin")]
SOFT = {"status": "4.2.2", "diagnostic": "smtp; 452 4.2.2 Mailbox full"}


@pytest.fixture
def bsettings(settings):
    return settings.replace(
        bounce_address="bounces@bounce.example.org", soft_bounce_limit=3, soft_bounce_days=30
    )


def _messages(settings, sent) -> tuple[bytes, list[tuple[bytes, str]]]:
    """(a message stored before the chunk, the chunk: every kind, in an order that matters)."""

    def verp(address: str) -> str:
        return verp_address(settings, "c", sent.campaign_id, sent.deliveries[address])

    hard = postfix_dsn("alice@example.net", envelope_to=verp("alice@example.net"))
    earlier = postfix_dsn(
        "bob@example.net", envelope_to=verp("bob@example.net"), message_id="<s0@x>", **SOFT
    )
    chunk = [
        (hard, "smtp"),
        *[
            (
                postfix_dsn(
                    "bob@example.net",
                    envelope_to=verp("bob@example.net"),
                    message_id=f"<s{n}@x>",
                    **SOFT,
                ),
                "imap",
            )
            for n in (1, 2, 3)  # with the earlier one: the 2nd of the chunk reaches 3
        ],
        (arf_report("carol@example.net", mail_from=verp("carol@example.net")), "imap"),
        (hard, "imap"),  # the same raw message again, within the chunk
        (earlier, "imap"),  # stored before the chunk
        (b"From: x@example.com\r\nTo: bounces@bounce.example.org\r\n\r\nhi\r\n", "smtp"),
        (postfix_dsn("dave@example.net"), "file"),  # no VERP: the address finds dave
        (postfix_dsn("stranger@example.com", message_id="<q@x>"), "file"),  # never sent to
        (
            postfix_dsn(
                "alice@example.net",
                envelope_to=verp("alice@example.net"),
                message_id="<later@x>",
                **SOFT,
            ),
            "smtp",
        ),  # a soft bounce after her hard one: her first soft
        (arf_report("carol@example.net", message_id="<again@x>"), "smtp"),  # complains twice
        (
            postfix_dsn("erin@example.net", envelope_to=verp("erin@example.net"), **SOFT),
            "smtp",
        ),
    ]
    return earlier, chunk


def _snapshot(session, recorded) -> dict[str, Any]:
    """Every row the recording path writes, with generated ids replaced by their order."""
    session.expire_all()
    bounce_ids = session.scalars(select(BounceMessage.id).order_by(BounceMessage.id)).all()
    order = {bid: n for n, bid in enumerate(bounce_ids)}
    order[None] = None
    bounces = [
        (
            r.digest,
            r.source,
            r.kind,
            r.recipient,
            r.status,
            r.diagnostic,
            r.reporting_mta,
            r.original_message_id,
            r.campaign_id,
            r.delivery_id,
            r.subscriber_id,
            r.action,
            r.reason,
            r.raw,
            r.raw_size,
            r.raw_truncated,
        )
        for r in session.scalars(select(BounceMessage).order_by(BounceMessage.id))
    ]
    events = []
    for e in session.scalars(select(Event).order_by(Event.id)):
        data = dict(e.data)
        if "bounce_id" in data:
            data["bounce_id"] = order[data["bounce_id"]]
        events.append(
            (e.kind, e.channel, e.campaign_id, e.delivery_id, e.subscriber_id, e.list_id, data)
        )
    return {
        "recorded": [{**r.as_dict(), "bounce_id": order.get(r.bounce_id, "?")} for r in recorded],
        "bounces": bounces,
        "events": events,
        "suppressions": [
            (s.email, s.email_key, s.openid, s.reason, s.source, order[s.bounce_id])
            for s in session.scalars(select(Suppression).order_by(Suppression.email))
        ],
        "subscribers": session.execute(
            select(Subscriber.id, Subscriber.status).order_by(Subscriber.id)
        ).all(),
        "subscriptions": session.execute(
            select(
                Subscription.subscriber_id,
                Subscription.list_id,
                Subscription.status,
                Subscription.unsubscribed_at.is_not(None),
            ).order_by(Subscription.subscriber_id, Subscription.list_id)
        ).all(),
        "deliveries": session.execute(
            select(Delivery.id, Delivery.status, Delivery.last_code, Delivery.last_text).order_by(
                Delivery.id
            )
        ).all(),
    }


def test_a_mixed_chunk_writes_the_same_rows_as_one_by_one(session, bsettings):
    sent = sent_campaign(session, ADDRESSES, lists=3)
    earlier, chunk = _messages(bsettings, sent)
    process_message(session, bsettings, earlier, source="imap")
    session.commit()

    one_by_one = [process_message(session, bsettings, raw, source=src) for raw, src in chunk]
    expected = _snapshot(session, one_by_one)
    session.rollback()

    together = record_chunk(session, bsettings, [Inbound(raw, src) for raw, src in chunk])
    got = _snapshot(session, together)
    session.commit()

    assert got == expected
    # and what that is, so that both paths being wrong the same way fails too
    actions = [(r["kind"], r["action"]) for r in got["recorded"]]
    assert actions == [
        ("hard", "suppressed"),
        ("soft", "counted"),
        ("soft", "suppressed"),
        ("soft", "suppressed"),
        ("complaint", "unsubscribed"),
        ("hard", "duplicate"),
        ("soft", "duplicate"),
        ("unknown", "none"),
        ("hard", "suppressed"),
        ("hard", "none"),
        ("soft", "counted"),
        ("complaint", "unsubscribed"),
        ("soft", "counted"),
    ]
    assert got["recorded"][5]["bounce_id"] == got["recorded"][0]["bounce_id"]
    assert {s[0]: s[3] for s in got["suppressions"]} == {
        "alice@example.net": "bounced",
        "bob@example.net": "bounced",
        "carol@example.net": "complained",
        "dave@example.net": "bounced",
    }
    carol = sent.subscribers["carol@example.net"]
    assert {row[2] for row in got["subscriptions"] if row[0] == carol} == {"unsubscribed"}
    assert len(got["bounces"]) == 1 + len(chunk) - 2  # the two duplicates add nothing


def test_an_empty_chunk_writes_nothing(session, bsettings):
    assert record_chunk(session, bsettings, []) == []


@pytest.mark.parametrize("kind", ["hard", "complaint"])
def test_the_bulk_suppression_does_what_the_service_does(session, bsettings, kind):
    """The chunk re-implements `subscribers.service.suppress` / `unsubscribe` in bulk: a
    person who bounced on email but follows on WeChat stays reachable there, a complaint
    blocks them whatever; the same as the service does for a twin subscriber."""
    from dispatch.subscribers import service

    sent = sent_campaign(session, ["ann@example.net", "twin@example.net"])
    for n, address in enumerate(("ann@example.net", "twin@example.net")):
        session.get(Subscriber, sent.subscribers[address]).openid = f"o-{n}"
    session.commit()
    verp = verp_address(bsettings, "c", sent.campaign_id, sent.deliveries["ann@example.net"])
    raw = (
        postfix_dsn("ann@example.net", envelope_to=verp)
        if kind == "hard"
        else arf_report("ann@example.net", mail_from=verp)
    )
    process_message(session, bsettings, raw, source="smtp")
    twin = sent.subscribers["twin@example.net"]
    if kind == "complaint":
        service.unsubscribe(session, twin, None, source="complaint")
    reason = "bounced" if kind == "hard" else "complained"
    service.suppress(session, email="twin@example.net", reason=reason, source="x")
    session.commit()
    session.expire_all()
    ann = session.get(Subscriber, sent.subscribers["ann@example.net"])
    assert ann.status == session.get(Subscriber, twin).status
    assert ann.status == ("active" if kind == "hard" else "complained")
    suppressed = session.scalars(select(Event).where(Event.kind == "suppressed")).all()
    assert sorted(e.subscriber_id for e in suppressed) == sorted(sent.subscribers.values())
    subscriptions = session.execute(select(Subscription.subscriber_id, Subscription.status)).all()
    assert {s for _, s in subscriptions} == ({"confirmed"} if kind == "hard" else {"unsubscribed"})
