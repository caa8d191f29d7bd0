"""Campaign statistics for the admin: counts, rates and opens/clicks over time.

Definitions (also in docs/web.md): `sent` = deliveries accepted by the next hop at least once
(status sent, or bounced after having been sent); `delivered` = sent and not bounced;
`opened`/`clicked` = deliveries with at least one open / click (the first is the event);
`unsubscribed` = recipients of the campaign who unsubscribed after it started. Rates are over
`sent` (delivered, bounced) or `delivered` (opened, clicked, unsubscribed).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Integer, func, or_, select
from sqlalchemy.orm import Session, aliased

from dispatch.models import Event
from dispatch.models.delivery import Campaign, Delivery
from dispatch.vocabulary import CampaignStatus, DeliveryStatus, EventKind

BUCKET_CHOICES = (300, 900, 3600, 6 * 3600, 86400)  # seconds; the smallest giving ≤ 48 buckets


def _rate(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _delivery_counts(session: Session, campaign: Campaign) -> tuple[dict[str, int], int]:
    """Deliveries by status, and how many bounced after the relay had accepted them."""
    by_status = dict(
        session.execute(
            select(Delivery.status, func.count())
            .where(Delivery.campaign_id == campaign.id)
            .group_by(Delivery.status)
        ).all()
    )
    bounced_after_send = (
        session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign.id,
                Delivery.status == DeliveryStatus.BOUNCED,
                Delivery.sent_at.is_not(None),
            )
        )
        or 0
    )
    return by_status, int(bounced_after_send)


def _engagement(session: Session, campaign: Campaign, total: int) -> tuple[int, int, int]:
    """People who opened, clicked (first hits per delivery) and unsubscribed since the start."""
    from dispatch import rollup

    kinds = dict(
        session.execute(
            select(Event.kind, func.count(func.distinct(Event.delivery_id)))
            .where(
                Event.campaign_id == campaign.id,
                Event.kind.in_((EventKind.OPENED, EventKind.CLICKED)),
            )
            .group_by(Event.kind)
        ).all()
    )
    recipients = select(Delivery.subscriber_id).where(Delivery.campaign_id == campaign.id)
    unsub_query = select(func.count(func.distinct(Event.subscriber_id))).where(
        Event.kind == EventKind.UNSUBSCRIBED,
        Event.subscriber_id.in_(recipients),
        or_(Event.campaign_id.is_(None), Event.campaign_id == campaign.id),
    )
    if campaign.started_at is not None:
        unsub_query = unsub_query.where(Event.occurred_at >= campaign.started_at)
    unsubscribed = int(session.scalar(unsub_query) or 0) if total else 0
    if rollup.is_rolled_up(session, campaign.id):  # past the retention: from the daily counts
        opened, clicked = rollup.rolled_engagement(session, campaign.id)
        return opened, clicked, unsubscribed
    return int(kinds.get(EventKind.OPENED, 0)), int(kinds.get(EventKind.CLICKED, 0)), unsubscribed


def campaign_stats(session: Session, campaign: Campaign) -> dict[str, Any]:
    """The figures below, from the stored tally while the closed campaign is unchanged."""
    from dispatch import tallies

    def grow(stats: dict[str, Any], after: int, upto: int) -> dict[str, Any] | None:
        return grow_stats(session, campaign, stats, after, upto)

    if campaign.status in LIVE:
        cid = campaign.id  # (the count may run in a thread, after this session closed)
        found = tallies.live(session, "stats", campaign, lambda s: count_stats_of(s, cid))
        return {**found, "status": campaign.status}
    return tallies.figures(
        session, "stats", campaign, lambda: count_stats(session, campaign), grow=grow
    )


# a campaign whose rows the workers are writing (or may again soon): counted every few seconds
# by dispatch.tallies.live, not on each view or poll
LIVE = (CampaignStatus.RUNNING, CampaignStatus.PAUSED)
# what progress shows from the campaign row itself: always current, even from a stored count
CAMPAIGN_FIELDS = (
    "status",
    "paused_reason",
    "waiting_reason",
    "waiting_until",
    "scheduled_at",
    "started_at",
    "finished_at",
)


def count_stats_of(session: Session, campaign_id: int) -> dict[str, Any]:
    """count_stats by the campaign's id (for a count in a session of its own)."""
    campaign = session.get(Campaign, campaign_id)
    assert campaign is not None
    return count_stats(session, campaign)


def grow_stats(
    session: Session, campaign: Campaign, stats: dict[str, Any], after: int, upto: int
) -> dict[str, Any] | None:
    """Stored stats plus the opens and clicks with event ids in (after, upto]: the people
    who had none before and the timeline's buckets; None when the buckets would change size
    (or the campaign is rolled up): count again."""
    from dispatch import rollup

    if rollup.is_rolled_up(session, campaign.id):
        return None
    timeline = _grow_timeline(session, campaign, stats["timeline"], after, upto)
    if timeline is None:
        return None
    counts = dict(stats["counts"])
    for kind in (EventKind.OPENED, EventKind.CLICKED):
        counts[kind.value] += _new_people(session, campaign.id, kind, after, upto)
    delivered = counts["delivered"]
    rates = {
        **stats["rates"],
        "opened": _rate(counts["opened"], delivered),
        "clicked": _rate(counts["clicked"], delivered),
    }
    return {**stats, "counts": counts, "rates": rates, "timeline": timeline}


def _new_people(session: Session, campaign_id: int, kind: str, after: int, upto: int) -> int:
    """Deliveries with a `kind` event in (after, upto] and none up to `after`."""
    earlier = aliased(Event)
    seen = (
        select(earlier.id)
        .where(
            earlier.delivery_id == Event.delivery_id,
            earlier.campaign_id == campaign_id,
            earlier.kind == kind,
            earlier.id <= after,
        )
        .exists()
    )
    found = session.scalar(
        select(func.count(func.distinct(Event.delivery_id))).where(
            Event.campaign_id == campaign_id,
            Event.kind == kind,
            Event.id > after,
            Event.id <= upto,
            ~seen,
        )
    )
    return int(found or 0)


def _grow_timeline(
    session: Session, campaign: Campaign, timeline: dict[str, Any], after: int, upto: int
) -> dict[str, Any] | None:
    """The buckets plus the new first hits, when their size and origin stay what a count
    now would choose: the new hits come after the start, and the span from the first
    bucket's start to the last hit still fits 48 buckets of this size."""
    buckets, size = timeline["buckets"], timeline["bucket_seconds"]
    if not buckets or campaign.started_at is None:
        return None
    tracked = (
        Event.campaign_id == campaign.id,
        Event.kind.in_((EventKind.OPENED, EventKind.CLICKED)),
        Event.id > after,
        Event.id <= upto,
    )
    first, final = session.execute(
        select(func.min(Event.occurred_at), func.max(Event.occurred_at)).where(*tracked)
    ).one()
    if first is None:
        return timeline
    origin: datetime = buckets[0]["start"]
    span = (final - origin).total_seconds()
    if (
        first < campaign.started_at
        or next((b for b in BUCKET_CHOICES if span / b <= 48), BUCKET_CHOICES[-1]) > size
    ):
        return None
    index = _bucket_index(session, Event.occurred_at, int(origin.timestamp()), size)
    grown = [dict(b) for b in buckets]
    for kind, at, n in session.execute(
        select(Event.kind, index, func.count()).where(*tracked).group_by(Event.kind, index)
    ):
        while len(grown) <= int(at):
            grown.append(
                {"start": origin + timedelta(seconds=len(grown) * size), "opened": 0, "clicked": 0}
            )
        grown[int(at)][kind] += int(n)
    return {"bucket_seconds": size, "buckets": grown}


def campaign_progress(session: Session, campaign: Campaign) -> dict[str, Any]:
    """delivery.campaigns.progress, from the stored tally while the closed campaign is
    unchanged; the providers' throttle state (Redis, shared by all campaigns) stays live."""
    from dispatch import tallies
    from dispatch.delivery import campaigns

    def count() -> dict[str, Any]:
        return campaigns.progress(session, campaign.id)

    if campaign.status in LIVE:
        cid = campaign.id  # (the count may run in a thread, after this session closed)
        found = tallies.live(session, "progress", campaign, lambda s: campaigns.progress(s, cid))
        found.update({name: getattr(campaign, name) for name in CAMPAIGN_FIELDS})
    else:
        found = tallies.figures(session, "progress", campaign, count, ignore_tracking=True)
    _live_throttle(found.get("providers") or [])
    return found


def _live_throttle(providers: list[dict[str, Any]]) -> None:
    """Each provider's current throttle state, as provider_progress adds it."""
    import time

    from dispatch.config import get_settings
    from dispatch.delivery.throttle import provider_throttle

    if not providers:
        return
    try:
        settings = get_settings()
        throttle = provider_throttle(settings)
        now = time.time()
        for entry in providers:
            state = throttle.state(entry["provider"])
            entry["throttle"] = state.as_dict(now, settings.throttle_recovery_seconds)
    except Exception:  # noqa: BLE001 - Redis down or no settings: the counts still show
        for entry in providers:
            entry.pop("throttle", None)


def count_stats(session: Session, campaign: Campaign) -> dict[str, Any]:
    by_status, bounced_after_send = _delivery_counts(session, campaign)
    total = int(sum(by_status.values()))
    delivered = int(by_status.get(DeliveryStatus.SENT, 0))
    sent = delivered + bounced_after_send
    bounced = int(by_status.get(DeliveryStatus.BOUNCED, 0))
    opened, clicked, unsubscribed = _engagement(session, campaign, total)
    return {
        "campaign_id": campaign.id,
        "status": campaign.status,
        "tracking": campaign.tracking,
        "total": total,
        "counts": {
            "sent": sent,
            "delivered": delivered,
            "bounced": bounced,
            "failed": int(by_status.get(DeliveryStatus.FAILED, 0)),
            "opened": opened,
            "clicked": clicked,
            "unsubscribed": unsubscribed,
        },
        "rates": {
            "delivered": _rate(delivered, sent),
            "bounced": _rate(bounced, sent + bounced - bounced_after_send),
            "opened": _rate(opened, delivered),
            "clicked": _rate(clicked, delivered),
            "unsubscribed": _rate(unsubscribed, delivered),
        },
        "timeline": timeline(session, campaign),
    }


def timeline(session: Session, campaign: Campaign) -> dict[str, Any]:
    """First opens and clicks per time bucket since the campaign started."""
    from dispatch import rollup

    if rollup.is_rolled_up(session, campaign.id):  # past the retention: days are what is left
        return _rolled_timeline(rollup.rolled_days(session, campaign.id))
    tracked = (
        Event.campaign_id == campaign.id,
        Event.kind.in_((EventKind.OPENED, EventKind.CLICKED)),
    )
    first, final = session.execute(
        select(func.min(Event.occurred_at), func.max(Event.occurred_at)).where(*tracked)
    ).one()
    if first is None:
        return {"bucket_seconds": 3600, "buckets": []}
    start: datetime = min(campaign.started_at or first, first)
    span = (final - start).total_seconds()
    size = next((b for b in BUCKET_CHOICES if span / b <= 48), BUCKET_CHOICES[-1])
    origin = datetime.fromtimestamp(int(start.timestamp()) // size * size, tz=start.tzinfo)
    # counted per bucket by the database: a million-recipient campaign has ~500,000 first hits,
    # too many to fetch and bucket in Python on each view of its page
    index = _bucket_index(session, Event.occurred_at, int(origin.timestamp()), size)
    buckets: dict[int, dict[str, int]] = {}
    for kind, at, n in session.execute(
        select(Event.kind, index, func.count()).where(*tracked).group_by(Event.kind, index)
    ):
        bucket = buckets.setdefault(int(at), {"opened": 0, "clicked": 0})
        bucket[kind] += int(n)
    last = max(buckets)
    return {
        "bucket_seconds": size,
        "buckets": [
            {
                "start": origin + timedelta(seconds=i * size),
                **buckets.get(i, {"opened": 0, "clicked": 0}),
            }
            for i in range(last + 1)
        ],
    }


def _rolled_timeline(days: list) -> dict[str, Any]:
    """A rolled-up campaign's timeline: one bucket per UTC day (the finest detail kept)."""
    if not days:
        return {"bucket_seconds": 86400, "buckets": []}
    first = days[0][0]
    by_day = {day: (opened, clicked) for day, opened, clicked in days}
    span = (days[-1][0] - first).days
    buckets = []
    for i in range(span + 1):
        day = first + timedelta(days=i)
        opened, clicked = by_day.get(day, (0, 0))
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        buckets.append({"start": start, "opened": opened, "clicked": clicked})
    return {"bucket_seconds": 86400, "buckets": buckets}


def _bucket_index(session: Session, column: Any, origin: int, size: int) -> Any:
    """SQL: which `size`-second bucket after the Unix time `origin` a timestamp falls in."""
    if session.get_bind().dialect.name == "postgresql":
        return func.floor((func.extract("epoch", column) - origin) / size)
    return func.cast((func.cast(func.strftime("%s", column), Integer) - origin) / size, Integer)
