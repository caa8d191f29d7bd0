"""An import's confirmations as a transactional campaign (issue 13, item 2).

Why a campaign: importing N people into a double opt-in list with "send confirmations"
owes N emails, throttled, with a record of who got one. A confirmation campaign (channel
`confirmation`, no issue) has one Delivery per person, so the workers send it with the
usual claiming, retries and rate limits, and `dispatch campaigns list/show` and the campaign
page show its progress. Nobody is confirmed by it: only the button behind the emailed link
(POST /confirm/{token}) confirms.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery import campaigns as campaign_service
from dispatch.models import utcnow
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.subscriber import Subscriber, Subscription, Suppression
from dispatch.vocabulary import (
    CampaignStatus,
    Channel,
    DeliveryStatus,
    SubscriberStatus,
    SubscriptionStatus,
)

DEFAULT_PER_SECOND = 5.0  # confirmations per second of one import (the global limit applies too)
_CHUNK = 500  # ids per statement: well under every driver's parameter limit


def awaiting(list_ids: Sequence[int], subscriber_ids: Sequence[int]):
    """(id, email, name, locale, openid) of these people who still owe a confirmation for one of
    the lists: subscription unconfirmed, subscriber active, address present, not suppressed."""
    ids = [int(i) for i in subscriber_ids]
    return select(
        Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.locale, Subscriber.openid
    ).where(
        Subscriber.id.in_(ids),
        Subscriber.status == SubscriberStatus.ACTIVE,
        Subscriber.email.is_not(None),
        ~exists().where(Suppression.email_key == Subscriber.email_key),
        exists().where(
            and_(
                Subscription.subscriber_id == Subscriber.id,
                Subscription.list_id.in_([int(i) for i in list_ids]),
                Subscription.status == SubscriptionStatus.UNCONFIRMED,
            )
        ),
    )


def eligible_ids(session: Session, campaign: Campaign, subscriber_ids: Sequence[int]) -> set[int]:
    """Who of a claimed batch may still get the confirmation (the engine asks before sending:
    someone who confirmed or left meanwhile is skipped)."""
    query = awaiting(campaign.list_ids, subscriber_ids).with_only_columns(Subscriber.id)
    return set(session.scalars(query))


class _Nobody(Exception):
    """Nobody owes a confirmation: the campaign row is rolled back."""


def create_confirmation_campaign(
    engine: Engine,
    settings: Settings,
    list_id: int,
    subscriber_ids: Sequence[int],
    *,
    per_second: float = DEFAULT_PER_SECOND,
    source: str = "",
    queue,
) -> Campaign | None:
    """One running confirmation campaign with one pending Delivery per person who still owes
    a confirmation (in one transaction), then its batches enqueued for the workers. None when
    nobody does. `queue`: where the batches go (the CLI: the Celery queue)."""
    now = utcnow()
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            campaign = Campaign(
                issue_id=None,
                channel=Channel.CONFIRMATION.value,
                list_ids=[int(list_id)],
                dedupe_key=f"confirm:{int(list_id)}:{uuid.uuid4().hex}",
                status=CampaignStatus.DRAFT.value,
                tracking=False,
                options={"kind": "confirmation", "rate_per_second": per_second, "source": source},
            )
            session.add(campaign)
            session.flush()
            total = _add_deliveries(session, settings, campaign, subscriber_ids, now)
            if not total:
                raise _Nobody
            batches = -(-total // _batch_size(settings))
            campaign.total, campaign.batch_count = total, batches
            session.flush()
            campaign_service.transition(session, campaign, CampaignStatus.RUNNING, now=now)
    except _Nobody:
        return None
    for batch_no in range(batches):
        queue.enqueue(campaign.id, batch_no)
    return campaign


def _batch_size(settings: Settings) -> int:
    return max(int(settings.batch_size), 1)


def _add_deliveries(
    session: Session,
    settings: Settings,
    campaign: Campaign,
    subscriber_ids: Sequence[int],
    now: datetime,
) -> int:
    """One pending delivery per person still owing a confirmation, in batches of the
    configured size; returns how many."""
    total = 0
    size = _batch_size(settings)
    # the sweep re-enqueues a pending batch only after this "queued until" time passes
    queued_until = now + timedelta(seconds=settings.lease_seconds)
    ids = list(dict.fromkeys(int(i) for i in subscriber_ids))
    for start in range(0, len(ids), _CHUNK):
        people = session.execute(
            awaiting(campaign.list_ids, ids[start : start + _CHUNK]).order_by(Subscriber.id)
        ).all()
        rows = [
            {
                "campaign_id": campaign.id,
                "subscriber_id": p.id,
                "email": p.email,
                "openid": None,
                "name": p.name or "",
                "locale": p.locale or settings.locale,
                "batch_no": (total + n) // size,
                "provider": None,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "lease_until": queued_until,
                "updated_at": now,
            }
            for n, p in enumerate(people)
        ]
        if rows:
            session.execute(insert(Delivery.__table__), rows)
        total += len(rows)
    return total
