"""Every database read and write of the reports, in one module.

Why one module: how tracking hits and events are stored is changing (aggregation, partitions,
retention: issue 17); the report code above this module sees records (`tally.EventRec`,
`tally.DeliveryRec`), tallies and snapshots, never tables, so a storage change is a change here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import String, and_, delete, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.models import Event, Issue
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.report import ReportTally, ReportWatermark
from dispatch.models.subscriber import MailingList, Subscription
from dispatch.models.web import TrackingHit
from dispatch.reports.tally import (
    PEOPLE_KINDS,
    REPEATING_KINDS,
    REPORT_KINDS,
    Cell,
    DeliveryRec,
    EventRec,
    Prior,
)
from dispatch.vocabulary import EventKind

IN_CHUNK = 5000  # ids per IN (…) list
_KINDS = tuple(str(k) for k in REPORT_KINDS)
_REPEATING = tuple(str(k) for k in REPEATING_KINDS)


def _chunks(ids: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start : start + IN_CHUNK]


def events_after(
    session: Session, campaign_id: int, after_id: int, limit: int | None = None
) -> list[EventRec]:
    """The campaign's report events with id > after_id, in id order (at most `limit`)."""
    query = (
        select(
            Event.id,
            Event.kind,
            Event.occurred_at,
            Event.delivery_id,
            Event.subscriber_id,
            Event.data,
        )
        .where(Event.campaign_id == campaign_id, Event.id > after_id, Event.kind.in_(_KINDS))
        .order_by(Event.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return [EventRec(r[0], r[1], r[2], r[3], r[4], r[5] or {}) for r in session.execute(query)]


def deliveries(session: Session, ids: Iterable[int | None]) -> dict[int, DeliveryRec]:
    """Provider, acceptance time and subscriber of each delivery named."""
    wanted = sorted({i for i in ids if i is not None})
    found: dict[int, DeliveryRec] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(Delivery.id, Delivery.provider, Delivery.sent_at, Delivery.subscriber_id).where(
                Delivery.id.in_(chunk)
            )
        )
        for row in rows:
            found[row[0]] = DeliveryRec(row[1], row[2], row[3])
    return found


def prior(session: Session, delivery_ids: Iterable[int | None], before_id: int) -> dict[int, Prior]:
    """What each delivery had counted before event `before_id` (people metrics, click times),
    from its events of the kinds that can repeat (tally.REPEATING_KINDS)."""
    wanted = sorted({i for i in delivery_ids if i is not None})
    found: dict[int, Prior] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(Event.delivery_id, Event.kind, Event.occurred_at).where(
                Event.delivery_id.in_(chunk), Event.id < before_id, Event.kind.in_(_REPEATING)
            )
        )
        for delivery_id, kind, at in rows:
            if delivery_id is None:
                continue
            entry = found.setdefault(delivery_id, Prior())
            if kind == EventKind.CLICKED:
                entry.metrics.add("clicked")
                entry.click_times.append(at)
            else:
                entry.metrics.add(PEOPLE_KINDS[kind])
                if kind == EventKind.BOUNCE_HARD:
                    entry.metrics.add("bounced_late")
    return found


def list_resolver(
    session: Session, campaign: Campaign, subscriber_ids: Iterable[int | None]
) -> Callable[[int | None], Sequence[int]]:
    """subscriber id → the campaign's lists they are on (one list: no query at all)."""
    list_ids = [int(i) for i in campaign.list_ids or []]
    if len(list_ids) <= 1:
        return lambda _subscriber_id: list_ids
    wanted = sorted({i for i in subscriber_ids if i is not None})
    on: dict[int, list[int]] = {}
    for chunk in _chunks(wanted):
        rows = session.execute(
            select(Subscription.subscriber_id, Subscription.list_id).where(
                Subscription.subscriber_id.in_(chunk), Subscription.list_id.in_(list_ids)
            )
        )
        for subscriber_id, list_id in rows:
            on.setdefault(subscriber_id, []).append(list_id)
    return lambda subscriber_id: on.get(subscriber_id or 0, ())


# --- tallies -------------------------------------------------------------------------------


def watermark(session: Session, campaign_id: int) -> ReportWatermark | None:
    return session.get(ReportWatermark, campaign_id)


def lock_watermark(session: Session, campaign_id: int) -> int:
    """The campaign's watermark (0 when none), its row locked until the caller commits, so two
    refreshes of one campaign take turns (PostgreSQL; SQLite writes one at a time anyway)."""
    query = select(ReportWatermark.event_id).where(ReportWatermark.campaign_id == campaign_id)
    found = session.scalar(query.with_for_update())
    if found is not None:
        return int(found)
    try:
        with session.begin_nested():
            session.add(ReportWatermark(campaign_id=campaign_id, event_id=0))
    except IntegrityError:  # another refresh made it first
        pass
    return int(session.scalar(query.with_for_update()) or 0)


def add_tallies(
    session: Session, campaign_id: int, cells: Mapping[Cell, int], through_id: int
) -> None:
    """Add `cells` to the campaign's tallies and move its watermark to `through_id`, in the
    caller's transaction (so a crash adds nothing twice)."""
    table = ReportTally.__table__
    keys = [(dim, key[:128], metric) for dim, key, metric in cells]
    existing: set[tuple[str, str, str]] = set()
    for dim in {k[0] for k in keys}:
        rows = session.execute(
            select(table.c.dim, table.c.key, table.c.metric).where(
                table.c.campaign_id == campaign_id, table.c.dim == dim
            )
        )
        existing.update((r[0], r[1], r[2]) for r in rows)
    new = []
    for (dim, key, metric), value in cells.items():
        cut = (dim, key[:128], metric)
        if cut in existing:
            session.execute(
                update(table)
                .where(
                    and_(
                        table.c.campaign_id == campaign_id,
                        table.c.dim == cut[0],
                        table.c.key == cut[1],
                        table.c.metric == cut[2],
                    )
                )
                .values(value=table.c.value + value)
            )
        else:
            existing.add(cut)
            new.append(
                {
                    "campaign_id": campaign_id,
                    "dim": dim,
                    "key": cut[1],
                    "metric": metric,
                    "value": value,
                }
            )
    if new:
        session.execute(table.insert(), new)
    _move_watermark(session, campaign_id, through_id)


def _move_watermark(session: Session, campaign_id: int, through_id: int) -> None:
    mark = session.get(ReportWatermark, campaign_id)
    if mark is None:
        session.add(ReportWatermark(campaign_id=campaign_id, event_id=through_id))
    else:
        mark.event_id = through_id
        mark.refreshed_at = datetime.now(mark.refreshed_at.tzinfo)
    session.flush()


def tallies(session: Session, campaign_ids: Sequence[int]) -> dict[Cell, int]:
    """The stored cells of these campaigns, summed."""
    table = ReportTally.__table__
    rows = session.execute(
        select(table.c.dim, table.c.key, table.c.metric, func.sum(table.c.value))
        .where(table.c.campaign_id.in_(list(campaign_ids)))
        .group_by(table.c.dim, table.c.key, table.c.metric)
    )
    return {(r[0], r[1], r[2]): int(r[3]) for r in rows}


def snapshot_hits(session: Session, campaign_id: int, at: datetime) -> None:
    """Replace the campaign's `hits` cells with tracking_hits' current totals per link
    (-1 = the open pixel): how many times, and by how many deliveries. Not once the campaign's
    hit counters were rolled into daily counts (dispatch.rollup): the last snapshot stays."""
    from dispatch.models import CampaignRollup

    if session.get(CampaignRollup, campaign_id) is not None:
        return
    table = ReportTally.__table__
    rows = session.execute(
        select(TrackingHit.link_index, func.sum(TrackingHit.count), func.count())
        .where(TrackingHit.campaign_id == campaign_id)
        .group_by(TrackingHit.link_index)
    ).all()
    session.execute(delete(table).where(table.c.campaign_id == campaign_id, table.c.dim == "hits"))
    values = [
        {
            "campaign_id": campaign_id,
            "dim": "hits",
            "key": str(link),
            "metric": metric,
            "value": int(v),
        }
        for link, hits, deliveries_ in rows
        for metric, v in (("hits", hits or 0), ("deliveries", deliveries_))
    ]
    if values:
        session.execute(table.insert(), values)
    mark = session.get(ReportWatermark, campaign_id)
    if mark is None:
        mark = ReportWatermark(campaign_id=campaign_id, event_id=0)
        session.add(mark)
    mark.hits_at = at
    session.flush()


# --- what the report shows beside the counts ---------------------------------------------------


def campaign(session: Session, campaign_id: int) -> Campaign | None:
    return session.get(Campaign, campaign_id)


def issue(session: Session, issue_id: int | None) -> Issue | None:
    return session.get(Issue, issue_id) if issue_id is not None else None


def issue_campaigns(session: Session, issue_id: int, channel: str | None = None) -> list[Campaign]:
    """The real (not test) campaigns of an issue, oldest first."""
    query = select(Campaign).where(Campaign.issue_id == issue_id, Campaign.is_test.is_(False))
    if channel is not None:
        query = query.where(Campaign.channel == channel)
    return list(session.scalars(query.order_by(Campaign.id)))


def list_names(session: Session, ids: Iterable[int]) -> dict[int, str]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    rows = session.execute(
        select(MailingList.id, MailingList.name).where(MailingList.id.in_(wanted))
    )
    return {int(r[0]): str(r[1]) for r in rows}


def recent_campaigns(session: Session, since: datetime) -> list[int]:
    """Real campaigns still running or started since `since` (the periodic rollup's list)."""
    query = select(Campaign.id).where(
        Campaign.is_test.is_(False),
        Campaign.started_at.is_not(None),
        (Campaign.finished_at.is_(None)) | (Campaign.finished_at >= since),
    )
    return [int(i) for i in session.scalars(query.order_by(Campaign.id))]


def sent_issues(
    session: Session, list_id: int | None, limit: int
) -> list[tuple[Issue, list[Campaign]]]:
    """The last `limit` issues with a started real email campaign (to `list_id`, if given),
    newest first, each with those campaigns."""
    query = (
        select(Campaign)
        .where(
            Campaign.issue_id.is_not(None),
            Campaign.is_test.is_(False),
            Campaign.channel == "email",
            Campaign.started_at.is_not(None),
        )
        .order_by(Campaign.started_at.desc(), Campaign.id.desc())
    )
    by_issue: dict[int, list[Campaign]] = {}
    for found in session.scalars(query):
        if list_id is not None and list_id not in [int(i) for i in found.list_ids or []]:
            continue
        if found.issue_id not in by_issue and len(by_issue) >= limit:
            continue
        by_issue.setdefault(int(found.issue_id or 0), []).append(found)
    return [(session.get_one(Issue, issue_id), rows) for issue_id, rows in by_issue.items()]


def _month(session: Session, column: Any) -> Any:
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m", column)
    return func.to_char(func.timezone(literal("UTC", String), column), "YYYY-MM")


def joins_and_leaves(
    session: Session, list_id: int | None, now: datetime, months: int
) -> list[dict[str, Any]]:
    """Per month (UTC, the last `months` up to now): subscriptions confirmed and left."""
    year, month = now.year, now.month
    keys = []
    for _ in range(months):
        keys.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    keys.reverse()
    since = datetime(int(keys[0][:4]), int(keys[0][5:]), 1, tzinfo=now.tzinfo)
    counts: dict[str, dict[str, int]] = {k: {"joined": 0, "left": 0} for k in keys}
    for name, column in (
        ("joined", Subscription.confirmed_at),
        ("left", Subscription.unsubscribed_at),
    ):
        month_of = _month(session, column)
        query = select(month_of, func.count()).where(column >= since).group_by(month_of)
        if list_id is not None:
            query = query.where(Subscription.list_id == list_id)
        for key, n in session.execute(query):
            if key in counts:
                counts[key][name] = int(n)
    return [{"month": k, **v, "net": v["joined"] - v["left"]} for k, v in counts.items()]


def all_lists(session: Session) -> dict[int, str]:
    rows = session.execute(select(MailingList.id, MailingList.name).order_by(MailingList.id))
    return {int(r[0]): str(r[1]) for r in rows}
