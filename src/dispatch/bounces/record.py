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

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.bounces.parse import BounceResult, parse_bounce
from dispatch.canonical import canonical_email
from dispatch.config import Settings
from dispatch.log import get_logger
from dispatch.models import utcnow
from dispatch.models.bounce import BounceMessage
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.subscriber import Subscriber
from dispatch.tokens import TokenError, bounce_token_in, verify_bounce_token
from dispatch.vocabulary import BounceKind, DeliveryStatus, EventKind, SuppressionReason

__all__ = ["EVENT_FOR_KIND", "Recorded", "process_message", "record_result"]

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
    digest = digest_of(raw)
    if not dry_run:
        seen = session.scalar(select(BounceMessage.id).where(BounceMessage.digest == digest))
        if seen is not None:
            return _duplicate(session, seen)
    result = parse_bounce(raw, envelope_to=envelope_to, own_addresses=own_addresses(settings))
    return record_result(
        session, settings, result, raw=raw, source=source, digest=digest, dry_run=dry_run
    )


def _duplicate(session: Session, bounce_id: int) -> Recorded:
    row = session.get(BounceMessage, bounce_id)
    assert row is not None
    return Recorded(
        bounce_id=row.id,
        kind=row.kind,
        recipient=row.recipient,
        status=row.status,
        diagnostic=row.diagnostic,
        delivery_id=row.delivery_id,
        campaign_id=row.campaign_id,
        action="duplicate",
        reason="already processed (same message received before)",
        duplicate=True,
    )


@dataclass
class _Match:
    delivery: Delivery | None = None
    transactional_subscriber: int | None = None
    how: str = ""
    forged: bool = False


def _match(session: Session, settings: Settings, result: BounceResult) -> _Match:
    for candidate in result.verp_candidates:
        token = bounce_token_in(settings, candidate)
        if token is None:
            continue
        try:
            claim = verify_bounce_token(settings, token)
        except TokenError:
            return _Match(forged=True, how="forged VERP token")
        if claim.kind == "t" and claim.campaign_id == 0:
            return _Match(transactional_subscriber=claim.ref_id or None, how="VERP (transactional)")
        delivery = session.get(Delivery, claim.ref_id)
        if delivery is None or delivery.campaign_id != claim.campaign_id:
            return _Match(how="VERP token names no delivery")
        return _Match(delivery=delivery, how="VERP token")
    message_id = (result.original_message_id or "").strip().strip("<>")
    domain = settings.from_address.rpartition("@")[2].lower()
    if message_id.startswith("d") and message_id.lower().endswith("@" + domain):
        local = message_id.rpartition("@")[0]
        head, _, campaign = local.partition(".c")
        if head[1:].isdigit() and campaign.isdigit():
            delivery = session.get(Delivery, int(head[1:]))
            if (
                delivery is not None
                and delivery.campaign_id == int(campaign)
                and (result.recipient is None or (delivery.email or "").lower() == result.recipient)
            ):
                return _Match(delivery=delivery, how="Message-ID")
    if result.recipient:
        delivery = session.scalars(
            select(Delivery)
            .where(
                func.lower(Delivery.email) == result.recipient,
                Delivery.status.in_((DeliveryStatus.SENT, DeliveryStatus.BOUNCED)),
            )
            .order_by(Delivery.sent_at.desc().nulls_last(), Delivery.id.desc())
            .limit(1)
        ).first()
        if delivery is not None:
            return _Match(delivery=delivery, how="address")
    return _Match(how="no delivery matches")


def _compress(settings: Settings, raw: bytes) -> tuple[bytes, bool]:
    cap = max(int(settings.bounce_raw_max_bytes), 1024)
    truncated = len(raw) > cap
    return zlib.compress(raw[:cap], 6), truncated


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
    """Match, act and store. The caller commits (one message, one transaction)."""
    match = _match(session, settings, result)
    delivery = match.delivery
    kind = result.kind
    reason = result.reason
    recipient = result.recipient
    if match.forged:
        kind, reason = "unknown", "forged or altered VERP token: ignored"
        delivery = None
    elif delivery is not None and delivery.email:
        recipient = delivery.email.lower()  # the address we sent to, whatever the DSN says
    if recipient and recipient in own_addresses(settings):
        kind, reason = "unknown", "the reported address is our own: ignored"
        delivery = None
    subscriber_id = delivery.subscriber_id if delivery is not None else None
    if subscriber_id is None and match.transactional_subscriber:
        subscriber_id = match.transactional_subscriber
    if subscriber_id is None and recipient and delivery is None and kind == "complaint":
        subscriber_id = session.scalar(
            select(Subscriber.id).where(Subscriber.email_key == canonical_email(recipient))
        )
    tied = delivery is not None or match.transactional_subscriber is not None
    if kind in ("hard", "soft", "complaint") and not tied and not reason:
        reason = f"{match.how}: recorded, nobody suppressed"
    action = "none"
    if not dry_run:
        compressed, truncated = _compress(settings, raw)
        row = BounceMessage(
            digest=digest or digest_of(raw),
            source=source,
            kind=kind,
            recipient=recipient,
            status=result.status,
            diagnostic=(result.diagnostic or "")[:2000],
            reporting_mta=(result.reporting_mta or "")[:255] or None,
            original_message_id=(result.original_message_id or "")[:255] or None,
            campaign_id=delivery.campaign_id if delivery is not None else None,
            delivery_id=delivery.id if delivery is not None else None,
            subscriber_id=subscriber_id,
            reason=reason or f"matched by {match.how}",
            raw=compressed,
            raw_size=len(raw),
            raw_truncated=truncated,
        )
        # the digest is unique: if the same message arrives twice at the same moment, the
        # second transaction fails here and is retried by its door (the MTA after a 451, the
        # poller on its next run), which then finds the digest and only reports a duplicate
        session.add(row)
        session.flush()
        if tied and recipient:
            action = _act(session, settings, kind, recipient, subscriber_id, delivery, row, result)
        row.action = action
        events.record(
            session,
            EVENT_FOR_KIND[kind],
            channel="email",
            campaign_id=row.campaign_id,
            delivery_id=row.delivery_id,
            subscriber_id=subscriber_id,
            data={
                "bounce_id": row.id,
                "recipient": recipient,
                "status": result.status,
                "diagnostic": (result.diagnostic or "")[:300],
                "source": source,
                "matched_by": match.how,
                "action": action,
                **({"reason": reason} if reason else {}),
            },
        )
        session.flush()
        log.info(
            "bounce.recorded",
            bounce_id=row.id,
            kind=kind,
            source=source,
            campaign_id=row.campaign_id,
            delivery_id=row.delivery_id,
            status=result.status,
            action=action,
        )
        bounce_id: int | None = row.id
    else:
        bounce_id = None
    return Recorded(
        bounce_id=bounce_id,
        kind=kind,
        recipient=recipient,
        status=result.status,
        diagnostic=result.diagnostic,
        delivery_id=delivery.id if delivery is not None else None,
        campaign_id=delivery.campaign_id if delivery is not None else None,
        action=action,
        reason=reason,
    )


def _act(
    session: Session,
    settings: Settings,
    kind: str,
    recipient: str,
    subscriber_id: int | None,
    delivery: Delivery | None,
    row: BounceMessage,
    result: BounceResult,
) -> str:
    from dispatch.subscribers import service

    campaign_id = delivery.campaign_id if delivery is not None else None
    delivery_id = delivery.id if delivery is not None else None
    if kind == "hard":
        if delivery is not None and delivery.status == DeliveryStatus.SENT:
            delivery.status = DeliveryStatus.BOUNCED
            delivery.last_code = _basic_code(result.diagnostic)
            delivery.last_text = (result.diagnostic or result.status or "")[:1000]
            delivery.updated_at = utcnow()
        _suppress(
            session,
            service,
            recipient,
            SuppressionReason.BOUNCED,
            f"bounce:{row.source}",
            row,
            campaign_id,
            delivery_id,
        )
        return "suppressed"
    if kind == "soft":
        since = utcnow() - timedelta(days=max(settings.soft_bounce_days, 1))
        count = session.scalar(
            select(func.count())
            .select_from(BounceMessage)
            .where(
                BounceMessage.recipient == recipient,
                BounceMessage.kind == "soft",
                BounceMessage.received_at >= since,
                BounceMessage.delivery_id.is_not(None) | BounceMessage.subscriber_id.is_not(None),
            )
        )
        if count >= max(settings.soft_bounce_limit, 1):
            _suppress(
                session,
                service,
                recipient,
                SuppressionReason.BOUNCED,
                "soft_bounces",
                row,
                campaign_id,
                delivery_id,
            )
            return "suppressed"
        return "counted"
    if kind == "complaint":
        if subscriber_id is not None and session.get(Subscriber, subscriber_id) is not None:
            service.unsubscribe(
                session, subscriber_id, None, source="complaint", campaign_id=campaign_id
            )
        _suppress(
            session,
            service,
            recipient,
            SuppressionReason.COMPLAINED,
            f"complaint:{row.source}",
            row,
            campaign_id,
            delivery_id,
        )
        return "unsubscribed"
    return "none"


def _suppress(
    session: Session,
    service: Any,
    recipient: str,
    reason: str,
    source: str,
    row: BounceMessage,
    campaign_id: int | None,
    delivery_id: int | None,
) -> None:
    suppression = service.suppress(
        session,
        email=recipient,
        reason=reason,
        source=source[:64],
        campaign_id=campaign_id,
        delivery_id=delivery_id,
    )
    if suppression.bounce_id is None:
        suppression.bounce_id = row.id


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
