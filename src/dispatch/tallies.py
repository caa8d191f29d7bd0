"""A closed campaign's figures, counted once and stored (models.Tally), not on every view.

Why: the campaign page, its stats and progress and the deliverability page count a
campaign's deliveries and events; at a million recipients that is seconds of database work per
view. Once a campaign is closed (finished, cancelled, failed) its figures change only when
something happens to it later, and each such change leaves a trace that one key probe finds:
a delivery row's `updated_at` (late bounces, retries), the campaign row's `updated_at`
(a retry reopening it) or an event newer than the stored watermark (opens, clicks, bounces,
complaints, and the events without a campaign of PEOPLE_KINDS: unsubscribes, erasures,
merges). A stored tally is used only when none of these exists, so what is shown is what
counting now would give; otherwise the figures are counted again and stored. A running
campaign is always counted live.

Two safety nets for writes that commit late (a transaction that took its timestamp or event id
before the tally was counted but committed after): the probes look `MARGIN` before the count,
and a tally older than `MAX_AGE` is counted again whatever the probes say.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatch.models import Event, utcnow
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.tally import LIST_KIND, Tally
from dispatch.vocabulary import CampaignStatus, EventKind

CLOSED = (CampaignStatus.FINISHED, CampaignStatus.CANCELLED, CampaignStatus.FAILED)
MARGIN = timedelta(seconds=60)
MAX_AGE = timedelta(hours=1)
# events without a campaign that change a campaign's figures: an unsubscribe (its stats count
# them), an erasure (the person's events are deleted), a merge (their events change owner);
# a signup or a confirmation does not, so a busy subscribe form does not void every tally
PEOPLE_KINDS = (EventKind.UNSUBSCRIBED, EventKind.DELETED, EventKind.MERGED)


def _encode(value: Any) -> Any:
    """JSON-safe copy: datetimes become {"$dt": iso} (the figures carry times)."""
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$dt"}:
            return datetime.fromisoformat(value["$dt"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def storable(campaign: Campaign, now: datetime | None = None) -> bool:
    """Closed, and not changed in the last MARGIN (its last rows are committed)."""
    now = now or utcnow()
    return campaign.status in CLOSED and campaign.updated_at < now - MARGIN


def still_valid(session: Session, campaign: Campaign, tally: Tally) -> bool:
    """Nothing happened to the campaign since `tally` was counted (three key probes)."""
    now = utcnow()
    if now - tally.computed_at > MAX_AGE or not storable(campaign, now):
        return False
    since = tally.computed_at - MARGIN
    if campaign.updated_at > since:
        return False
    changed = session.scalar(
        select(Delivery.id)
        .where(Delivery.campaign_id == campaign.id, Delivery.updated_at > since)
        .limit(1)
    )
    if changed is not None:
        return False
    newer = session.scalar(
        select(Event.id)
        .where(
            Event.id > tally.event_watermark,
            or_(
                Event.campaign_id == campaign.id,
                and_(Event.campaign_id.is_(None), Event.kind.in_(PEOPLE_KINDS)),
            ),
        )
        .limit(1)
    )
    return newer is None


def figures(
    session: Session, kind: str, campaign: Campaign, count: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """`count()`'s figures for `campaign`, from the stored tally while it is still valid."""
    if not storable(campaign):
        return count()
    stored = session.get(Tally, (kind, campaign.id))
    if stored is not None and still_valid(session, campaign, stored):
        return _decode(stored.data)
    # the watermark and the time are taken before counting: whatever commits while counting
    # is then newer than both and voids the tally at the next read
    watermark = session.scalar(select(func.max(Event.id))) or 0
    counted_at = utcnow()
    found = count()
    _store(session, stored, (kind, campaign.id), _encode(found), int(watermark), counted_at)
    return found


def _store(
    session: Session,
    stored: Tally | None,
    key: tuple[str, int],
    data: Any,
    watermark: int,
    at: datetime,
) -> None:
    """Write the tally inside a savepoint of the caller's transaction (the web's request
    session commits when the route returns); a concurrent view that stored it first wins."""
    try:
        with session.begin_nested():
            if stored is None:
                stored = Tally(kind=key[0], ref_id=key[1])
                session.add(stored)
            stored.data, stored.event_watermark, stored.computed_at = data, watermark, at
    except IntegrityError:
        pass


# -- lists: member counts by status, voided by any write to the subscriptions -----------------
#
# A list's counts change through a dozen paths (signup, import, unsubscribe, bounce, merge,
# erasure, WeChat followers …). Instead of each path keeping a counter, every connection notes
# when it writes `subscriptions` (or deletes subscribers or lists, which cascade) and, as it
# commits, deletes the stored list tallies in the same transaction. A reader stores a tally in
# two steps: an empty row committed first, then the counts written only if that row is still
# there; a write committed in between has deleted it, so its count is never kept.

LIST_MAX_AGE = timedelta(minutes=10)


def list_counts(
    session: Session, list_id: int, count: Callable[[Session], dict[str, int]]
) -> dict[str, int]:
    """A list's member counts by status (`count(session)`), stored until the subscriptions
    change. For reads only: the counting runs in a session of its own, after step 1."""
    stored = session.get(Tally, (LIST_KIND, list_id))
    if stored is not None and stored.data and utcnow() - stored.computed_at < LIST_MAX_AGE:
        return dict(stored.data)
    token = secrets.randbelow(2**62)
    with Session(session.get_bind()) as own:
        with own.begin():  # step 1: the empty row, committed before counting
            own.execute(delete(Tally).where(Tally.kind == LIST_KIND, Tally.ref_id == list_id))
            own.add(
                Tally(
                    kind=LIST_KIND,
                    ref_id=list_id,
                    data={},
                    event_watermark=token,
                    computed_at=utcnow(),
                )
            )
        with own.begin():  # a transaction (and, on SQLite, a snapshot) newer than step 1
            found = count(own)
        with own.begin():  # step 2: kept only if no write deleted the row meanwhile
            own.execute(
                update(Tally)
                .where(
                    Tally.kind == LIST_KIND,
                    Tally.ref_id == list_id,
                    Tally.event_watermark == token,
                )
                .values(data=found)
            )
    return found
