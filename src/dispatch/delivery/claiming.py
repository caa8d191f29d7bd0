"""Atomic claiming and leases: how two workers never send one row.

A claim is one UPDATE … SET status='sending', lease_until, claimed_by … RETURNING over the
batch's due rows. On PostgreSQL the rows are picked with FOR UPDATE SKIP LOCKED, so a second
worker on the same batch skips them instead of waiting; SQLite runs the single UPDATE under
its write lock, which is atomic too. Every claim carries a fresh token in claimed_by, and
results are written only WHERE claimed_by = that token AND status = 'sending', so a worker
whose lease expired cannot overwrite what the next claimant did.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, select, text, update
from sqlalchemy.orm import Session

from dispatch import pg_arrays
from dispatch.db import affected
from dispatch.delivery.queue import mark_batches, queued_until
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.models.delivery import in_flight
from dispatch.vocabulary import DELIVERY_CLAIMABLE, CampaignStatus, DeliveryStatus

D = Delivery.__table__
C = Campaign.__table__


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    subscriber_id: int
    email: str | None
    openid: str | None
    name: str
    locale: str
    attempts: int
    provider: str | None = None


def new_claim_token(worker: str | None = None) -> str:
    """Who claimed, unique per claim: host:pid:random (kept on the row for the admin)."""
    who = worker or f"{socket.gethostname()}:{os.getpid()}"
    return f"{who[:60]}:{uuid.uuid4().hex[:12]}"


def _due(now: datetime):
    return and_(
        D.c.status.in_(DELIVERY_CLAIMABLE),
        or_(D.c.next_attempt_at.is_(None), D.c.next_attempt_at <= now),
    )


def claim_batch(
    session: Session,
    campaign_id: int,
    batch_no: int,
    token: str,
    lease_seconds: float,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[ClaimedRow]:
    """Claim the batch's due rows for this token, only while the campaign is running."""
    now = now or utcnow()
    running = exists().where(C.c.id == campaign_id, C.c.status == CampaignStatus.RUNNING)
    pick = (
        select(D.c.id)
        .where(D.c.campaign_id == campaign_id, D.c.batch_no == batch_no, _due(now), running)
        .order_by(D.c.id)
        .with_for_update(skip_locked=True)
    )
    if limit:
        pick = pick.limit(limit)
    # a materialised CTE: PostgreSQL may otherwise re-run an IN-subquery with SKIP LOCKED per
    # outer row and pick different rows each time (more than `limit`, in a different set)
    picked = pick.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    stmt = (
        update(D)
        .where(D.c.id.in_(select(picked.c.id)), _due(now))
        .values(
            status=DeliveryStatus.SENDING.value,
            lease_until=now + timedelta(seconds=lease_seconds),
            claimed_by=token,
            updated_at=now,
        )
        .returning(
            D.c.id,
            D.c.subscriber_id,
            D.c.email,
            D.c.openid,
            D.c.name,
            D.c.locale,
            D.c.attempts,
            D.c.provider,
        )
    )
    rows = [ClaimedRow(*r) for r in session.execute(stmt)]
    rows.sort(key=lambda r: r.id)
    return rows


def renew(
    session: Session, ids: list[int], token: str, lease_seconds: float, now: datetime | None = None
) -> set[int]:
    """Extend this claim's lease on `ids`; returns the ids still ours (a row whose lease ran
    out and was re-claimed by another worker is dropped, so we never send it too)."""
    if not ids:
        return set()
    now = now or utcnow()
    stmt = (
        update(D)
        .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENDING, D.c.claimed_by == token)
        .values(lease_until=now + timedelta(seconds=lease_seconds))
        .returning(D.c.id)
    )
    return {int(i) for i in session.scalars(stmt)}


# one result onto its row, only while this claim still owns it (executemany; SQLite)
_WRITE_RESULT = (
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

# PostgreSQL: a chunk's results in one statement, one array per column, and the rows it
# really wrote come back (RETURNING), so no second query asks which rows were still ours
_WRITE_RESULTS_PG = text(
    """
    UPDATE deliveries AS d SET
        status = v.status, attempts = d.attempts + v.inc, next_attempt_at = v.next_at,
        lease_until = NULL, last_code = v.code, last_text = v.text, message_id = v.message_id,
        external_id = v.external_id, sent_at = v.sent_at, updated_at = v.now
    FROM unnest(
        CAST(:ids AS bigint[]), CAST(:statuses AS varchar[]), CAST(:incs AS integer[]),
        CAST(:nexts AS timestamptz[]), CAST(:codes AS integer[]), CAST(:texts AS text[]),
        CAST(:message_ids AS varchar[]), CAST(:external_ids AS varchar[]),
        CAST(:sent_ats AS timestamptz[]), CAST(:nows AS timestamptz[])
    ) AS v(id, status, inc, next_at, code, text, message_id, external_id, sent_at, now)
    WHERE d.id = v.id AND d.status = :sending AND d.claimed_by = :token
    RETURNING d.id
    """
)
# (array parameter, `b_*` key, literal builder): one PostgreSQL array literal per column
_PG_COLUMNS: tuple[tuple[str, str, Callable[[list[Any]], str]], ...] = (
    ("ids", "b_id", pg_arrays.ints),
    ("statuses", "b_status", pg_arrays.texts),
    ("incs", "b_inc", pg_arrays.ints),
    ("nexts", "b_next", pg_arrays.timestamps),
    ("codes", "b_code", pg_arrays.ints),
    ("texts", "b_text", pg_arrays.texts),
    ("message_ids", "b_message_id", pg_arrays.texts),
    ("external_ids", "b_external_id", pg_arrays.texts),
    ("sent_ats", "b_sent_at", pg_arrays.timestamps),
    ("nows", "b_now", pg_arrays.timestamps),
)


def write_results(session: Session, params: Sequence[dict[str, Any]], token: str) -> set[int]:
    """Write a chunk's results (`b_*` parameters of `_WRITE_RESULT`, one dict per row) onto
    the rows this claim still owns; returns the ids written. A row lost to an expired lease
    (another claim owns it now) is left as it is.

    Why one statement on PostgreSQL: 50 single-row UPDATEs per chunk were parsed, planned and
    executed one by one, then a SELECT asked which of them had matched. Its arrays go as
    literal strings (dispatch.pg_arrays): psycopg's list dumper cost 10 times more CPU.
    """
    if not params:
        return set()
    if session.get_bind().dialect.name == "postgresql":
        arrays = {key: build([p[name] for p in params]) for key, name, build in _PG_COLUMNS}
        written = session.connection().execute(
            _WRITE_RESULTS_PG,
            {**arrays, "token": token, "sending": DeliveryStatus.SENDING.value},
        )
        return set(written.scalars().all())
    session.connection().execute(_WRITE_RESULT, [{**p, "b_token": token} for p in params])
    ids = [p["b_id"] for p in params]
    return set(
        session.scalars(
            select(D.c.id).where(
                D.c.id.in_(ids), D.c.claimed_by == token, D.c.status != DeliveryStatus.SENDING
            )
        )
    )


def release(
    session: Session,
    ids: list[int],
    token: str,
    *,
    next_attempt_at: datetime | None = None,
    queued_until: datetime | None = None,
    now: datetime | None = None,
) -> int:
    """Give claimed rows back (pending, no attempt counted): pause, cancel, rate window full."""
    if not ids:
        return 0
    now = now or utcnow()
    result = session.execute(
        update(D)
        .where(D.c.id.in_(ids), D.c.status == DeliveryStatus.SENDING, D.c.claimed_by == token)
        .values(
            status=DeliveryStatus.PENDING.value,
            lease_until=queued_until,
            next_attempt_at=next_attempt_at,
            updated_at=now,
        )
    )
    return affected(result) or 0


def expire_leases(
    session: Session, max_attempts: int, now: datetime | None = None
) -> list[tuple[int, int]]:
    """Rows whose claim expired (their worker died or hung) go back to pending.

    The lost attempt counts, so a message that kills every worker that touches it ends up
    failed instead of looping; returns the (campaign, batch) pairs affected.
    """
    now = now or utcnow()
    expired = in_flight() & (D.c.lease_until < now)
    pairs = {
        (int(c), int(b))
        for c, b in session.execute(select(D.c.campaign_id, D.c.batch_no).where(expired).distinct())
    }
    if not pairs:
        return []
    session.execute(
        update(D)
        .where(expired, D.c.attempts + 1 >= max_attempts)
        .values(
            status=DeliveryStatus.FAILED.value,
            attempts=D.c.attempts + 1,
            lease_until=None,
            last_text="lease expired: the worker was lost on every attempt",
            updated_at=now,
        )
    )
    session.execute(
        update(D)
        .where(expired)
        .values(
            status=DeliveryStatus.PENDING.value,
            attempts=D.c.attempts + 1,
            lease_until=None,
            last_text="lease expired: the worker was lost",
            updated_at=now,
        )
    )
    return sorted(pairs)


def due_batches(
    session: Session, requeue_seconds: float, now: datetime | None = None
) -> list[tuple[int, int]]:
    """Batches of running campaigns with due rows that no queued task is known to cover.

    A pending/deferred row's lease_until means "a task for its batch was queued until then";
    when no due row of a batch has a mark still ahead (the broker lost the message, a long
    retry delay came due) the sweep enqueues the batch again and marks it once more
    (queue.mark_batches: one row per batch), so each due batch is re-enqueued once per period.
    """
    now = now or utcnow()
    running = select(C.c.id).where(C.c.status == CampaignStatus.RUNNING).scalar_subquery()
    return mark_batches(
        session,
        and_(_due(now), D.c.campaign_id.in_(running)),
        lambda latest: or_(latest.is_(None), latest < now),
        queued_until(now, requeue_seconds),
    )
