"""Recovery without waiting a lease: a dead worker's claims and a lost queue, in seconds.

Why: a lease (600 s by default) is the last resort for a hung worker, but a worker that is
simply gone says so sooner: its heartbeat row (delivery.heartbeat) stops moving. Its rows are
then returned (the lost attempt counts, as on lease expiry) and their batches re-queued. And
when the broker lost its queue (a Redis restart without persistence, a purged queue), batches
marked queued in the database sat idle until that mark passed, a whole lease later; now, when
the broker says nothing is waiting while the database has due rows of running campaigns that
are marked queued and claimed by nobody, those batches are re-queued at once.

Both are idempotent: a re-queued batch whose message was not lost after all only runs twice,
and deliver_batch claims only rows still due, so nobody is sent twice by it. Beat runs
`recover` every `recovery_seconds` in a thread (RecoveryThread), the sweep once per sweep.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, and_, func, or_, select, update
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.delivery.claiming import due_batches, expire_leases
from dispatch.delivery.heartbeat import stale_after
from dispatch.delivery.queue import BatchQueue, mark_batches, queued_until, waiting_count
from dispatch.log import get_logger
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.models.delivery import in_flight
from dispatch.models.heartbeat import ProcessHeartbeat
from dispatch.vocabulary import DELIVERY_CLAIMABLE, CampaignStatus, DeliveryStatus, ProcessKind

log = get_logger(__name__)

D = Delivery.__table__
C = Campaign.__table__
H = ProcessHeartbeat.__table__

# a batch marked queued this recently may still be on its way to a worker (fan-out commits
# before it enqueues; a worker renders once before it claims): not called lost yet
LOST_GRACE_SECONDS = 5.0


@dataclass
class RecoveryReport:
    released: list[tuple[int, int]] = field(default_factory=list)  # a dead holder's batches
    enqueued: list[tuple[int, int]] = field(default_factory=list)  # due, marked unqueued
    requeued: list[tuple[int, int]] = field(default_factory=list)  # lost from the broker
    waiting: int | None = None  # tasks the broker said were waiting (None: it could not say)

    def any(self) -> bool:
        return bool(self.released or self.enqueued or self.requeued)


def dead_after(settings: Settings) -> float:
    """A worker is gone when it no longer counts as running: not seen for three heartbeats
    and at least 30 s (heartbeat.stale_after), so a process slowed down by a loaded machine
    or a slow database is not taken for dead (its claims would then be sent twice)."""
    return stale_after(settings)


def holder_of(token: str) -> str:
    """The process part of a claim token (`node:pid:random` → `node:pid`), which is also the
    name of that process's heartbeat row (tasks.py names both the same way)."""
    return token.rsplit(":", 1)[0]


def dead_claims(session: Session, settings: Settings, now: datetime) -> list[str]:
    """Claim tokens of rows still `sending` whose holder's heartbeat stopped, or whose holder
    restarted since it claimed (a new process under the same name). A holder with no
    heartbeat row (an in-process drain, an older worker) is left to its lease."""
    claims = session.execute(
        select(D.c.claimed_by, func.min(D.c.updated_at))
        .where(in_flight(), D.c.claimed_by.is_not(None))
        .group_by(D.c.claimed_by)
    ).all()
    if not claims:
        return []
    by_holder: dict[str, list[tuple[str, datetime]]] = defaultdict(list)
    for token, claimed_at in claims:
        by_holder[holder_of(token)].append((token, claimed_at))
    beats = session.execute(
        select(H.c.name, H.c.seen_at, H.c.started_at).where(
            H.c.kind == ProcessKind.WORKER, H.c.name.in_(list(by_holder))
        )
    ).all()
    stale = now - timedelta(seconds=dead_after(settings))
    dead: list[str] = []
    for name, seen_at, started_at in beats:
        for token, claimed_at in by_holder[name]:
            if seen_at < stale or (claimed_at is not None and started_at > claimed_at):
                dead.append(token)
    return sorted(dead)


def release_dead_claims(
    session: Session, settings: Settings, now: datetime | None = None
) -> list[tuple[int, int]]:
    """End the leases of dead holders now and return their rows like expired leases (pending,
    the lost attempt counted, failed after max_attempts); returns the batches affected."""
    now = now or utcnow()
    tokens = dead_claims(session, settings, now)
    if not tokens:
        return []
    session.execute(
        update(D)
        .where(in_flight(), D.c.claimed_by.in_(tokens))
        .values(lease_until=now - timedelta(microseconds=1))
    )
    pairs = expire_leases(session, settings.max_attempts, now)
    log.warning("recovery.dead_claims_released", claims=tokens, batches=len(pairs))
    return pairs


def release_failed_run(
    engine: Engine,
    settings: Settings,
    holder: str,
    campaign_id: int,
    batch_no: int,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """A deliver_batch run that raised (e.g. the rate limiter's Redis went away mid-batch)
    leaves its claims `sending` under a live process, whose heartbeat goes on: return them
    now like an expired lease (the attempt counted: a message may have left before the error)
    instead of letting them wait a whole lease. One process runs one batch at a time, so its
    `sending` rows of this batch are that run's."""
    now = now or utcnow()
    mine = and_(
        D.c.campaign_id == campaign_id,
        D.c.batch_no == batch_no,
        D.c.status == DeliveryStatus.SENDING,
        func.substr(D.c.claimed_by, 1, len(holder) + 1) == holder + ":",
    )
    with Session(engine) as session, session.begin():
        session.execute(update(D).where(mine).values(lease_until=now - timedelta(microseconds=1)))
        pairs = expire_leases(session, settings.max_attempts, now)
    if pairs:
        log.warning("recovery.failed_run_released", holder=holder, batches=pairs)
    return pairs


def lost_batches(
    session: Session, requeue_seconds: float, now: datetime | None = None
) -> list[tuple[int, int]]:
    """Batches of running campaigns with due rows claimed by nobody whose latest queue mark
    is older than the grace (and not past). Only lost when the broker holds nothing waiting:
    the caller asks it first. Each is marked again (one row, queue.mark_batches), as
    due_batches does, so it is re-queued once."""
    now = now or utcnow()
    marked_before = now + timedelta(seconds=requeue_seconds - LOST_GRACE_SECONDS)
    running = select(C.c.id).where(C.c.status == CampaignStatus.RUNNING).scalar_subquery()
    rows = and_(
        D.c.status.in_(DELIVERY_CLAIMABLE),
        or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
        D.c.campaign_id.in_(running),
    )
    return mark_batches(
        session,
        rows,
        lambda latest: and_(latest >= now, latest <= marked_before),
        queued_until(now, requeue_seconds),
    )


def recover(
    engine: Engine, settings: Settings, queue: BatchQueue, now: datetime | None = None
) -> RecoveryReport:
    """Release dead holders' claims, enqueue due unqueued batches, and re-queue lost ones.
    With `recovery_seconds` 0 only the due batches are enqueued (leases alone, as before)."""
    now = now or utcnow()
    fast = settings.recovery_seconds > 0
    report = RecoveryReport(waiting=waiting_count(queue) if fast else None)  # before enqueuing
    if fast:
        with Session(engine) as session, session.begin():
            report.released = release_dead_claims(session, settings, now)
    with Session(engine) as session, session.begin():
        report.enqueued = due_batches(session, settings.lease_seconds, now)
    for campaign_id, batch_no in report.enqueued:
        queue.enqueue(campaign_id, batch_no)
    if report.waiting == 0:
        with Session(engine) as session, session.begin():
            report.requeued = lost_batches(session, settings.lease_seconds, now)
        for campaign_id, batch_no in report.requeued:
            queue.enqueue(campaign_id, batch_no)
        if report.requeued:
            log.warning("recovery.lost_batches_requeued", batches=report.requeued)
    return report


class RecoveryThread:
    """Runs `recover` every `settings.recovery_seconds` (in beat) until stopped; a database or
    broker that is away is tried again next time."""

    def __init__(self, engine: Engine, settings: Settings, queue: BatchQueue):
        self.engine, self.settings, self.queue = engine, settings, queue
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dispatch-recovery", daemon=True)

    def start(self) -> RecoveryThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        if self.settings.recovery_seconds <= 0:  # turned off: leases and the sweep only
            return
        while not self._stop.wait(self.settings.recovery_seconds):
            try:
                report = recover(self.engine, self.settings, self.queue)
            except Exception as exc:  # noqa: BLE001 - database or broker away: next round
                log.warning("recovery.failed", error=f"{type(exc).__name__}: {exc}")
                continue
            if report.any():
                log.info(
                    "recovery.done",
                    released=len(report.released),
                    enqueued=len(report.enqueued),
                    requeued=len(report.requeued),
                )

    def stop(self) -> None:
        self._stop.set()
