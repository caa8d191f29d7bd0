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
from enum import Enum
from typing import Any

from sqlalchemy import Engine, select, update
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
    expire_leases,
    new_claim_token,
    release,
    renew,
    write_results,
)
from dispatch.delivery.prepare import campaign_context as _context
from dispatch.delivery.queue import BatchQueue
from dispatch.delivery.quota import record_used
from dispatch.delivery.ratelimit import Limit, RateLimiter, make_rate_limiter
from dispatch.delivery.recovery import recover
from dispatch.delivery.retry import next_attempt
from dispatch.log import get_logger
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.vocabulary import (
    DELIVERY_CLAIMABLE,
    CampaignStatus,
    DeliveryStatus,
    EventKind,
    Outcome,
    SuppressionReason,
)
from dispatch.vocabulary import Channel as ChannelName

log = get_logger(__name__)

D = Delivery.__table__
C = Campaign.__table__
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
    spread = float(options.get("spread_hours") or 0)
    if spread > 0 and campaign.total:  # evenly over N hours: total / N hours, per second
        from dispatch.delivery.windows import spread_rate_per_hour

        per_hour = spread_rate_per_hour(campaign.total, spread)
        limits.append(Limit(f"campaign:{campaign.id}:spread", per_hour / 3600.0, 0.0))
    return [lim for lim in limits if lim.per_second > 0 or lim.per_hour > 0]


def _eligible(session: Session, campaign: Campaign, rows: Sequence[ClaimedRow]) -> set[int]:
    """Subscriber ids among `rows` that may still receive this campaign (not suppressed or
    unsubscribed since fan-out), by the subscribers area's own definition of eligible."""
    from dispatch.subscribers import service as subscribers

    ids = [r.subscriber_id for r in rows]
    if campaign.channel == ChannelName.CONFIRMATION:  # an import's confirmations: still owed?
        from dispatch.subscribers.import_confirmations import eligible_ids

        return eligible_ids(session, campaign, ids)
    if campaign.is_test:
        address = channel_traits(campaign.channel).address
        return {
            r.subscriber_id
            for r in rows
            if not subscribers.is_suppressed(session, **{address: getattr(r, address)})
        }
    channels = (campaign.options or {}).get("channels")
    return subscribers.eligible_among(
        session, ids, list(campaign.list_ids), campaign.channel, channels
    )


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
    if result.outcome == Outcome.THROTTLED:  # the provider/relay said slow down: no attempt
        due = (result.data or {}).get("retry_at") or now + timedelta(
            seconds=settings.throttle_base_seconds
        )
        attempted = (result.data or {}).get("stage") != "not_attempted"
        return _Outcome(DeliveryStatus.DEFERRED, 0, due, EventKind.THROTTLED if attempted else None)
    return _Outcome(DeliveryStatus.FAILED, 1, None, EventKind.FAILED)


@dataclass(frozen=True)
class ChunkOutcome:
    pause_reason: str | None
    running: bool  # the campaign's status after this chunk (pause/cancel stop the batch)
    # of the rows still to send, those whose lease we extended (None: not renewed this chunk)
    still_ours: set[int] | None
    # the reputation guard's first probe, when asked for: any hard bounce or complaint at all
    signals: bool | None = None


_Decided = tuple[ClaimedRow, SendResult, _Outcome]


def _pause_reason(result: SendResult) -> str:
    return (f"{result.code} " if result.code else "") + (result.text or "refused by the server")


def _decide_all(
    settings: Settings,
    rows: Sequence[ClaimedRow],
    results: Sequence[SendResult],
    token: str,
    now: datetime,
) -> tuple[list[dict[str, Any]], list[_Decided], str | None]:
    """What becomes of each row (a missing result is a deferral): the UPDATE parameters, the
    decisions, and the first server refusal that pauses the campaign."""
    by_id = {r.delivery_id: r for r in results}
    params: list[dict[str, Any]] = []
    decided: list[_Decided] = []
    pause_reason: str | None = None
    for row in rows:
        result = by_id.get(row.id) or SendResult(
            row.id, Outcome.DEFERRED, text="no result from the channel"
        )
        outcome = _decide(settings, row, result, now)
        if result.outcome == Outcome.PAUSED and pause_reason is None:
            pause_reason = _pause_reason(result)
        text = _storable(result.text)
        if result.outcome == Outcome.DEFERRED and outcome.status == DeliveryStatus.FAILED:
            text = f"gave up after {row.attempts + 1} attempts: {text}"
        params.append(
            {
                "b_id": row.id,
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
    return params, decided, pause_reason


def _storable(text: str | None) -> str:
    """A channel's result text as the database can store it: PostgreSQL text cannot hold NUL
    (a remote server's reply may carry one; the chunk's whole recording would fail)."""
    return (text or "").replace("\x00", "\ufffd")


def _event_data(row: ClaimedRow, result: SendResult, outcome: _Outcome) -> dict[str, Any]:
    data: dict[str, Any] = {"code": result.code, "attempt": row.attempts + 1}
    if result.text:
        data["text"] = _storable(result.text)[:500]
    for key in ("relay", "rule", "stage"):
        if (result.data or {}).get(key):
            data[key] = result.data[key]
    if result.message_id:
        data["message_id"] = result.message_id
    if result.external_id:
        data["external_id"] = result.external_id
    if outcome.next_attempt_at:
        data["retry_at"] = outcome.next_attempt_at.isoformat()
    return data


def _record_owned(
    session: Session,
    campaign: Campaign,
    decided: Sequence[_Decided],
    owned: set[int],
    report: BatchReport,
    now: datetime,
) -> None:
    """Events (one multi-row INSERT) and bounce suppressions for the rows this claim still
    owned when its results were written; a row lost to an expired lease is left alone."""
    from dispatch.subscribers import service as subscribers

    address = channel_traits(campaign.channel).address
    event_rows: list[dict[str, Any]] = []
    for row, result, outcome in decided:
        if row.id not in owned:  # our lease expired and someone else owns the row now
            log.warning("delivery.lost_claim", campaign_id=campaign.id, delivery_id=row.id)
            continue
        paused = outcome.status == DeliveryStatus.PENDING
        report.add(Outcome.PAUSED.value if paused else outcome.status.value)
        if outcome.event is None:
            continue
        event_rows.append(
            events.event_row(
                outcome.event,
                channel=campaign.channel,
                campaign_id=campaign.id,
                delivery_id=row.id,
                subscriber_id=row.subscriber_id,
                data=_event_data(row, result, outcome),
                at=now,
            )
        )
        if outcome.status == DeliveryStatus.BOUNCED and getattr(row, address):
            subscribers.suppress(
                session,
                **{address: getattr(row, address)},
                reason=SuppressionReason.BOUNCED,
                source=f"campaign:{campaign.id}",
                campaign_id=campaign.id,
                delivery_id=row.id,
            )
    events.insert_rows(session, event_rows)


def _clear_waiting(session: Session, campaign_id: int) -> None:
    """A message went out: the campaign is no longer held back (quota, window, relays)."""
    session.execute(
        update(C)
        .where(C.c.id == campaign_id, C.c.waiting_reason.is_not(None))
        .values(waiting_reason=None, waiting_until=None)
    )


def _pause_campaign(session: Session, campaign_id: int, reason: str, now: datetime) -> None:
    current = campaign_service.get(session, campaign_id)
    if current.status == CampaignStatus.RUNNING:
        campaign_service.transition(session, current, CampaignStatus.PAUSED, reason=reason, now=now)
        log.warning("campaign.paused_by_server", campaign_id=campaign_id, reason=reason)


def record_results(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    rows: Sequence[ClaimedRow],
    results: Sequence[SendResult],
    token: str,
    report: BatchReport,
    renew_ids: Sequence[int] | None = None,
    *,
    usage: dict[str, int] | None = None,
    now: datetime | None = None,
    probe_signals: bool = False,
) -> ChunkOutcome:
    """Apply the channel's results in one transaction, and in the same one extend the lease on
    the rows still to send (`renew_ids`) and read the campaign's status: one commit per chunk.
    `usage` (daily counter scope -> messages sent) is added to the database's daily counts in
    the same transaction, so quota and warm-up counts survive a Redis restart. With
    `probe_signals`, the reputation guard's first probe is asked in it too (a campaign
    without any bad signal needs no guard transaction of its own)."""
    now = now or utcnow()
    params, decided, pause_reason = _decide_all(settings, rows, results, token, now)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        owned = write_results(session, params, token)
        _record_owned(session, campaign, decided, owned, report, now)
        if usage:
            record_used(session, usage, settings.send_timezone, now)
        if pause_reason:
            _pause_campaign(session, campaign.id, pause_reason, now)
        ours = (
            renew(session, list(renew_ids), token, settings.lease_seconds, now)
            if renew_ids is not None
            else None
        )
        status, waiting = session.execute(
            select(C.c.status, C.c.waiting_reason).where(C.c.id == campaign.id)
        ).one()
        if waiting is not None and any(o.status == DeliveryStatus.SENT for _, _, o in decided):
            _clear_waiting(session, campaign.id)
        signals = reputation.any_signal(session, campaign) if probe_signals else None
    return ChunkOutcome(pause_reason, status == CampaignStatus.RUNNING, ours, signals)


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


def _chunk_size(settings: Settings, channel: Channel | None, kind: str) -> int:
    """Recipients per send() call and per recording transaction: what the channel declares
    (WeChat: a whole batch, one mass send per call, quota-limited), else the `chunk_size`
    setting (also how often pause/cancel and the lease are looked at)."""
    traits = getattr(channel, "traits", None) or channel_traits(kind)
    return max(1, int(traits.chunk_size or settings.chunk_size))


def _hold(
    engine: Engine,
    rows: Sequence[ClaimedRow],
    token: str,
    report: BatchReport,
    until: datetime,
    spread_seconds: float = 0.0,
) -> None:
    """Give rows back with a due time (no attempt counted), optionally spread over a span so
    held rows of one provider do not all return in the same second."""
    if not rows:
        return
    if spread_seconds <= 0:
        _release(engine, [r.id for r in rows], token, report, next_attempt_at=until)
        return
    step = spread_seconds / max(len(rows), 1)
    with Session(engine) as session, session.begin():
        for i, row in enumerate(rows):
            report.released += release(
                session, [row.id], token, next_attempt_at=until + timedelta(seconds=i * step)
            )


def _set_waiting(engine: Engine, campaign_id: int, reason: str, until: datetime) -> None:
    """Show why a running campaign is held back (quota, window, warm-up, relays down)."""
    with Session(engine) as session, session.begin():
        session.execute(
            update(C)
            .where(C.c.id == campaign_id, C.c.status == CampaignStatus.RUNNING)
            .values(waiting_reason=reason[:2000], waiting_until=until)
        )
    log.info("campaign.waiting", campaign_id=campaign_id, reason=reason, until=until.isoformat())


def _outside_window(
    engine: Engine, settings: Settings, campaign: Campaign, batch_no: int, now: datetime
) -> bool:
    """Outside the campaign's sending window: move the batch's due rows to the opening time
    (the sweep enqueues them then) without claiming anything."""
    from dispatch.delivery.windows import WindowError, campaign_window

    try:
        window = campaign_window(campaign.options, settings.send_window, settings.send_timezone)
    except WindowError as exc:  # validated at creation; a bad setting must not stop sending
        log.error("campaign.bad_window", campaign_id=campaign.id, error=str(exc))
        return False
    if window is None or window.contains(now):
        return False
    opens = window.next_open(now)
    with Session(engine) as session, session.begin():
        session.execute(
            update(D)
            .where(
                D.c.campaign_id == campaign.id,
                D.c.batch_no == batch_no,
                D.c.status.in_(DELIVERY_CLAIMABLE),
                (D.c.next_attempt_at.is_(None)) | (D.c.next_attempt_at < opens),
            )
            .values(next_attempt_at=opens, lease_until=None, updated_at=now)
        )
    _set_waiting(engine, campaign.id, window.reason(now), opens)
    return True


def _uses_relays(kind: str) -> bool:
    try:
        return bool(channel_traits(kind).relays)
    except Exception:  # noqa: BLE001 - an unknown kind fails later with a clear reason
        return False


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
    clock: Callable[[], datetime] = utcnow,
) -> BatchReport:
    """Send the due rows of one batch. Idempotent: rows already done are never claimed.

    `clock` is the engine's "now" (tests simulate the next day or a time outside a window)."""
    report = BatchReport(campaign_id, batch_no)
    token = new_claim_token(worker)
    campaign = _runnable_campaign(engine, settings, campaign_id, batch_no, report, clock)
    if campaign is None:
        return report
    _prepare_channel(channel_factory, settings, campaign, batch_no)
    rows = _claim(engine, settings, campaign, batch_no, token, report, clock)
    if not report.claimed:
        return report
    _send_claimed(
        engine,
        settings,
        campaign,
        batch_no,
        rows,
        token,
        report,
        channel_factory=channel_factory,
        limiter=limiter,
        sleep=sleep,
        clock=clock,
    )
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


def _runnable_campaign(
    engine: Engine,
    settings: Settings,
    campaign_id: int,
    batch_no: int,
    report: BatchReport,
    clock: Callable[[], datetime],
) -> Campaign | None:
    """The campaign, if it is running and inside its sending window (else why not, in
    `report.stopped`)."""
    with Session(engine, expire_on_commit=False) as session:
        campaign = session.get(Campaign, campaign_id)
        if campaign is None or campaign.status != CampaignStatus.RUNNING:
            report.stopped = f"campaign {campaign.status if campaign else 'missing'}"
            return None
    if _outside_window(engine, settings, campaign, batch_no, clock()):
        report.stopped = "outside the sending window"
        return None
    return campaign


def _claim(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    batch_no: int,
    token: str,
    report: BatchReport,
    clock: Callable[[], datetime],
) -> list[ClaimedRow]:
    """Claim the batch's due rows and, in the same transaction, skip those whose subscriber
    may no longer receive the campaign; the rows to send. None claimed finishes the campaign
    if it is done."""
    campaign_id = campaign.id
    with Session(engine, expire_on_commit=False) as session, session.begin():
        claimed = claim_batch(
            session, campaign_id, batch_no, token, settings.lease_seconds, now=clock()
        )
        rows = _drop_ineligible(session, campaign, claimed, token, report, clock)
    report.claimed = len(claimed)
    if not claimed:
        with Session(engine) as session, session.begin():
            campaign_service.finish_if_done(session, campaign_id)
        return rows
    log.info(
        "batch.claimed", campaign_id=campaign_id, batch_no=batch_no, rows=len(rows), claim=token
    )
    return rows


def _drop_ineligible(
    session: Session,
    campaign: Campaign,
    rows: list[ClaimedRow],
    token: str,
    report: BatchReport,
    clock: Callable[[], datetime],
) -> list[ClaimedRow]:
    """Skip the rows whose subscriber may no longer receive the campaign; the rest."""
    if not rows:
        return rows
    eligible = _eligible(session, campaign, rows)
    gone = [r for r in rows if r.subscriber_id not in eligible]
    if gone:
        _skip(session, campaign, gone, token, clock())
        report.skipped = len(gone)
    return [r for r in rows if r.subscriber_id in eligible]


def _send_claimed(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    batch_no: int,
    rows: list[ClaimedRow],
    token: str,
    report: BatchReport,
    *,
    channel_factory: ChannelFactory | None,
    limiter: RateLimiter | None,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> None:
    """Run the chunk loop over the eligible rows; whatever it did not get to is released."""
    factory = channel_factory or make_channel
    limits = campaign_limits(settings, campaign)
    policy = None
    remaining = list(rows)
    channels: dict[str | None, Channel] = {}
    try:
        if _uses_relays(campaign.channel) and remaining:
            from dispatch.delivery.routing import SendingPolicy

            policy = SendingPolicy(engine, settings, clock=clock)
        if limiter is None and (limits or policy is not None):
            limiter = make_rate_limiter(settings)
        remaining = _send_rows(
            engine,
            settings,
            campaign,
            batch_no,
            remaining,
            token,
            report,
            factory=factory,
            channels=channels,
            limits=limits,
            limiter=limiter,
            policy=policy,
            sleep=sleep,
            clock=clock,
        )
    except _ChannelBuildError as exc:
        _release(engine, [r.id for r in remaining], token, report)
        remaining = []
        _channel_failed(engine, campaign.id, batch_no, str(exc), report)
    finally:
        _close_all(channels, policy)
        # whatever we claimed but did not get to goes straight back to pending
        _release(engine, [r.id for r in remaining], token, report)


def _channel_failed(
    engine: Engine, campaign_id: int, batch_no: int, reason: str, report: BatchReport
) -> None:
    """The channel could not be built: the running campaign fails with the reason."""
    with Session(engine) as session, session.begin():
        current = campaign_service.get(session, campaign_id)
        if current.status == CampaignStatus.RUNNING:
            campaign_service.transition(session, current, CampaignStatus.FAILED, reason=reason)
    log.error("campaign.channel_failed", campaign_id=campaign_id, batch_no=batch_no, error=reason)
    report.stopped = "channel failed"


def _close_all(channels: dict[str | None, Channel], policy) -> None:
    for channel in channels.values():
        try:
            channel.close()
        except Exception:  # noqa: BLE001
            pass
    if policy is not None:
        policy.close()


class _ChannelBuildError(RuntimeError):
    """The channel cannot even be built: the campaign fails with this reason."""


class _Flow(Enum):
    """What a step of the chunk loop tells the loop to do next."""

    GO = "go"  # on to the next step of this round
    AGAIN = "again"  # start a new round (after a wait or a re-split)
    STOP = "stop"  # stop; `remaining` holds the rows not got to (the caller releases them)


@dataclass
class _ChunkLoop:
    """The chunk loop of one batch as named steps, each round: hold the rows of providers
    backing off, choose a chunk within the rates, take the warm-up allowance, send (through
    relays, failing over), record. State between steps lives on the object."""

    engine: Engine
    settings: Settings
    campaign: Campaign
    batch_no: int
    remaining: list[ClaimedRow]
    token: str
    report: BatchReport
    factory: ChannelFactory
    channels: dict
    limits: list[Limit]
    limiter: RateLimiter | None
    policy: Any
    sleep: Callable[[float], None]
    clock: Callable[[], datetime]
    chunk_size: int = 0
    chunk_index: int = 0
    chunk: list[ClaimedRow] = field(default_factory=list)
    rest: list[ClaimedRow] = field(default_factory=list)
    results: list[SendResult] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)
    warmup_taken: int = 0
    renewed_at: datetime | None = None  # when this claim's lease was last extended

    def channel_for(self, relay) -> Channel:
        key = relay.name if relay is not None else None
        if key not in self.channels:
            # the embedded outbox relay has no URL: the channel finds the outbox itself
            context = _context(
                self.campaign, self.batch_no, relay if relay is not None and relay.url else None
            )
            try:
                channel = self.factory(self.campaign.channel, self.settings, context)
            except Exception as exc:  # noqa: BLE001 - reported as the campaign's failure
                raise _ChannelBuildError(
                    f"cannot build the {self.campaign.channel} channel: {type(exc).__name__}: {exc}"
                ) from exc
            channel.open()
            self.channels[key] = channel
        return self.channels[key]

    def run(self) -> list[ClaimedRow]:
        if not self.remaining:
            return self.remaining
        if self.policy is None:
            # build (and open) now: a channel that cannot be built fails early
            self.channel_for(None)
        probe = next(iter(self.channels.values()), None)
        self.chunk_size = _chunk_size(self.settings, probe, self.campaign.channel)
        self.renewed_at = self.clock()  # the claim just set the lease
        while self.remaining:
            if self._round() is _Flow.STOP:
                break
        return self.remaining

    def _round(self) -> _Flow:
        steps = (
            self._hold_backed_off,
            self._provider_rates,
            self._global_limits,
            self._take_warmup,
            self._send,
            self._record,
        )
        for step in steps:
            flow = step()
            if flow is not _Flow.GO:
                return flow
        return _Flow.GO

    def _give_back_until(self, wait_seconds: float, stopped: str) -> _Flow:
        """A long wait: every remaining row goes back with a due time; the batch stops."""
        due = self.clock() + timedelta(seconds=wait_seconds)
        _release(
            self.engine,
            [r.id for r in self.remaining],
            self.token,
            self.report,
            next_attempt_at=due,
        )
        self.report.stopped = stopped
        self.remaining = []
        return _Flow.STOP

    def _hold_backed_off(self) -> _Flow:
        """1. providers backing off: their rows wait for the end of the backoff."""
        policy = self.policy
        if policy is not None:
            self.remaining, held = policy.split_held(self.remaining)
            for provider, rows_held in held.items():
                until = policy.held_until(provider)
                _hold(self.engine, rows_held, self.token, self.report, until, spread_seconds=30.0)
                self.report.add("held")
            if not self.remaining:
                self.report.stopped = "providers backing off"
                return _Flow.STOP
        return _Flow.GO

    def _provider_rates(self) -> _Flow:
        """2a. provider rates (each provider's own scope); without relays, a plain chunk."""
        policy, limiter, chunk_size = self.policy, self.limiter, self.chunk_size
        candidates = self.remaining[: chunk_size * 4]
        if not (policy is not None and limiter is not None):
            self.chunk, self.rest = self.remaining[:chunk_size], self.remaining[chunk_size:]
            return _Flow.GO
        chosen: list[ClaimedRow] = []
        waits: list[float] = []
        by_provider: dict[str, list[ClaimedRow]] = {}
        for r in candidates:
            by_provider.setdefault(r.provider or "other", []).append(r)
        budget = chunk_size
        for provider, rows_p in by_provider.items():
            if budget <= 0:
                break
            if not policy.take_provider_slot(provider):
                continue  # held on the next round (split_held sees no_slot)
            limit = policy.provider_limit(provider)
            want = min(len(rows_p), budget)
            if limit is not None:
                try:
                    grant = limiter.acquire([limit], want)
                except Exception as exc:  # noqa: BLE001
                    log.warning("batch.rate_limiter_unavailable", error=str(exc))
                    self.report.stopped = "rate limiter unavailable"
                    return _Flow.STOP
                if grant.granted == 0:
                    waits.append(grant.wait_seconds)
                    continue
                want = grant.granted
            chosen.extend(rows_p[:want])
            budget -= want
        if not chosen:
            if not waits:
                return _Flow.AGAIN  # no slot for some provider: split_held holds them next round
            wait = min(waits)
            if wait > MAX_RATE_SLEEP:
                return self._give_back_until(wait, "provider rate window full")
            self.sleep(wait)
            return _Flow.AGAIN
        chosen_ids = {r.id for r in chosen}
        self.chunk = sorted(chosen, key=lambda r: r.id)
        self.rest = [r for r in self.remaining if r.id not in chosen_ids]
        return _Flow.GO

    def _global_limits(self) -> _Flow:
        """2b. the global/campaign limits."""
        limiter = self.limiter
        if self.limits and limiter is not None:
            try:
                grant = limiter.acquire(self.limits, len(self.chunk))
            except Exception as exc:  # noqa: BLE001 - limiter store down: give the rows back
                log.warning(
                    "batch.rate_limiter_unavailable", campaign_id=self.campaign.id, error=str(exc)
                )
                self.report.stopped = "rate limiter unavailable"
                return _Flow.STOP
            if grant.granted == 0:
                if grant.wait_seconds > MAX_RATE_SLEEP:
                    return self._give_back_until(grant.wait_seconds, "rate limit window full")
                self.sleep(grant.wait_seconds)
                return _Flow.AGAIN
            self.rest = self.chunk[grant.granted :] + self.rest
            self.chunk = self.chunk[: grant.granted]
        return _Flow.GO

    def _take_warmup(self) -> _Flow:
        """3. warm-up allowance of the From domain."""
        self.warmup_taken = 0
        if self.policy is not None:
            self.warmup_taken, wait = self.policy.warmup_reserve(len(self.chunk))
            if wait is not None:
                later = self.chunk[self.warmup_taken :] + self.rest
                self.chunk = self.chunk[: self.warmup_taken]
                _hold(self.engine, later, self.token, self.report, wait.until)
                _set_waiting(self.engine, self.campaign.id, wait.reason, wait.until)
                self.report.stopped = "warm-up allowance used"
                self.rest = []
                if not self.chunk:
                    self.remaining = []
                    return _Flow.STOP
        self.remaining = self.rest
        return _Flow.GO

    def _send(self) -> _Flow:
        """4. relays (quota reserved per row), send, fail over."""
        self.results = []
        self.usage = {}
        if self.policy is None:
            self.results = _send_through(
                self.channel_for(None), self.chunk, self.campaign.id, self.batch_no
            )
            return _Flow.GO
        return self._send_via_relays()

    def _send_via_relays(self) -> _Flow:
        policy = self.policy
        to_send = list(self.chunk)
        tried: set[str] = set()
        postponed: list[ClaimedRow] = []  # over a relay's own rate: back to `remaining`
        relay_waits: list[float] = []
        while to_send:
            assignment = policy.assign(to_send, exclude=tried)
            again: list[ClaimedRow] = []
            for relay_name, group in assignment.groups.items():
                again.extend(self._send_group(relay_name, group, tried, postponed, relay_waits))
            if assignment.waiting:  # no relay can take these now: they wait, no attempt
                self._not_attempted(assignment)
            to_send = again
        self._count_sent()
        self._slow_throttled_providers()
        return self._postpone(postponed, relay_waits)

    def _send_group(
        self,
        relay_name: str,
        group: list[ClaimedRow],
        tried: set[str],
        postponed: list[ClaimedRow],
        relay_waits: list[float],
    ) -> list[ClaimedRow]:
        """Send one relay's group; returns the rows to try again through another relay."""
        policy, limiter = self.policy, self.limiter
        relay_limit = policy.by_name[relay_name].limit
        if limiter is not None and (relay_limit.per_second or relay_limit.per_hour):
            grant = limiter.acquire([relay_limit], len(group))
            if grant.granted < len(group):  # the relay's own rate: later rounds
                later = group[grant.granted :]
                policy.give_back(relay_name, len(later))
                postponed.extend(later)
                relay_waits.append(grant.wait_seconds)
                group = group[: grant.granted]
            if not group:
                return []
        channel = self.channel_for(policy.by_name[relay_name])
        group_results = _send_through(channel, group, self.campaign.id, self.batch_no)
        policy.give_back(relay_name, sum(r.outcome != Outcome.SENT for r in group_results))
        self.usage[f"relay:{relay_name}"] = self.usage.get(f"relay:{relay_name}", 0) + sum(
            r.outcome == Outcome.SENT for r in group_results
        )
        retry_ids = self._relay_fault(relay_name, group_results, tried)
        self.results.extend(r for r in group_results if r.delivery_id not in retry_ids)
        if retry_ids:
            log.info(
                "relay.failover",
                campaign_id=self.campaign.id,
                relay=relay_name,
                rows=len(retry_ids),
            )
        return [r for r in group if r.id in retry_ids]

    def _relay_fault(
        self, relay_name: str, group_results: list[SendResult], tried: set[str]
    ) -> set[int]:
        """A relay fault rests the relay; the ids of rows that may go through another one."""
        from dispatch.delivery.routing import is_relay_fault, may_reroute

        faults = [r for r in group_results if is_relay_fault(r)]
        retry_ids: set[int] = set()
        if faults:
            fault = faults[0]
            rest_seconds = (
                self.settings.throttle_base_seconds if fault.outcome == Outcome.THROTTLED else None
            )
            reason = f"{fault.code or ''} {fault.text or fault.outcome}".strip()
            if self.policy.relay_failed(relay_name, reason, rest_seconds):
                tried.add(relay_name)
                closing = self.channels.pop(relay_name, None)
                if closing is not None:
                    closing.close()
                retry_ids = {r.delivery_id for r in group_results if may_reroute(r)}
        return retry_ids

    def _not_attempted(self, assignment) -> None:
        wait = assignment.wait
        assert wait is not None
        for r in assignment.waiting:
            self.results.append(
                SendResult(
                    r.id,
                    Outcome.THROTTLED,
                    text=wait.reason,
                    data={
                        "stage": "not_attempted",
                        "retry_at": wait.until,
                        "waiting": True,
                    },
                )
            )
        _set_waiting(self.engine, self.campaign.id, wait.reason, wait.until)

    def _count_sent(self) -> None:
        sent = sum(1 for r in self.results if r.outcome == Outcome.SENT)
        if self.warmup_taken:
            self.policy.warmup_give_back(self.warmup_taken - sent)
            if sent:
                from dispatch.delivery.warmup import scope

                self.usage[scope(self.policy.from_domain)] = sent

    def _slow_throttled_providers(self) -> None:
        """A provider's throttle reply slows that provider down for everyone."""
        policy, results = self.policy, self.results
        provider_of = {r.id: (r.provider or "other") for r in self.chunk}
        for result in results:
            if result.outcome == Outcome.THROTTLED and (result.data or {}).get("stage") in (
                "rcpt",
                "data",
            ):
                policy.throttled(provider_of.get(result.delivery_id, "other"), result.text)
        for index, result in enumerate(results):
            if result.outcome == Outcome.THROTTLED and "retry_at" not in (result.data or {}):
                provider = provider_of.get(result.delivery_id, "other")
                due = policy.held_until(provider)
                results[index] = SendResult(
                    result.delivery_id,
                    result.outcome,
                    result.code,
                    result.text,
                    result.message_id,
                    result.external_id,
                    {**(result.data or {}), "retry_at": due},
                )

    def _postpone(self, postponed: list[ClaimedRow], relay_waits: list[float]) -> _Flow:
        if postponed:
            held_ids = {r.id for r in postponed}
            self.chunk = [r for r in self.chunk if r.id not in held_ids]
            self.remaining = postponed + self.remaining  # (their warm-up share was given back)
            if not self.chunk:  # every relay is at its rate: wait a little, or come back later
                wait = min(relay_waits) if relay_waits else 1.0
                if wait > MAX_RATE_SLEEP:
                    return self._give_back_until(wait, "relay rate window full")
                self.sleep(wait)
                return _Flow.AGAIN
        return _Flow.GO

    def _record(self) -> _Flow:
        """Results, plus a heartbeat: the lease only has to outlast one chunk."""
        campaign_id, results = self.campaign.id, self.results
        had_bounce = any(r.outcome == Outcome.BOUNCED for r in results)
        guard_due = not self.campaign.is_test and reputation.due(self.chunk_index, had_bounce)
        outcome = record_results(
            self.engine,
            self.settings,
            self.campaign,
            self.chunk,
            results,
            self.token,
            self.report,
            renew_ids=self._renewal_due(),
            usage=self.usage,
            now=self.clock(),
            probe_signals=guard_due,
        )
        ours = outcome.still_ours
        if ours is not None and len(ours) < len(self.remaining):  # lost to a lease: never send
            log.warning(
                "batch.lease_lost",
                campaign_id=campaign_id,
                batch_no=self.batch_no,
                rows=len(self.remaining) - len(ours),
            )
            self.remaining = [r for r in self.remaining if r.id in ours]
        waiting = [r for r in results if (r.data or {}).get("waiting")]
        if waiting and self.policy is None:  # the channel's own daily quota (WeChat 45009)
            _set_waiting(self.engine, campaign_id, waiting[0].text, waiting[0].data["retry_at"])
        if outcome.pause_reason:
            self.report.stopped = "paused by the server"
            return _Flow.STOP
        return self._after_record(outcome, waiting, guard_due)

    def _renewal_due(self) -> list[int] | None:
        """The rows whose lease to extend with this chunk's results: all still to send once a
        third of the lease has passed since the last renewal, else none (None). Renewing on
        every chunk rewrote each row of a 200-row batch 3.5 times over (every UPDATE of a
        delivery writes a new version into each of its indexes)."""
        now = self.clock()
        if self.renewed_at is None:
            self.renewed_at = now
        if not self.remaining:
            return None
        if (now - self.renewed_at).total_seconds() < self.settings.lease_seconds / 3:
            return None
        self.renewed_at = now
        return [r.id for r in self.remaining]

    def _after_record(
        self, outcome: ChunkOutcome, waiting: list[SendResult], guard_due: bool
    ) -> _Flow:
        # the reputation guard: hard bounces and complaints over the recent window pause
        # the campaign (its own transaction, after this chunk's results are committed; not
        # needed when the chunk's transaction found no bad signal at all)
        if (
            outcome.running
            and guard_due
            and outcome.signals is not False
            and reputation.guard(self.engine, self.settings, self.campaign.id)
        ):
            self.report.stopped = "paused by the reputation guard"
            return _Flow.STOP
        self.chunk_index += 1
        if not outcome.running:
            self.report.stopped = "campaign not running"
            return _Flow.STOP
        if waiting and self.remaining:  # no relay could take rows: the rest would wait the same way
            _hold(self.engine, self.remaining, self.token, self.report, waiting[0].data["retry_at"])
            self.remaining = []
            self.report.stopped = "waiting for relays"
            return _Flow.STOP
        return _Flow.GO


def _send_rows(
    engine: Engine,
    settings: Settings,
    campaign: Campaign,
    batch_no: int,
    remaining: list[ClaimedRow],
    token: str,
    report: BatchReport,
    *,
    factory: ChannelFactory,
    channels: dict,
    limits: list[Limit],
    limiter: RateLimiter | None,
    policy,
    sleep: Callable[[float], None],
    clock: Callable[[], datetime],
) -> list[ClaimedRow]:
    """The chunk loop; returns the rows it did not get to (the caller releases them)."""
    loop = _ChunkLoop(
        engine,
        settings,
        campaign,
        batch_no,
        remaining,
        token,
        report,
        factory,
        channels,
        limits,
        limiter,
        policy,
        sleep,
        clock,
    )
    return loop.run()


def _send_through(
    channel: Channel, rows: Sequence[ClaimedRow], campaign_id: int, batch_no: int
) -> list[SendResult]:
    """channel.send for these rows; a channel bug defers them instead of losing them."""
    recipients = [
        Recipient(r.id, r.subscriber_id, r.email, r.name, r.locale, r.openid, r.provider)
        for r in rows
    ]
    try:
        return channel.send(recipients)
    except Exception as exc:  # noqa: BLE001 - a channel bug must not lose the rows
        log.error(
            "batch.channel_error",
            campaign_id=campaign_id,
            batch_no=batch_no,
            error=f"{type(exc).__name__}: {exc}",
        )
        try:
            channel.close()
            channel.open()
        except Exception:  # noqa: BLE001
            pass
        return [
            SendResult(r.id, Outcome.DEFERRED, text=f"{type(exc).__name__}: {exc}") for r in rows
        ]


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
    from dispatch.editorial.guard import NotApproved

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
        except (campaign_service.NoRecipients, NotApproved) as exc:
            # its lists emptied since, or its issue changed after approval: back to draft
            with Session(engine) as session, session.begin():
                campaign = campaign_service.get(session, campaign_id)
                campaign_service.transition(
                    session, campaign, CampaignStatus.DRAFT, reason=str(exc), now=now
                )
            event = "sweep.not_approved" if isinstance(exc, NotApproved) else "sweep.no_recipients"
            log.warning(event, campaign_id=campaign_id, reason=str(exc))
        except campaign_service.CampaignError as exc:  # another sweep started it first
            log.info("sweep.start_skipped", campaign_id=campaign_id, reason=str(exc))
    with Session(engine) as session, session.begin():
        report.expired = expire_leases(session, settings.max_attempts, now)
    # dead workers' claims, due batches, and batches the broker lost (delivery.recovery)
    recovery = recover(engine, settings, queue, now)
    report.expired += recovery.released
    report.enqueued = recovery.enqueued + recovery.requeued
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
    clock: Callable[[], datetime] = utcnow,
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
            clock=clock,
        )
        runs += 1
    return runs
