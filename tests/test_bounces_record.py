"""Recording bounces: VERP ties a DSN to its delivery; hard suppresses, soft counts, complaints
unsubscribe from every list; bad input is recorded as unknown with a reason and harms nobody."""

from __future__ import annotations

import zlib

import pytest
from sqlalchemy import func, select, update

from bounce_helpers import arf_report, postfix_dsn, sent_campaign
from dispatch.bounces.record import process_message
from dispatch.models import Delivery, Event
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.tokens import verp_address

ADDRESSES = ["alice@example.net", "bob@example.net", "carol@example.net"]


@pytest.fixture
def bsettings(settings):
    return settings.replace(bounce_address="bounces@bounce.example.org")


def _suppressed(session) -> dict[str, str]:
    session.expire_all()
    return {s.email: s.reason for s in session.scalars(select(Suppression))}


def _count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def test_verp_ties_a_dsn_to_its_delivery_even_when_the_body_names_another_address(
    session, bsettings
):
    sent = sent_campaign(session, ADDRESSES)
    delivery_id = sent.deliveries["bob@example.net"]
    verp = verp_address(bsettings, "c", sent.campaign_id, delivery_id)
    # the DSN names a forwarding target, not the address we sent to: VERP still knows
    raw = postfix_dsn("bob.forwarded@elsewhere.example", envelope_to=verp)
    recorded = process_message(session, bsettings, raw, source="smtp", envelope_to=[verp])
    session.commit()
    assert (recorded.kind, recorded.delivery_id, recorded.recipient) == (
        "hard",
        delivery_id,
        "bob@example.net",
    )
    assert recorded.status == "5.1.1" and recorded.action == "suppressed"
    assert _suppressed(session) == {"bob@example.net": "bounced"}
    assert session.get(Delivery, delivery_id).status == "bounced"
    assert session.get(Delivery, sent.deliveries["alice@example.net"]).status == "sent"
    event = session.scalars(select(Event).where(Event.kind == "bounce_hard")).one()
    assert (event.delivery_id, event.campaign_id) == (delivery_id, sent.campaign_id)
    row = session.scalars(select(BounceMessage)).one()
    assert zlib.decompress(row.raw) == raw and row.raw_size == len(raw)
    assert session.scalars(select(Suppression)).one().bounce_id == row.id


def test_the_same_message_twice_is_processed_once(session, bsettings):
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(bsettings, "c", sent.campaign_id, sent.deliveries["alice@example.net"])
    raw = postfix_dsn("alice@example.net", envelope_to=verp)
    first = process_message(session, bsettings, raw, source="imap")
    session.commit()
    second = process_message(session, bsettings, raw, source="smtp")
    session.commit()
    assert not first.duplicate and second.duplicate and second.action == "duplicate"
    assert _count(session, BounceMessage) == 1
    assert session.scalar(select(func.count()).where(Event.kind == "bounce_hard")) == 1


def test_forged_verp_token_is_ignored_and_nobody_is_suppressed(session, bsettings):
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(bsettings, "c", sent.campaign_id, sent.deliveries["carol@example.net"])
    local, _, domain = verp.partition("@")
    forged = local[:-1] + ("0" if local[-1] != "0" else "1") + "@" + domain
    raw = postfix_dsn("carol@example.net", envelope_to=forged)
    recorded = process_message(session, bsettings, raw, source="smtp", envelope_to=[forged])
    session.commit()
    assert recorded.kind == "unknown" and "forged" in recorded.reason
    assert _suppressed(session) == {}
    assert session.get(Delivery, sent.deliveries["carol@example.net"]).status == "sent"


def test_dsn_for_an_address_we_never_sent_to_is_reported_not_acted_on(session, bsettings):
    sent_campaign(session, ADDRESSES)
    recorded = process_message(
        session, bsettings, postfix_dsn("stranger@example.com"), source="file"
    )
    session.commit()
    assert recorded.delivery_id is None and recorded.action == "none"
    assert "no delivery" in recorded.reason
    assert _suppressed(session) == {}


@pytest.mark.parametrize(
    "number",
    [
        "9" * 30,  # past 2^63 - 1: the lookup overflowed (SQLite) or went out of range (PG)
        str(2**63),
        "0",
    ],
)
def test_a_message_id_naming_an_impossible_delivery_matches_nobody(session, bsettings, number):
    """Anyone can send a DSN: its Message-ID's numbers are bounded before they reach a query,
    so such a message is recorded as unmatched instead of failing the whole chunk."""
    sent = sent_campaign(session, ADDRESSES)
    raw = postfix_dsn(
        "stranger@example.com", message_id=f"<d{number}.c{sent.campaign_id}@example.org>"
    )
    recorded = process_message(session, bsettings, raw, source="file")
    session.commit()
    assert recorded.delivery_id is None and "no delivery" in recorded.reason
    assert _suppressed(session) == {}


def test_a_message_id_naming_a_delivery_past_2_31_is_looked_up(session, bsettings):
    """The largest id a Message-ID may name is the 64-bit one (deliveries.id is BIGINT)."""
    sent = sent_campaign(session, ["zed@example.net"])
    session.execute(
        update(Delivery).values(id=3_000_000_000).where(Delivery.campaign_id == sent.campaign_id)
    )
    session.commit()
    raw = postfix_dsn(
        "zed@example.net", message_id=f"<d3000000000.c{sent.campaign_id}@example.org>"
    )
    recorded = process_message(session, bsettings, raw, source="file")
    session.commit()
    assert recorded.delivery_id == 3_000_000_000
    assert session.scalars(select(BounceMessage.delivery_id)).one() == 3_000_000_000


def test_without_verp_the_address_finds_the_latest_delivery(session, bsettings):
    sent = sent_campaign(session, ADDRESSES)
    recorded = process_message(session, bsettings, postfix_dsn("alice@example.net"), source="file")
    session.commit()
    assert recorded.delivery_id == sent.deliveries["alice@example.net"]
    assert _suppressed(session) == {"alice@example.net": "bounced"}


def test_soft_bounces_suppress_only_at_the_threshold(session, bsettings):
    settings = bsettings.replace(soft_bounce_limit=3, soft_bounce_days=30)
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(settings, "c", sent.campaign_id, sent.deliveries["alice@example.net"])
    actions = []
    for n in range(3):
        raw = postfix_dsn(
            "alice@example.net",
            envelope_to=verp,
            status="4.2.2",
            diagnostic="smtp; 452 4.2.2 Mailbox full",
            message_id=f"<try{n}@example.org>",
        )
        recorded = process_message(session, settings, raw, source="imap")
        session.commit()
        actions.append((recorded.kind, recorded.action))
        if n < 2:
            assert _suppressed(session) == {}
    assert actions == [("soft", "counted"), ("soft", "counted"), ("soft", "suppressed")]
    assert _suppressed(session) == {"alice@example.net": "bounced"}
    assert session.get(Delivery, sent.deliveries["alice@example.net"]).status == "sent"


def test_complaint_unsubscribes_from_every_list_and_suppresses(session, bsettings):
    sent = sent_campaign(session, ADDRESSES, lists=3)
    delivery_id = sent.deliveries["carol@example.net"]
    verp = verp_address(bsettings, "c", sent.campaign_id, delivery_id)
    recorded = process_message(
        session, bsettings, arf_report("carol@example.net", mail_from=verp), source="imap"
    )
    session.commit()
    assert (recorded.kind, recorded.delivery_id, recorded.action) == (
        "complaint",
        delivery_id,
        "unsubscribed",
    )
    carol = sent.subscribers["carol@example.net"]
    statuses = session.scalars(
        select(Subscription.status).where(Subscription.subscriber_id == carol)
    ).all()
    assert statuses == ["unsubscribed"] * 3
    assert session.get(Subscriber, carol).status == "complained"
    assert _suppressed(session) == {"carol@example.net": "complained"}
    others = session.scalars(
        select(Subscription.status).where(Subscription.subscriber_id != carol)
    ).all()
    assert set(others) == {"confirmed"}


def test_transactional_token_kind(session, bsettings):
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(bsettings, "t", 0, sent.subscribers["bob@example.net"])
    recorded = process_message(
        session, bsettings, postfix_dsn("bob@example.net", envelope_to=verp), source="smtp"
    )
    session.commit()
    assert recorded.kind == "hard" and recorded.delivery_id is None
    assert _suppressed(session) == {"bob@example.net": "bounced"}


# -- bad input: recorded as unknown or ignored with a reason, no crash, nobody else harmed ---


def test_not_a_bounce_at_all(session, bsettings):
    sent_campaign(session, ADDRESSES)
    raw = (
        b"From: alice@example.net\r\nTo: bounces@bounce.example.org\r\nSubject: hello\r\n\r\nhi\r\n"
    )
    recorded = process_message(session, bsettings, raw, source="smtp")
    session.commit()
    assert recorded.kind == "unknown" and recorded.reason
    assert _suppressed(session) == {}


def test_mail_loop_a_bounce_of_a_bounce(session, bsettings):
    sent_campaign(session, ADDRESSES)
    inner = postfix_dsn("alice@example.net").decode()
    raw = postfix_dsn("alice@example.net").replace(
        b"Content-Type: text/rfc822-headers\n\n",
        b"Content-Type: text/rfc822-headers\n\n" + inner.split("\n\n", 1)[0].encode() + b"\n\n",
    )
    # the returned headers are now the headers of a DSN: a bounce of a bounce
    recorded = process_message(session, bsettings, raw, source="smtp")
    session.commit()
    assert recorded.kind == "unknown" and "loop" in recorded.reason
    assert _suppressed(session) == {}


@pytest.mark.parametrize("charset", ["gb18030", "gb2312", "unknown-8bit"])
def test_dsn_with_gb18030_or_8bit_body(session, bsettings, charset):
    sent_campaign(session, ADDRESSES)
    note = (
        "您好，这是 relay.example.org 的邮件系统。\n您的邮件无法投递给以下收件人：\n\n"
        "<alice@example.net>: 550 5.1.1 用户不存在 (User unknown)\n"
    ).encode("gb18030")
    raw = postfix_dsn("alice@example.net", body_charset=charset, notification=note)
    recorded = process_message(session, bsettings, raw, source="imap")
    session.commit()
    assert (recorded.kind, recorded.recipient, recorded.status) == (
        "hard",
        "alice@example.net",
        "5.1.1",
    )


def test_twenty_megabyte_message(session, bsettings):
    sent = sent_campaign(session, ADDRESSES)
    verp = verp_address(bsettings, "c", sent.campaign_id, sent.deliveries["bob@example.net"])
    dsn = postfix_dsn("bob@example.net", envelope_to=verp)
    raw = dsn.replace(
        b"--ABC123.1700000000/relay.example.org--\n",
        b"--ABC123.1700000000/relay.example.org\nContent-Type: application/octet-stream\n\n"
        + b"A" * (20 * 1024 * 1024)
        + b"\n--ABC123.1700000000/relay.example.org--\n",
    )
    recorded = process_message(session, bsettings, raw, source="smtp")
    session.commit()
    assert recorded.kind == "hard" and recorded.delivery_id == sent.deliveries["bob@example.net"]
    row = session.scalars(select(BounceMessage)).one()
    assert row.raw_truncated and row.raw_size == len(raw)
    assert len(zlib.decompress(row.raw)) == bsettings.bounce_raw_max_bytes
    junk = b"Subject: big\r\n\r\n" + b"B" * (20 * 1024 * 1024)
    recorded = process_message(session, bsettings, junk, source="smtp")
    session.commit()
    assert recorded.kind == "unknown"
    assert _suppressed(session) == {"bob@example.net": "bounced"}


def test_dry_run_records_nothing(session, bsettings):
    sent_campaign(session, ADDRESSES)
    recorded = process_message(
        session, bsettings, postfix_dsn("alice@example.net"), source="file", dry_run=True
    )
    session.commit()
    assert recorded.kind == "hard" and recorded.bounce_id is None
    assert _count(session, BounceMessage) == 0 and _suppressed(session) == {}
