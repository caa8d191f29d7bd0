"""deliver_batch and the sweep: claim → check → rate-limit → send → record, crash-safe.

Why this shape:
- The claim, the skip of people who left meanwhile, and the recording of results are each
  one short transaction; nothing is held open while the channel talks to the network.
- A batch is sent in chunks over one channel connection. Between chunks the engine re-checks
  that the campaign is still running (pause/cancel take effect within a chunk) and takes
  sends from the rate limiter; rows it does not get to go back to pending.
- A result is written only if this claim still owns the row (status 'sending' and our claim
  token), and its event goes in the same transaction, so states and events always agree and a
  row already sent is never sent again by this engine.
- Long waits (retry backoff, a full hourly window) live in the database (next_attempt_at);
  the periodic sweep turns due rows back into queued batches, so no Celery ETA is needed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, bindparam, select, update
from sqlalchemy.orm import Session

from dispatch import events
from dispatch.channels import channel_traits, make_channel, prepare_channel
from dispatch.channels.base import CampaignContext, Channel, Recipient, SendResult
from dispatch.config import Settings
from dispatch.delivery import campaigns as campaign_service
from dispatch.delivery import reputation
from dispatch.delivery.claiming import (
    ClaimedRow,
    claim_batch,
    due_batches,
    expire_leases,
    new_claim_token,
    release,
    renew,
)
from dispatch.delivery.queue import BatchQueue
from dispatch.delivery.ratelimit import Limit, RateLimiter, make_rate_limiter
from dispatch.delivery.retry import next_attempt
from dispatch.log import get_logger
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.vocabulary import (
    CampaignStatus,
    DeliveryStatus,
    EventKind,
    Outcome,
    SuppressionReason,
)

log = get_logger(__name__)

D = Delivery.__table__
C = Campaign.__table__
CHUNK_SIZE = 25  # messages per recording transaction (also: pause/rate checks, lease heartbeat);
# a channel overrides it with its traits' chunk_size (WeChat sends a whole batch in one call)
MAX_RATE_SLEEP = 5.0  # longer waits for the limiter give the rows back with a due time

ChannelFactory = Callable[[str, Settings, CampaignContext], Channel]


@dataclass
class BatchReport:
    campaign_id: int
    batch_no: int
    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    released: int = 0
    stopped: str = ""  # why the batch stopped early (campaign not running, paused, rate)

    def add(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


def campaign_limits(settings: Settings, campaign: Campaign) -> list[Limit]:
    """The global limit from settings, the campaign's own from its options."""
    options = campaign.options or {}
    limits = [
        Limit("global", settings.rate_per_second, settings.rate_per_hour),
        Limit(
            f"campaign:{campaign.id}",
            float(options.get("rate_per_second") or 0),
            float(options.get("rate_per_hour") or 0),
        ),
    ]
    return [lim for lim in limits if lim.per_second > 0 or lim.per_hour > 0]


def _eligible(session: Session, campaign: Campaign, rows: Sequence[ClaimedRow]) -> set[int]:
    """Subscriber ids among `rows` that may still receive this campaign (not suppressed or
    unsubscribed since fan-out), by the subscribers area's own definition of eligible."""
    from dispatch.subscribers import service as subscribers

    ids = [r.subscriber_id for r in rows]
    if campaign.is_test:
        address = channel_traits(campaign.channel).address
        return {
            r.subscriber_id
            for r in rows
            if not subscribers.is_suppressed(session, **{address: getattr(r, address)})
        }
    eligible = (
        subscribers.recipients_select(
            list(campaign.list_ids), campaign.channel, (campaign.options or {}).get("channels")
        )
        .order_by(None)
        .subquery()
    )
    return set(session.scalars(select(eligible.c.id).where(eligible.c.id.in_(ids))))


def _skip(
    session: Session, campaign: Campaign, rows: Sequence[ClaimedRow], token: str, now: datetime
) -> None:
    ids = [r.id for r in rows]
    session.execute(
        update(D)
        .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENDING, D.c.claimed_by == token)
        .values(
            status=DeliveryStatus.SKIPPED.value,
            lease_until=None,
            last_text="suppressed or unsubscribed after fan-out",
            updated_at=now,
        )
    )
    for r in rows:
        events.record(
            session,
            EventKind.SKIPPED,
            channel=campaign.channel,
            campaign_id=campaign.id,
            delivery_id=r.id,
            subscriber_id=r.subscriber_id,
            data={"reason": "not eligible any more"},
            at=now,
        )


@dataclass
class _Outcome:
    status: DeliveryStatus
    attempts_inc: int
    next_attempt_at: datetime | None
    event: EventKind | None


def _decide(settings: Settings, row: ClaimedRow, result: SendResult, now: datetime) -> _Outcome:
    if result.outcome == Outcome.SENT:
        return _Outcome(DeliveryStatus.SENT, 1, None, EventKind.SENT)
    if result.outcome == Outcome.DEFERRED:
        due = next_attempt(settings, row.attempts + 1, now)
        if due is None:
            return _Outcome(DeliveryStatus.FAILED, 1, None, EventKind.FAILED)
        return _Outcome(DeliveryStatus.DEFERRED, 1, due, EventKind.DEFERRED)
    if result.outcome == Outcome.BOUNCED:
        return _Outcome(DeliveryStatus.BOUNCED, 1, None, EventKind.BOUNCED)
    if result.outcome == Outcome.PAUSED:  # given back: no attempt counted, no event
        return _Outcome(DeliveryStatus.PENDING, 0, None, None)
    return _Outcome(DeliveryStatus.FAILED, 1, None, EventKind.FAILED)


@dataclass(frozen=True)
class ChunkOutcome:
    pause_reason: str | None
    running: bool  # the campaign's status after this chunk (pause/cancel stop the batch)
    still_ours: set[int]  # of the rows still to send, those whose lease we extended


def record_results(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    rows: Sequence[ClaimedRow],
    results: Sequence[SendResult],
    token: str,
    report: BatchReport,
    renew_ids: Sequence[int] = (),
) -> ChunkOutcome:
    """Apply the channel's results in one transaction, and in the same one extend the lease on
    the rows still to send (`renew_ids`) and read the campaign's status: one commit per chunk."""
    now = utcnow()
    by_id = {r.delivery_id: r for r in results}
    params, decided = [], []
    pause_reason: str | None = None
    for row in rows:
        result = by_id.get(row.id) or SendResult(
            row.id, Outcome.DEFERRED, text="no result from the channel"
        )
        outcome = _decide(settings, row, result, now)
        if result.outcome == Outcome.PAUSED and pause_reason is None:
            pause_reason = (f"{result.code} " if result.code else "") + (
                result.text or "refused by the server"
            )
        text = result.text
        if result.outcome == Outcome.DEFERRED and outcome.status == DeliveryStatus.FAILED:
            text = f"gave up after {row.attempts + 1} attempts: {result.text}"
        params.append(
            {
                "b_id": row.id,
                "b_token": token,
                "b_status": outcome.status.value,
                "b_inc": outcome.attempts_inc,
                "b_next": outcome.next_attempt_at,
                "b_code": result.code,
                "b_text": (text or "")[:2000] or None,
                "b_message_id": result.message_id,
                "b_external_id": result.external_id,
                "b_sent_at": now if outcome.status == DeliveryStatus.SENT else None,
                "b_now": now,
            }
        )
        decided.append((row, result, outcome))
    stmt = (
        update(D)
        .where(
            D.c.id == bindparam("b_id"),
            D.c.status == DeliveryStatus.SENDING,
            D.c.claimed_by == bindparam("b_token"),
        )
        .values(
            status=bindparam("b_status"),
            attempts=D.c.attempts + bindparam("b_inc"),
            next_attempt_at=bindparam("b_next"),
            lease_until=None,
            last_code=bindparam("b_code"),
            last_text=bindparam("b_text"),
            message_id=bindparam("b_message_id"),
            external_id=bindparam("b_external_id"),
            sent_at=bindparam("b_sent_at"),
            updated_at=bindparam("b_now"),
        )
    )
    from dispatch.subscribers import service as subscribers

    with Session(engine, expire_on_commit=False) as session, session.begin():
        if params:
            session.connection().execute(stmt, params)
        ids = [row.id for row in rows]
        owned = set(
            session.scalars(
                select(D.c.id).where(
                    D.c.id.in_(ids), D.c.claimed_by == token, D.c.status != DeliveryStatus.SENDING
                )
            )
        )
        event_rows: list[dict] = []
        for row, result, outcome in decided:
            if row.id not in owned:  # our lease expired and someone else owns the row now
                log.warning("delivery.lost_claim", campaign_id=campaign.id, delivery_id=row.id)
                continue
            paused = outcome.status == DeliveryStatus.PENDING
            report.add(Outcome.PAUSED.value if paused else outcome.status.value)
            if outcome.event is None:
                continue
            data: dict = {"code": result.code, "attempt": row.attempts + 1}
            if result.text:
                data["text"] = result.text[:500]
            if result.message_id:
                data["message_id"] = result.message_id
            if result.external_id:
                data["external_id"] = result.external_id
            if outcome.next_attempt_at:
                data["retry_at"] = outcome.next_attempt_at.isoformat()
            event_rows.append(
                events.event_row(
                    outcome.event,
                    channel=campaign.channel,
                    campaign_id=campaign.id,
                    delivery_id=row.id,
                    subscriber_id=row.subscriber_id,
                    data=data,
                    at=now,
                )
            )
            if outcome.status == DeliveryStatus.BOUNCED:
                address = channel_traits(campaign.channel).address
                if getattr(row, address):
                    subscribers.suppress(
                        session,
                        **{address: getattr(row, address)},
                        reason=SuppressionReason.BOUNCED,
                        source=f"campaign:{campaign.id}",
                        campaign_id=campaign.id,
                        delivery_id=row.id,
                    )
        events.insert_rows(session, event_rows)  # one multi-row INSERT
        if pause_reason:
            current = campaign_service.get(session, campaign.id)
            if current.status == CampaignStatus.RUNNING:
                campaign_service.transition(
                    session, current, CampaignStatus.PAUSED, reason=pause_reason, now=now
                )
                log.warning(
                    "campaign.paused_by_server", campaign_id=campaign.id, reason=pause_reason
                )
        ours = (
            renew(session, list(renew_ids), token, settings.lease_seconds, now)
            if renew_ids
            else set()
        )
        status = session.scalar(select(C.c.status).where(C.c.id == campaign.id))
    return ChunkOutcome(pause_reason, status == CampaignStatus.RUNNING, ours)


def _release(engine: Engine, ids: list[int], token: str, report: BatchReport, **kwargs) -> None:
    if not ids:
        return
    with Session(engine) as session, session.begin():
        report.released += release(session, ids, token, **kwargs)


def _prepare_channel(
    channel_factory: ChannelFactory | None, settings: Settings, campaign: Campaign, batch_no: int
) -> None:
    """Slow per-campaign channel work (rendering) before any row is claimed, so a lease only
    has to cover sending (see dispatch.channels.prepare_channel)."""
    if channel_factory is not None:  # a caller-supplied channel prepares itself
        return
    try:
        prepare_channel(campaign.channel, settings, _context(campaign, batch_no))
    except Exception as exc:  # noqa: BLE001 - the send itself reports the problem properly
        log.warning(
            "batch.prepare_failed", campaign_id=campaign.id, error=f"{type(exc).__name__}: {exc}"
        )


def _chunk_size(channel: Channel, kind: str) -> int:
    """Recipients per send() call: what the channel declares (WeChat: a whole batch, one
    mass send per call, quota-limited), else CHUNK_SIZE."""
    traits = getattr(channel, "traits", None) or channel_traits(kind)
    return int(traits.chunk_size or CHUNK_SIZE)


def _context(campaign: Campaign, batch_no: int) -> CampaignContext:
    return CampaignContext(
        campaign_id=campaign.id,
        issue_id=campaign.issue_id,
        batch_no=batch_no,
        list_ids=tuple(campaign.list_ids),
        # tracking only where the channel can report opens or clicks
        tracking=campaign.tracking and channel_traits(campaign.channel).tracks,
        is_test=campaign.is_test,
    )


def deliver_batch(
    engine: Engine,
    settings: Settings,
    campaign_id: int,
    batch_no: int,
    *,
    worker: str | None = None,
    channel_factory: ChannelFactory | None = None,
    limiter: RateLimiter | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> BatchReport:
    """Send the due rows of one batch. Idempotent: rows already done are never claimed."""
    report = BatchReport(campaign_id, batch_no)
    token = new_claim_token(worker)
    with Session(engine, expire_on_commit=False) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status != CampaignStatus.RUNNING:
            report.stopped = f"campaign {campaign.status if campaign else 'missing'}"
            return report
    _prepare_channel(channel_factory, settings, campaign, batch_no)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        rows = claim_batch(session, campaign_id, batch_no, token, settings.lease_seconds)
    report.claimed = len(rows)
    if not rows:
        with Session(engine) as session, session.begin():
            campaign_service.finish_if_done(session, campaign_id)
        return report
    log.info(
        "batch.claimed", campaign_id=campaign_id, batch_no=batch_no, rows=len(rows), claim=token
    )

    with Session(engine, expire_on_commit=False) as session, session.begin():
        eligible = _eligible(session, campaign, rows)
        gone = [r for r in rows if r.subscriber_id not in eligible]
        if gone:
            _skip(session, campaign, gone, token, utcnow())
            report.skipped = len(gone)
    rows = [r for r in rows if r.subscriber_id in eligible]

    context = _context(campaign, batch_no)
    factory = channel_factory or make_channel
    limits = campaign_limits(settings, campaign)
    limiter = limiter if limiter is not None else (make_rate_limiter(settings) if limits else None)
    channel: Channel | None = None
    opened = False
    remaining = list(rows)
    chunk_index = 0
    try:
        try:
            channel = factory(campaign.channel, settings, context) if remaining else None
        except Exception as exc:  # noqa: BLE001 - a channel that cannot even be built fails the campaign
            reason = f"cannot build the {campaign.channel} channel: {type(exc).__name__}: {exc}"
            _release(engine, [r.id for r in remaining], token, report)
            remaining = []
            with Session(engine) as session, session.begin():
                current = campaign_service.get(session, campaign_id)
                if current.status == CampaignStatus.RUNNING:
                    campaign_service.transition(
                        session, current, CampaignStatus.FAILED, reason=reason
                    )
            log.error(
                "campaign.channel_failed", campaign_id=campaign_id, batch_no=batch_no, error=reason
            )
            report.stopped = "channel failed"
        chunk_size = _chunk_size(channel, campaign.channel) if channel is not None else 0
        while remaining:
            wanted = min(len(remaining), chunk_size)
            if limits and limiter is not None:
                try:
                    grant = limiter.acquire(limits, wanted)
                except Exception as exc:  # noqa: BLE001 - limiter store down: give the rows back
                    log.warning(
                        "batch.rate_limiter_unavailable", campaign_id=campaign_id, error=str(exc)
                    )
                    report.stopped = "rate limiter unavailable"
                    break
                if grant.granted == 0:
                    if grant.wait_seconds > MAX_RATE_SLEEP:
                        due = utcnow() + timedelta(seconds=grant.wait_seconds)
                        _release(
                            engine, [r.id for r in remaining], token, report, next_attempt_at=due
                        )
                        remaining = []
                        report.stopped = "rate limit window full"
                        break
                    sleep(grant.wait_seconds)
                    continue
                wanted = grant.granted
            chunk, remaining = remaining[:wanted], remaining[wanted:]
            recipients = [
                Recipient(r.id, r.subscriber_id, r.email, r.name, r.locale, r.openid) for r in chunk
            ]
            try:
                if not opened:
                    channel.open()
                    opened = True
                results = channel.send(recipients)
            except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the rows
                log.error(
                    "batch.channel_error",
                    campaign_id=campaign_id,
                    batch_no=batch_no,
                    error=f"{type(exc).__name__}: {exc}",
                )
                results = [
                    SendResult(r.id, Outcome.DEFERRED, text=f"{type(exc).__name__}: {exc}")
                    for r in chunk
                ]
                if opened:
                    try:
                        channel.close()
                    except Exception:  # noqa: BLE001
                        pass
                    opened = False
            # results, plus a heartbeat: the lease only has to outlast one chunk
            outcome = record_results(
                engine,
                settings,
                campaign,
                chunk,
                results,
                token,
                report,
                renew_ids=[r.id for r in remaining],
            )
            if len(outcome.still_ours) < len(remaining):  # lost to an expired lease: never send
                log.warning(
                    "batch.lease_lost",
                    campaign_id=campaign_id,
                    batch_no=batch_no,
                    rows=len(remaining) - len(outcome.still_ours),
                )
                remaining = [r for r in remaining if r.id in outcome.still_ours]
            if outcome.pause_reason:
                report.stopped = "paused by the server"
                break
            # the reputation guard: hard bounces and complaints over the recent window pause
            # the campaign (its own transaction, after this chunk's results are committed)
            had_bounce = any(r.outcome == Outcome.BOUNCED for r in results)
            if (
                outcome.running
                and not campaign.is_test
                and reputation.due(chunk_index, had_bounce)
                and reputation.guard(engine, settings, campaign_id)
            ):
                report.stopped = "paused by the reputation guard"
                break
            chunk_index += 1
            if not outcome.running:
                report.stopped = "campaign not running"
                break
    finally:
        if opened and channel is not None:
            try:
                channel.close()
            except Exception:  # noqa: BLE001
                pass
        # whatever we claimed but did not get to goes straight back to pending
        _release(engine, [r.id for r in remaining], token, report)
    with Session(engine) as session, session.begin():
        campaign_service.finish_if_done(session, campaign_id)
    log.info(
        "batch.done",
        campaign_id=campaign_id,
        batch_no=batch_no,
        claimed=report.claimed,
        skipped=report.skipped,
        released=report.released,
        stopped=report.stopped,
        **report.outcomes,
    )
    return report


@dataclass
class SweepReport:
    started: list[int] = field(default_factory=list)
    expired: list[tuple[int, int]] = field(default_factory=list)
    enqueued: list[tuple[int, int]] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)


def sweep(
    engine: Engine, settings: Settings, queue: BatchQueue, now: datetime | None = None
) -> SweepReport:
    """The periodic housekeeping (Celery beat): start due scheduled campaigns, return expired
    claims to pending, enqueue batches with due rows, and finish campaigns with nothing left."""
    now = now or utcnow()
    report = SweepReport()
    with Session(engine) as session:
        due_ids = list(
            session.scalars(
                select(Campaign.id).where(
                    Campaign.status == CampaignStatus.SCHEDULED, Campaign.scheduled_at <= now
                )
            )
        )
    for campaign_id in due_ids:
        try:
            campaign_service.start(engine, settings, campaign_id, queue, now=now)
            report.started.append(campaign_id)
        except campaign_service.CampaignError as exc:  # another sweep started it first
            log.info("sweep.start_skipped", campaign_id=campaign_id, reason=str(exc))
    with Session(engine) as session, session.begin():
        report.expired = expire_leases(session, settings.max_attempts, now)
    with Session(engine) as session, session.begin():
        report.enqueued = due_batches(session, settings.lease_seconds, now)
    for campaign_id, batch_no in report.enqueued:
        queue.enqueue(campaign_id, batch_no)
    with Session(engine) as session:
        running = list(
            session.scalars(select(Campaign.id).where(Campaign.status == CampaignStatus.RUNNING))
        )
    for campaign_id in running:
        with Session(engine) as session, session.begin():
            if campaign_service.finish_if_done(session, campaign_id):
                report.finished.append(campaign_id)
    if report.started or report.expired or report.enqueued or report.finished:
        log.info(
            "sweep.done",
            started=report.started,
            expired=len(report.expired),
            enqueued=len(report.enqueued),
            finished=report.finished,
        )
    return report


def drain(
    engine: Engine,
    settings: Settings,
    queue,
    *,
    channel_factory: ChannelFactory | None = None,
    limiter: RateLimiter | None = None,
    max_rounds: int = 10_000,
) -> int:
    """Run queued batches in this process until the queue is empty (tests, tiny setups).

    `queue` is a ListQueue; returns how many batch runs were made.
    """
    runs = 0
    while queue.items and runs < max_rounds:
        campaign_id, batch_no = queue.items.pop(0)
        deliver_batch(
            engine,
            settings,
            campaign_id,
            batch_no,
            channel_factory=channel_factory,
            limiter=limiter,
        )
        runs += 1
    return runs
