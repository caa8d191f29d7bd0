"""A campaign's channel prepared in idle workers while its fan-out runs (issue 17 item 1).

Why: before its first batch a worker renders the issue (parse, Jinja2, premailer, the parts
encoded once: ~0.25 s of CPU, cached per process by content). Started by `campaigns.start`,
that render came only after the fan-out transaction, the ANALYZE and the enqueueing, while
every worker sat idle. Now `start` (and `resume`) first ask each live worker to prepare the
campaign (one task each; a worker takes one task at a time), so the render overlaps the
fan-out and the first batch finds the source cached. Purely a head start: a batch prepares
its channel itself all the same (engine._prepare_channel), and nothing here ever fails a
start or a task.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from dispatch.channels import channel_traits, prepare_channel
from dispatch.channels.base import CampaignContext
from dispatch.config import Settings
from dispatch.delivery.heartbeat import stale_after
from dispatch.log import get_logger
from dispatch.models import Campaign, utcnow
from dispatch.models.heartbeat import ProcessHeartbeat
from dispatch.vocabulary import ProcessKind

log = get_logger(__name__)


def campaign_context(campaign: Campaign, batch_no: int, relay=None) -> CampaignContext:
    """What a channel knows of the campaign it sends (the engine's and the prepare task's)."""
    return CampaignContext(
        campaign_id=campaign.id,
        issue_id=campaign.issue_id,
        batch_no=batch_no,
        list_ids=tuple(campaign.list_ids),
        # tracking only where the channel can report opens or clicks
        tracking=campaign.tracking and channel_traits(campaign.channel).tracks,
        is_test=campaign.is_test,
        relay=relay,
    )


def prepare_campaign(engine: Engine, settings: Settings, campaign_id: int) -> bool:
    """Prepare the campaign's channel in this process (the source lands in its cache).

    Never raises: False, logged, when the campaign is gone or its issue cannot be rendered;
    its batches then report the problem properly (as failures of the campaign)."""
    try:
        with Session(engine, expire_on_commit=False) as session:
            campaign = session.get(Campaign, campaign_id)
        if campaign is None:
            log.warning("campaign.prepare_skipped", campaign_id=campaign_id, reason="not found")
            return False
        # the first batch's context; the cache is keyed by content, not by batch
        prepare_channel(campaign.channel, settings, campaign_context(campaign, 0))
    except Exception as exc:  # noqa: BLE001 - a head start only: the batches report it
        log.warning(
            "campaign.prepare_failed",
            campaign_id=campaign_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return False
    return True


def live_workers(engine: Engine, settings: Settings, now: datetime | None = None) -> int:
    """Worker processes seen within heartbeat.stale_after. A prefork worker's parent beats
    too (one more than its task-running children): one extra prepare task, a cache hit."""
    since = (now or utcnow()) - timedelta(seconds=stale_after(settings))
    with Session(engine) as session:
        count = session.scalar(
            select(func.count())
            .select_from(ProcessHeartbeat)
            .where(ProcessHeartbeat.kind == str(ProcessKind.WORKER))
            .where(ProcessHeartbeat.seen_at >= since)
        )
    return int(count or 0)


def ask_workers_to_prepare(engine: Engine, settings: Settings, campaign_id: int, queue) -> int:
    """Queue one prepare task per live worker, at least one, when `queue` can (a `prepare`
    method: CeleryQueue; ListQueue cannot). Returns how many were queued.

    At least one: a worker whose first heartbeat is not written yet (it beats once started)
    or was missed still gets its head start; with no worker at all, the first one to come
    takes it and renders the source its first batch would have rendered (the same work).
    Never raises: a broker or database fault here is left to the start that follows."""
    prepare = getattr(queue, "prepare", None)
    if prepare is None:
        return 0
    try:
        workers = max(1, live_workers(engine, settings))
        for _ in range(workers):
            prepare(campaign_id)
    except Exception as exc:  # noqa: BLE001 - a head start only: never stops the start
        log.warning(
            "campaign.prepare_not_queued",
            campaign_id=campaign_id,
            error=f"{type(exc).__name__}: {exc}",
        )
        return 0
    return workers
