"""Tie a parsed bounce to its delivery and act on it, in the caller's transaction.

Matching, most exact first:
1. the VERP token in the envelope recipient / To / the DSN's X-Postfix-Sender (signed: it
   names one delivery of one campaign, whatever the body says; a forged token is ignored);
2. our Message-ID `<d{delivery}.c{campaign}@{from domain}>` in the returned headers, when
   that delivery went to the reported address;
3. the reported address: the most recent delivery sent to it.
With no delivery, nothing is suppressed ("an address we never sent to" is reported, never
acted on).

Acting: hard -> the delivery is marked bounced and the address suppressed on email; soft ->
counted, `soft_bounce_limit` within `soft_bounce_days` suppress; complaint -> unsubscribed
from every list and suppressed, whatever channel the report came from; auto_reply and
unknown -> recorded only. Every message becomes one `bounce_messages` row (raw kept
compressed, size-capped; its digest makes a second arrival a no-op) and one event.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.bounces.parse import BounceResult, parse_bounce
from dispatch.canonical import canonical_email
from dispatch.config import Settings
from dispatch.log import get_logger
from dispatch.models import utcnow
from dispatch.models.bounce import BounceMessage
from dispatch.models.delivery import MAX_DELIVERY_ID, Campaign, Delivery
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.tokens import TokenError, bounce_token_in, verify_bounce_token
from dispatch.vocabulary import (
    BounceKind,
    Channel,
    DeliveryStatus,
    EventKind,
    SubscriberStatus,
    SubscriptionStatus,
    SuppressionReason,
)

__all__ = [
    "EVENT_FOR_KIND",
    "Inbound",
    "Recorded",
    "process_message",
    "record_chunk",
    "record_result",
]

log = get_logger(__name__)

EVENT_FOR_KIND = {
    BounceKind.HARD: EventKind.BOUNCE_HARD,
    BounceKind.SOFT: EventKind.BOUNCE_SOFT,
    BounceKind.COMPLAINT: EventKind.COMPLAINT,
    BounceKind.AUTO_REPLY: EventKind.AUTO_REPLY,
    BounceKind.UNKNOWN: EventKind.BOUNCE_UNKNOWN,
}


@dataclass
class Recorded:
    """What happened to one inbound message (the ingest command prints it as JSON)."""

    bounce_id: int | None
    kind: str
    recipient: str | None
    status: str | None
    diagnostic: str
    delivery_id: int | None
    campaign_id: int | None
    action: str  # suppressed | counted | unsubscribed | none | duplicate
    reason: str
    duplicate: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "recipient": self.recipient,
            "status": self.status,
            "diagnostic": self.diagnostic,
            "delivery_id": self.delivery_id,
            "campaign_id": self.campaign_id,
            "action": self.action,
            "reason": self.reason,
            "bounce_id": self.bounce_id,
            "duplicate": self.duplicate,
        }


def own_addresses(settings: Settings) -> set[str]:
    """Addresses that are ours: never a failed recipient, never suppressed."""
    out = {settings.from_address.lower()}
    if settings.bounce_address:
        out.add(settings.bounce_address.lower())
    if settings.reply_to:
        out.add(settings.reply_to.lower())
    return out


def digest_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass
class Inbound:
    """One message for `record_chunk`: its raw bytes and where it came from. `result` is given
    by doors that parse themselves (webhooks); they also skip the digest check (`check`)."""

    raw: bytes
    source: str
    envelope_to: tuple[str, ...] | list[str] = ()
    result: BounceResult | None = None
    digest: str | None = None
    check: bool = True


def process_message(
    session: Session,
    settings: Settings,
    raw: bytes,
    *,
    source: str,
    envelope_to: tuple[str, ...] | list[str] = (),
    dry_run: bool = False,
) -> Recorded:
    """Parse and record one raw message (the mailbox, SMTP intake and file import call this)."""
    item = Inbound(raw=raw, source=source, envelope_to=tuple(envelope_to))
    return record_chunk(session, settings, [item], dry_run=dry_run)[0]


def record_result(
    session: Session,
    settings: Settings,
    result: BounceResult,
    *,
    raw: bytes,
    source: str,
    digest: str | None = None,
    dry_run: bool = False,
) -> Recorded:
    """Match, act and store one parsed message. The caller commits."""
    item = Inbound(raw=raw, source=source, result=result, digest=digest, check=False)
    return record_chunk(session, settings, [item], dry_run=dry_run)[0]


# a delivery as the chunk sees it: plain values, changed in memory as the chunk goes
_DELIVERY_COLUMNS = (
    Delivery.id,
    Delivery.campaign_id,
    Delivery.email,
    Delivery.subscriber_id,
    Delivery.status,
)


@dataclass
class _Match:
    delivery: dict[str, Any] | None = None
    transactional_subscriber: int | None = None
    how: str = ""
    forged: bool = False


@dataclass
class _Claim:
    """What a message's VERP token / Message-ID / address asks for, before any query."""

    verp_delivery: tuple[int, int] | None = None  # (delivery id, campaign id)
    decided: _Match | None = None  # forged / transactional: no delivery needed
    message_id: tuple[int, int] | None = None
    address: str | None = None


def _claim(settings: Settings, result: BounceResult) -> _Claim:
    for candidate in result.verp_candidates:
        token = bounce_token_in(settings, candidate)
        if token is None:
            continue
        try:
            claim = verify_bounce_token(settings, token)
        except TokenError:
            return _Claim(decided=_Match(forged=True, how="forged VERP token"))
        if claim.kind == "t" and claim.campaign_id == 0:
            return _Claim(
                decided=_Match(
                    transactional_subscriber=claim.ref_id or None, how="VERP (transactional)"
                )
            )
        return _Claim(verp_delivery=(claim.ref_id, claim.campaign_id))
    out = _Claim(address=result.recipient or None)
    message_id = (result.original_message_id or "").strip().strip("<>")
    domain = settings.from_address.rpartition("@")[2].lower()
    if message_id.startswith("d") and message_id.lower().endswith("@" + domain):
        local = message_id.rpartition("@")[0]
        head, _, campaign = local.partition(".c")
        delivery_id, campaign_id = _row_id(head[1:]), _row_id(campaign)
        if delivery_id is not None and campaign_id is not None:
            out.message_id = (delivery_id, campaign_id)
    return out


def _row_id(text: str) -> int | None:
    """An id written in a Message-ID (anyone can send one): ASCII digits, 1 to
    MAX_DELIVERY_ID; anything else names no row (a larger number would overflow the query)."""
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        return None
    value = int(text)
    return value if 0 < value <= MAX_DELIVERY_ID else None


def _resolve(
    claim: _Claim,
    result: BounceResult,
    by_id: dict[int, dict[str, Any]],
    by_address: dict[str, dict[str, Any]],
) -> _Match:
    """The old one-message matching order, over deliveries fetched for the whole chunk."""
    if claim.decided is not None:
        return claim.decided
    if claim.verp_delivery is not None:
        delivery_id, campaign_id = claim.verp_delivery
        delivery = by_id.get(delivery_id)
        if delivery is None or delivery["campaign_id"] != campaign_id:
            return _Match(how="VERP token names no delivery")
        return _Match(delivery=delivery, how="VERP token")
    if claim.message_id is not None:
        delivery = by_id.get(claim.message_id[0])
        if (
            delivery is not None
            and delivery["campaign_id"] == claim.message_id[1]
            and (result.recipient is None or (delivery["email"] or "").lower() == result.recipient)
        ):
            return _Match(delivery=delivery, how="Message-ID")
    if claim.address:
        delivery = by_address.get(claim.address)
        if delivery is not None:
            return _Match(delivery=delivery, how="address")
    return _Match(how="no delivery matches")


def _compress(settings: Settings, raw: bytes) -> tuple[bytes, bool]:
    cap = max(int(settings.bounce_raw_max_bytes), 1024)
    truncated = len(raw) > cap
    return zlib.compress(raw[:cap], 6), truncated


@dataclass
class _Item:
    """One message of a chunk while it is being decided."""

    index: int
    inbound: Inbound
    digest: str
    result: BounceResult
    match: _Match
    kind: str = ""
    reason: str = ""
    recipient: str | None = None
    subscriber_id: int | None = None
    tied: bool = False
    action: str = "none"
    soft_count: int = 0
    bounce_id: int | None = None


def _chunks(values: list[Any], size: int = 500) -> list[list[Any]]:
    return [values[i : i + size] for i in range(0, len(values), size)]


def _deliveries(session: Session, items: list[tuple[_Claim, BounceResult]]) -> tuple[dict, dict]:
    """Every delivery the chunk's claims name, in two queries: by id, and latest by address."""
    ids = {c.verp_delivery[0] for c, _ in items if c.verp_delivery}
    ids |= {c.message_id[0] for c, _ in items if c.message_id}
    by_id: dict[int, dict[str, Any]] = {}
    for part in _chunks(sorted(ids)):
        for row in session.execute(select(*_DELIVERY_COLUMNS).where(Delivery.id.in_(part))):
            by_id[row.id] = dict(row._mapping)
    # an address is only needed when neither the token nor the Message-ID decides
    addresses = set()
    for claim, result in items:
        if claim.decided is None and claim.verp_delivery is None and claim.address:
            if claim.message_id is not None:
                d = by_id.get(claim.message_id[0])
                if (
                    d is not None
                    and d["campaign_id"] == claim.message_id[1]
                    and (result.recipient is None or (d["email"] or "").lower() == result.recipient)
                ):
                    continue
            addresses.add(claim.address)
    by_address: dict[str, dict[str, Any]] = {}
    for part in _chunks(sorted(addresses)):
        rows = session.execute(
            select(*_DELIVERY_COLUMNS, func.lower(Delivery.email).label("key"))
            .where(
                func.lower(Delivery.email).in_(part),
                Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.BOUNCED)),
            )
            .order_by(Delivery.sent_at.desc().nulls_last(), Delivery.id.desc())
        )
        for row in rows:
            values = dict(row._mapping)
            key = values.pop("key")
            if key not in by_address:
                by_address[key] = by_id.setdefault(values["id"], values)
    return by_id, by_address


def record_chunk(
    session: Session,
    settings: Settings,
    inbound: list[Inbound],
    *,
    dry_run: bool = False,
) -> list[Recorded]:
    """Parse, match, act on and store a chunk of messages in the caller's transaction, with a
    fixed number of statements per chunk (not per message). The result is the same as
    processing the messages one by one in order: duplicates (stored before, or earlier in the
    chunk) are only reported, the soft-bounce threshold counts earlier messages of the chunk,
    a complaint unsubscribes from every list. The caller commits."""
    if not inbound:
        return []
    session.flush()  # the caller's pending changes are visible to the chunk's queries
    own = own_addresses(settings)
    digests = [item.digest or digest_of(item.raw) for item in inbound]
    duplicate_of = {} if dry_run else _duplicates(session, inbound, digests)
    parsed: list[tuple[int, BounceResult, _Claim]] = []
    for index, item in enumerate(inbound):
        if index in duplicate_of:
            continue
        result = item.result or parse_bounce(
            item.raw, envelope_to=item.envelope_to, own_addresses=own
        )
        parsed.append((index, result, _claim(settings, result)))
    by_id, by_address = _deliveries(session, [(c, r) for _, r, c in parsed])
    items: list[_Item] = []
    for index, result, claim in parsed:
        item = _Item(
            index=index,
            inbound=inbound[index],
            digest=digests[index],
            result=result,
            match=_resolve(claim, result, by_id, by_address),
        )
        _decide(item, own)
        items.append(item)
    _complainers(session, items)
    if not dry_run:
        _Writer(session, settings).write(items)
    return _report(session, inbound, items, duplicate_of, digests)


def _duplicates(
    session: Session, inbound: list[Inbound], digests: list[str]
) -> dict[int, int | str]:
    """index -> the stored bounce id, or the digest of an earlier message of the chunk, for
    each message already seen (only messages that ask to be checked)."""
    duplicate_of: dict[int, int | str] = {}
    wanted = sorted({d for d, item in zip(digests, inbound, strict=True) if item.check})
    stored: dict[str, int] = {}
    for part in _chunks(wanted):
        stored.update(
            session.execute(
                select(BounceMessage.digest, BounceMessage.id).where(BounceMessage.digest.in_(part))
            ).all()
        )
    first: set[str] = set()
    for index, (digest, item) in enumerate(zip(digests, inbound, strict=True)):
        if item.check and digest in stored:
            duplicate_of[index] = stored[digest]
        elif item.check and digest in first:
            duplicate_of[index] = digest
        else:
            first.add(digest)
    return duplicate_of


def _decide(item: _Item, own: set[str]) -> None:
    """Kind, reason, recipient and subscriber of one message (no database)."""
    match, result = item.match, item.result
    delivery = match.delivery
    item.kind, item.reason, item.recipient = result.kind, result.reason, result.recipient
    if match.forged:
        item.kind, item.reason = "unknown", "forged or altered VERP token: ignored"
        delivery = None
    elif delivery is not None and delivery["email"]:
        item.recipient = delivery["email"].lower()  # the address we sent to, whatever the DSN
    if item.recipient and item.recipient in own:
        item.kind, item.reason = "unknown", "the reported address is our own: ignored"
        delivery = None
    match.delivery = delivery
    item.subscriber_id = delivery["subscriber_id"] if delivery is not None else None
    if item.subscriber_id is None and match.transactional_subscriber:
        item.subscriber_id = match.transactional_subscriber
    item.tied = delivery is not None or match.transactional_subscriber is not None
    if item.kind in ("hard", "soft", "complaint") and not item.tied and not item.reason:
        item.reason = f"{match.how}: recorded, nobody suppressed"


def _complainers(session: Session, items: list[_Item]) -> None:
    """A complaint about an address with no delivery still names its subscriber (one query)."""
    wanted = [
        i
        for i in items
        if i.subscriber_id is None
        and i.recipient
        and i.match.delivery is None
        and i.kind == "complaint"
    ]
    keys = sorted({canonical_email(i.recipient) for i in wanted})
    found: dict[str, int] = {}
    for part in _chunks(keys):
        for key, sid in session.execute(
            select(Subscriber.email_key, Subscriber.id)
            .where(Subscriber.email_key.in_(part))
            .order_by(Subscriber.id.desc())
        ):
            found[key] = sid
    for i in wanted:
        i.subscriber_id = found.get(canonical_email(i.recipient))


def _report(
    session: Session,
    inbound: list[Inbound],
    items: list[_Item],
    duplicate_of: dict[int, int | str],
    digests: list[str],
) -> list[Recorded]:
    """One Recorded per inbound message, in order; a duplicate repeats what was stored."""
    out: list[Recorded | None] = [None] * len(inbound)
    by_digest: dict[str, Recorded] = {}
    for i in items:
        delivery = i.match.delivery
        recorded = Recorded(
            bounce_id=i.bounce_id,
            kind=i.kind,
            recipient=i.recipient,
            status=i.result.status,
            diagnostic=i.result.diagnostic,
            delivery_id=delivery["id"] if delivery is not None else None,
            campaign_id=delivery["campaign_id"] if delivery is not None else None,
            action=i.action,
            reason=i.reason,
        )
        out[i.index] = recorded
        by_digest[i.digest] = recorded
    rows = _stored_bounces(
        session, sorted({v for v in duplicate_of.values() if isinstance(v, int)})
    )
    for index, of in duplicate_of.items():
        if isinstance(of, int):
            row = rows[of]
            values = (row.id, row.kind, row.recipient, row.status, row.diagnostic)
            ids = (row.delivery_id, row.campaign_id)
        else:
            first = by_digest[of]
            values = (first.bounce_id, first.kind, first.recipient, first.status, "")
            values = (*values[:4], (first.diagnostic or "")[:2000])
            ids = (first.delivery_id, first.campaign_id)
        out[index] = Recorded(
            bounce_id=values[0],
            kind=values[1],
            recipient=values[2],
            status=values[3],
            diagnostic=values[4],
            delivery_id=ids[0],
            campaign_id=ids[1],
            action="duplicate",
            reason="already processed (same message received before)",
            duplicate=True,
        )
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _stored_bounces(session: Session, ids: list[int]) -> dict[int, Any]:
    """The stored bounces a chunk's duplicates repeat, by id."""
    rows: dict[int, Any] = {}
    for part in _chunks(ids):
        for row in session.execute(
            select(
                BounceMessage.id,
                BounceMessage.kind,
                BounceMessage.recipient,
                BounceMessage.status,
                BounceMessage.diagnostic,
                BounceMessage.delivery_id,
                BounceMessage.campaign_id,
            ).where(BounceMessage.id.in_(part))
        ):
            rows[row.id] = row
    return rows


class _Writer:
    """Acts on a decided chunk: the state it reads is loaded once, changed in memory in the
    messages' order (so message n sees what messages < n did), then written with one
    multi-row statement per table."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.now = utcnow()
        self.events: list[dict[str, Any]] = []
        self.delivery_updates: dict[int, dict[str, Any]] = {}
        self.subscriber_status: dict[int, str] = {}
        self.unsubscribe_ids: set[int] = set()
        self.new_suppressions: list[dict[str, Any]] = []
        self.bounce_links: list[tuple[dict[str, Any], _Item]] = []

    # -- loading -------------------------------------------------------------------------
    def _load(self, items: list[_Item]) -> None:
        """What the chunk's decisions need, in a few IN queries (not one per message)."""
        acting = [i for i in items if i.tied and i.recipient]
        keys = sorted({canonical_email(i.recipient) for i in acting})
        self._load_subscribers(acting, keys)
        self._load_suppressions(keys)
        self._load_open_subscriptions(acting)
        self._load_soft_counts(acting)

    def _load_subscribers(self, acting: list[_Item], keys: list[str]) -> None:
        """Subscribers of the chunk's addresses (any spelling), and complainers by id."""
        self.subscribers: dict[int, dict[str, Any]] = {}
        self.subscribers_of: dict[str, list[dict[str, Any]]] = {}
        columns = (Subscriber.id, Subscriber.email, Subscriber.email_key, Subscriber.openid)
        wanted_ids = {i.subscriber_id for i in acting if i.kind == "complaint" and i.subscriber_id}
        for part in _chunks(keys):
            for row in self.session.execute(
                select(*columns, Subscriber.status)
                .where(Subscriber.email_key.in_(part))
                .order_by(Subscriber.id)
            ):
                sub = self.subscribers.setdefault(row.id, dict(row._mapping))
                self.subscribers_of.setdefault(row.email_key, []).append(sub)
        for part in _chunks(sorted(wanted_ids - set(self.subscribers))):
            for row in self.session.execute(
                select(*columns, Subscriber.status).where(Subscriber.id.in_(part))
            ):
                self.subscribers[row.id] = dict(row._mapping)

    def _load_suppressions(self, keys: list[str]) -> None:
        """Suppressions of the chunk's addresses and of their subscribers' other addresses."""
        other_keys = {s["email_key"] for s in self.subscribers.values() if s["email_key"]}
        openids = sorted({s["openid"] for s in self.subscribers.values() if s["openid"]})
        self.suppressions: dict[str, dict[str, Any]] = {}
        self.suppressed_openids: set[str] = set()
        columns_s = (
            Suppression.id,
            Suppression.email_key,
            Suppression.openid,
            Suppression.reason,
            Suppression.bounce_id,
        )
        for part in _chunks(sorted(set(keys) | other_keys)):
            for row in self.session.execute(
                select(*columns_s).where(Suppression.email_key.in_(part)).order_by(Suppression.id)
            ):
                self.suppressions.setdefault(row.email_key, dict(row._mapping))
        for part in _chunks(openids):
            self.suppressed_openids.update(
                self.session.scalars(select(Suppression.openid).where(Suppression.openid.in_(part)))
            )

    def _load_open_subscriptions(self, acting: list[_Item]) -> None:
        """Complainers with a subscription still to leave."""
        complained = sorted({i.subscriber_id for i in acting if i.kind == "complaint"} - {None})
        self.with_subscriptions: set[int] = set()
        for part in _chunks(complained):
            self.with_subscriptions.update(
                self.session.scalars(
                    select(Subscription.subscriber_id)
                    .where(
                        Subscription.subscriber_id.in_(part),
                        Subscription.status != SubscriptionStatus.UNSUBSCRIBED,
                    )
                    .distinct()
                )
            )

    def _load_soft_counts(self, acting: list[_Item]) -> None:
        """Soft bounces already counted per address within the soft-bounce window."""
        soft = sorted({i.recipient for i in acting if i.kind == "soft"})
        since = self.now - timedelta(days=max(self.settings.soft_bounce_days, 1))
        self.soft_counts: dict[str, int] = {}
        for part in _chunks(soft):
            for recipient, count in self.session.execute(
                select(BounceMessage.recipient, func.count())
                .where(
                    BounceMessage.recipient.in_(part),
                    BounceMessage.kind == "soft",
                    BounceMessage.received_at >= since,
                    BounceMessage.delivery_id.is_not(None)
                    | BounceMessage.subscriber_id.is_not(None),
                )
                .group_by(BounceMessage.recipient)
            ):
                self.soft_counts[recipient] = int(count)

    # -- acting, in memory -----------------------------------------------------------------
    def _act(self, item: _Item) -> str:
        delivery = item.match.delivery
        source = item.inbound.source
        if item.kind == "hard":
            if delivery is not None and delivery["status"] == DeliveryStatus.SENT:
                delivery["status"] = DeliveryStatus.BOUNCED.value
                diagnostic = item.result.diagnostic
                self.delivery_updates[delivery["id"]] = {
                    "b_id": delivery["id"],
                    "status": DeliveryStatus.BOUNCED.value,
                    "last_code": _basic_code(diagnostic),
                    "last_text": (diagnostic or item.result.status or "")[:1000],
                }
            self._suppress(item, SuppressionReason.BOUNCED, f"bounce:{source}")
            return "suppressed"
        if item.kind == "soft":
            count = self.soft_counts.get(item.recipient, 0) + 1  # this message counts too
            self.soft_counts[item.recipient] = count
            if count >= max(self.settings.soft_bounce_limit, 1):
                self._suppress(item, SuppressionReason.BOUNCED, "soft_bounces")
                return "suppressed"
            return "counted"
        if item.kind == "complaint":
            if item.subscriber_id is not None and item.subscriber_id in self.subscribers:
                self._unsubscribe(item)
            self._suppress(item, SuppressionReason.COMPLAINED, f"complaint:{source}")
            return "unsubscribed"
        return "none"

    def _unsubscribe(self, item: _Item) -> None:
        """`subscribers.service.unsubscribe(session, id, None, source="complaint")`."""
        sub = self.subscribers[item.subscriber_id]
        changed = sub["id"] in self.with_subscriptions
        if changed:
            self.with_subscriptions.discard(sub["id"])
            self.unsubscribe_ids.add(sub["id"])
        if sub["status"] == SubscriberStatus.ACTIVE:
            self._set_status(sub, SubscriberStatus.UNSUBSCRIBED.value)
            changed = True
        if changed:
            self.events.append(
                events.event_row(
                    EventKind.UNSUBSCRIBED,
                    channel=Channel.EMAIL,
                    subscriber_id=sub["id"],
                    campaign_id=_campaign_of(item),
                    data={"source": "complaint", "scope": "all"},
                )
            )

    def _set_status(self, sub: dict[str, Any], status: str) -> None:
        sub["status"] = status
        self.subscriber_status[sub["id"]] = status

    def _suppress(self, item: _Item, reason: str, source: str) -> None:
        """`subscribers.service.suppress(email=recipient, ...)`, then the suppression points at
        this message when it points at none yet."""
        email = (item.recipient or "").strip()
        key = canonical_email(email)
        suppression = self.suppressions.get(key)
        existing = suppression is not None
        if suppression is None:
            suppression = {
                "email": email,
                "email_key": key,
                "openid": None,
                "reason": str(reason),
                "source": source[:64],
                "created_at": self.now,
                "note": "",
                "bounce_id": None,
            }
            self.suppressions[key] = suppression
            self.new_suppressions.append(suppression)
        from dispatch.subscribers.service import STATUS_FOR_REASON

        status = STATUS_FOR_REASON.get(suppression["reason"], SubscriberStatus.BLOCKLISTED).value
        subscribers = self.subscribers_of.get(key, [])
        for sub in subscribers:
            if suppression["reason"] == SuppressionReason.BOUNCED and self._reachable_elsewhere(
                sub, key
            ):
                continue
            if sub["status"] != status:
                self._set_status(sub, status)
        if not existing:
            self.events.append(
                events.event_row(
                    EventKind.SUPPRESSED,
                    channel=Channel.EMAIL,
                    subscriber_id=subscribers[0]["id"] if subscribers else None,
                    campaign_id=_campaign_of(item),
                    delivery_id=_delivery_of(item),
                    data={"reason": reason, "source": source[:64]},
                )
            )
        if suppression["bounce_id"] is None:
            suppression["bounce_id"] = item  # replaced by the row's id once it is inserted
            self.bounce_links.append((suppression, item))

    def _reachable_elsewhere(self, sub: dict[str, Any], key: str) -> bool:
        if sub["email"] and sub["email_key"] != key and sub["email_key"] not in self.suppressions:
            return True
        return bool(sub["openid"]) and sub["openid"] not in self.suppressed_openids

    # -- writing -----------------------------------------------------------------------------
    def write(self, items: list[_Item]) -> None:
        if not items:
            return
        self._load(items)
        rows = []
        bounce_events: list[tuple[int, _Item]] = []  # (place among the events, message)
        for item in items:
            if item.tied and item.recipient:
                item.action = self._act(item)
            rows.append(self._bounce_row(item))
            bounce_events.append((len(self.events), item))
            self.events.append({})  # its place: the bounce's id is known after the insert
        table = BounceMessage.__table__
        ids = self.session.scalars(
            insert(table).returning(table.c.id, sort_by_parameter_order=True), rows
        ).all()
        for item, bounce_id in zip(items, ids, strict=True):
            item.bounce_id = bounce_id
        for position, item in bounce_events:
            self.events[position] = self._bounce_event(item)
        self._write_state()
        for item in items:
            log.info(
                "bounce.recorded",
                bounce_id=item.bounce_id,
                kind=item.kind,
                source=item.inbound.source,
                campaign_id=_campaign_of(item),
                delivery_id=_delivery_of(item),
                status=item.result.status,
                action=item.action,
            )

    def _bounce_row(self, item: _Item) -> dict[str, Any]:
        compressed, truncated = _compress(self.settings, item.inbound.raw)
        result = item.result
        return {
            "digest": item.digest,
            "source": item.inbound.source,
            "received_at": self.now,
            "kind": item.kind,
            "recipient": item.recipient,
            "status": result.status,
            "diagnostic": (result.diagnostic or "")[:2000],
            "reporting_mta": (result.reporting_mta or "")[:255] or None,
            "original_message_id": (result.original_message_id or "")[:255] or None,
            "campaign_id": _campaign_of(item),
            "delivery_id": _delivery_of(item),
            "subscriber_id": item.subscriber_id,
            "action": item.action,
            "reason": item.reason or f"matched by {item.match.how}",
            "raw": compressed,
            "raw_size": len(item.inbound.raw),
            "raw_truncated": truncated,
        }

    def _bounce_event(self, item: _Item) -> dict[str, Any]:
        return events.event_row(
            EVENT_FOR_KIND[item.kind],
            channel=Channel.EMAIL,
            campaign_id=_campaign_of(item),
            delivery_id=_delivery_of(item),
            subscriber_id=item.subscriber_id,
            data={
                "bounce_id": item.bounce_id,
                "recipient": item.recipient,
                "status": item.result.status,
                "diagnostic": (item.result.diagnostic or "")[:300],
                "source": item.inbound.source,
                "matched_by": item.match.how,
                "action": item.action,
                **({"reason": item.reason} if item.reason else {}),
            },
        )

    def _write_state(self) -> None:
        session = self.session
        for suppression, item in self.bounce_links:
            suppression["bounce_id"] = item.bounce_id
        if self.new_suppressions:
            session.execute(insert(Suppression.__table__), self.new_suppressions)
        linked = [s for s, _ in self.bounce_links if "id" in s]
        if linked:
            table = Suppression.__table__
            session.execute(
                update(table)
                .where(table.c.id == bindparam("s_id"), table.c.bounce_id.is_(None))
                .values(bounce_id=bindparam("s_bounce")),
                [{"s_id": s["id"], "s_bounce": s["bounce_id"]} for s in linked],
            )
        if self.delivery_updates:
            table = Delivery.__table__
            session.execute(
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("status"),
                    last_code=bindparam("last_code"),
                    last_text=bindparam("last_text"),
                    updated_at=self.now,
                ),
                list(self.delivery_updates.values()),
            )
        if self.subscriber_status:
            table = Subscriber.__table__
            session.execute(
                update(table)
                .where(table.c.id == bindparam("s_id"))
                .values(status=bindparam("s_status")),
                [{"s_id": k, "s_status": v} for k, v in self.subscriber_status.items()],
            )
        if self.unsubscribe_ids:
            table = Subscription.__table__
            session.execute(
                update(table)
                .where(
                    table.c.subscriber_id.in_(sorted(self.unsubscribe_ids)),
                    table.c.status != SubscriptionStatus.UNSUBSCRIBED,
                )
                .values(status=SubscriptionStatus.UNSUBSCRIBED.value, unsubscribed_at=self.now)
            )
        events.insert_rows(session, self.events)
        # objects the caller holds for rows written here read them again
        for obj in list(session.identity_map.values()):
            if isinstance(obj, (Delivery, Subscriber, Suppression, Subscription)):
                session.expire(obj)


def _campaign_of(item: _Item) -> int | None:
    return item.match.delivery["campaign_id"] if item.match.delivery is not None else None


def _delivery_of(item: _Item) -> int | None:
    return item.match.delivery["id"] if item.match.delivery is not None else None


def _basic_code(text: str | None) -> int | None:
    for token in (text or "").replace("-", " ").split():
        if len(token) == 3 and token.isdigit() and token[0] in "45":
            return int(token)
    return None


def campaign_bounce_counts(session: Session, campaign_id: int) -> dict[str, int]:
    """Hard, soft, complaint counts of one campaign (distinct deliveries)."""
    rows = session.execute(
        select(BounceMessage.kind, func.count(func.distinct(BounceMessage.delivery_id)))
        .where(BounceMessage.campaign_id == campaign_id, BounceMessage.delivery_id.is_not(None))
        .group_by(BounceMessage.kind)
    ).all()
    counts = {"hard": 0, "soft": 0, "complaint": 0}
    for kind, count in rows:
        if kind in counts:
            counts[kind] = int(count)
    return counts


def campaign_bounce_rates(session: Session, campaign: Campaign) -> dict[str, Any]:
    """Counts and rates over the campaign's sent messages (the guard of issue 16 reads these
    too)."""
    counts = campaign_bounce_counts(session, campaign.id)
    sent = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.campaign_id == campaign.id,
            Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.BOUNCED)),
        )
    )
    sent = int(sent or 0)
    rate = {k: (round(v / sent, 4) if sent else 0.0) for k, v in counts.items()}
    return {"sent": sent, "counts": counts, "rates": rate}
