"""Recovery without waiting a lease (issue 17 item 6), driven directly on SQLite and PostgreSQL:
a dead worker's claims return once its heartbeat stops, and batches the broker lost are
re-queued as soon as the broker says nothing is waiting; both idempotent. The broker's own
answer ("how many tasks wait?") is asked of real Redis and RabbitMQ at the end."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from celery import Celery
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatch.delivery import campaigns
from dispatch.delivery.claiming import claim_batch, new_claim_token
from dispatch.delivery.engine import drain
from dispatch.delivery.heartbeat import record, worker_name
from dispatch.delivery.queue import ListQueue
from dispatch.delivery.recovery import LOST_GRACE_SECONDS, dead_after, holder_of, recover
from dispatch.models import Delivery, utcnow
from dispatch.tasks import CeleryQueue, configure
from test_delivery_support import channel_factory, make_issue, make_list_with


def _running(engine, session, settings, n: int = 6) -> tuple[int, ListQueue]:
    issue = make_issue(session)
    emails = [f"r{i:03d}@example.org" for i in range(n)]
    list_id = make_list_with(session, "members", emails)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id]
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    return campaign.id, queue


def _rows(session: Session, campaign_id: int) -> list[Delivery]:
    session.expire_all()
    return list(
        session.scalars(
            select(Delivery).where(Delivery.campaign_id == campaign_id).order_by(Delivery.id)
        )
    )


def _claim(engine, campaign_id: int, batch_no: int, holder: str, settings) -> str:
    token = new_claim_token(holder)
    with Session(engine) as s, s.begin():
        assert claim_batch(s, campaign_id, batch_no, token, settings.lease_seconds)
    return token


def test_a_dead_workers_claims_return_without_waiting_for_the_lease(engine, session, settings):
    settings = settings.replace(lease_seconds=600, heartbeat_seconds=5, batch_size=2)
    campaign_id, queue = _running(engine, session, settings)
    queue.pop_all()  # the three batches' messages were taken by workers
    dead, alive, silent = (worker_name(f"w{i}@host", 100 + i) for i in range(3))
    now = utcnow()
    record(engine, "worker", dead, now - timedelta(seconds=dead_after(settings) + 1))
    record(engine, "worker", alive, now)
    dead_token = _claim(engine, campaign_id, 0, dead, settings)
    _claim(engine, campaign_id, 1, alive, settings)
    _claim(engine, campaign_id, 2, silent, settings)  # no heartbeat row at all: left to its lease
    assert holder_of(dead_token) == dead  # the claim names its heartbeat row

    report = recover(engine, settings, queue, now=now)
    assert report.released == [(campaign_id, 0)] and report.enqueued == [(campaign_id, 0)]
    assert queue.items == [(campaign_id, 0)]
    by_batch = {}
    for row in _rows(session, campaign_id):
        by_batch.setdefault(row.batch_no, set()).add((row.status, row.attempts))
    assert by_batch == {0: {("pending", 1)}, 1: {("sending", 0)}, 2: {("sending", 0)}}
    # idempotent: nothing more to release, and the batch is marked queued
    again = recover(engine, settings, ListQueue(), now=now)
    assert (again.released, again.enqueued, again.requeued) == ([], [], [])
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    assert len(sent) == 2


def test_a_worker_restarted_under_the_same_name_disowns_its_old_claims(engine, session, settings):
    settings = settings.replace(lease_seconds=600, heartbeat_seconds=5, batch_size=10)
    campaign_id, queue = _running(engine, session, settings, n=3)
    queue.pop_all()
    name = worker_name("w1@host", 1)  # pid 1 in a container, every time
    record(engine, "worker", name)
    _claim(engine, campaign_id, 0, name, settings)
    later = utcnow() + timedelta(seconds=1)
    assert recover(engine, settings, queue, now=later).released == []  # alive, same process
    record(engine, "worker", name, later, fresh=True)  # the new process's first beat
    assert recover(engine, settings, queue, now=later).released == [(campaign_id, 0)]
    assert {r.status for r in _rows(session, campaign_id)} == {"pending"}


def test_a_run_that_raised_gives_its_claims_back_at_once(engine, session, settings):
    """The rate limiter's Redis went away mid-batch: deliver_batch raised in a worker that lives
    on (its heartbeat fresh). Its claims of that batch return now, not after the lease; another
    process's claims and another batch stay claimed."""
    from dispatch.delivery.recovery import release_failed_run

    settings = settings.replace(lease_seconds=600, batch_size=2)
    campaign_id, queue = _running(engine, session, settings)
    queue.pop_all()
    me, other = worker_name("w1@host", 7), worker_name("w1@host", 77)
    _claim(engine, campaign_id, 0, me, settings)
    _claim(engine, campaign_id, 1, me, settings)  # an earlier batch of mine, still running
    _claim(engine, campaign_id, 2, other, settings)  # "w1@host:77" starts like "w1@host:7"
    assert release_failed_run(engine, settings, me, campaign_id, 0) == [(campaign_id, 0)]
    statuses = {(r.batch_no, r.status, r.attempts) for r in _rows(session, campaign_id)}
    assert statuses == {(0, "pending", 1), (1, "sending", 0), (2, "sending", 0)}
    assert recover(engine, settings, queue).enqueued == [(campaign_id, 0)]


def test_lost_batches_are_requeued_once_the_broker_holds_nothing(engine, session, settings):
    settings = settings.replace(lease_seconds=600, batch_size=2)
    campaign_id, queue = _running(engine, session, settings)
    assert queue.waiting() == 3
    now = utcnow()
    # the broker still holds the messages: nothing is lost
    assert recover(engine, settings, queue, now=now + timedelta(seconds=30)).requeued == []
    queue.pop_all()  # the broker restarted empty
    # within the grace a batch may still be on its way to a worker
    assert recover(engine, settings, queue, now=now + timedelta(seconds=1)).requeued == []
    soon = now + timedelta(seconds=LOST_GRACE_SECONDS + 1)  # seconds, not the 600 s lease
    report = recover(engine, settings, queue, now=soon)
    assert report.waiting == 0 and report.requeued == [(campaign_id, b) for b in range(3)]
    assert queue.pop_all() == report.requeued
    # a worker holds batch 0 now (claimed), the others are queued again: nothing more
    _claim(engine, campaign_id, 0, "w9@host:9", settings)
    assert recover(engine, settings, queue, now=soon + timedelta(seconds=1)).requeued == []
    later = soon + timedelta(seconds=LOST_GRACE_SECONDS + 1)  # lost again: re-queued again
    assert recover(engine, settings, queue, now=later).requeued == [
        (campaign_id, 1),
        (campaign_id, 2),
    ]


def test_the_sweep_marks_one_row_per_batch_and_runs_once(engine, session, settings):
    """Past the fan-out's queue mark the sweep re-enqueues each batch with due rows, writing
    one mark per batch (its last row), not every pending row of the campaign; swept again at
    the same time it does nothing, and a batch partly claimed since still counts as queued."""
    settings = settings.replace(lease_seconds=600, batch_size=3)
    campaign_id, queue = _running(engine, session, settings, n=9)
    queue.pop_all()
    before = {r.id: r.lease_until for r in _rows(session, campaign_id)}
    later = utcnow() + timedelta(seconds=601)
    report = recover(engine, settings, queue, now=later)
    assert report.enqueued == [(campaign_id, b) for b in range(3)]
    rows = _rows(session, campaign_id)
    touched = sorted((r.batch_no, r.id) for r in rows if r.lease_until != before[r.id])
    last_of = {b: max(r.id for r in rows if r.batch_no == b) for b in range(3)}
    assert touched == sorted((b, i) for b, i in last_of.items())
    again = recover(engine, settings, ListQueue(), now=later)
    assert (again.enqueued, again.requeued) == ([], [])
    with Session(engine) as s, s.begin():  # a worker took the batch's first row so far
        assert claim_batch(s, campaign_id, 0, new_claim_token("w1@host:1"), 600, later, limit=1)
    assert recover(engine, settings, ListQueue(), now=later + timedelta(seconds=1)).enqueued == []
    # a mark past again: enqueued again, once more one row written per batch
    much_later = later + timedelta(seconds=601)
    assert recover(engine, settings, ListQueue(), now=much_later).enqueued == [
        (campaign_id, b) for b in range(3)
    ]
    marked = [r for r in _rows(session, campaign_id) if r.lease_until is not None]
    assert sum(1 for r in marked if r.status == "pending" and r.lease_until > much_later) == 3


def test_a_broker_that_cannot_say_is_not_taken_for_empty(engine, session, settings):
    settings = settings.replace(lease_seconds=600)
    campaign_id, queue = _running(engine, session, settings)
    queue.pop_all()

    class Unknown:
        def enqueue(self, campaign_id: int, batch_no: int) -> None:
            raise AssertionError("nothing may be enqueued")

        def waiting(self) -> int:
            raise ConnectionError("broker away")

    later = utcnow() + timedelta(seconds=60)
    report = recover(engine, settings, Unknown(), now=later)
    assert report.waiting is None and report.requeued == []
    session.execute(update(Delivery).values(lease_until=None))  # marked unqueued: enqueued
    session.commit()
    assert recover(engine, settings, queue, now=later).enqueued == [(campaign_id, 0)]


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_the_broker_says_how_many_tasks_wait(broker, settings, redis_url, redis_prefix):
    """CeleryQueue.waiting asks the real broker: 0 for a queue it never saw, then the count of
    tasks sent to it (a unique queue name; deleted afterwards, never another's)."""
    queue_name = f"dispatch-test-waiting-{uuid.uuid4().hex[:8]}"
    url = redis_url if broker == "redis" else "amqp://guest:guest@127.0.0.1:5672//"
    app = configure(
        Celery(f"waiting-{broker}", set_as_current=False),
        settings.replace(broker_url=url, redis_key_prefix=redis_prefix, celery_queue=queue_name),
    )
    queue = CeleryQueue(app, queue_name)
    try:
        assert queue.waiting() == 0
        queue.enqueue(1, 0)
        queue.enqueue(1, 1)
        assert queue.waiting() == 2
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(queue_name)
        app.close()


def test_claims_in_flight_are_read_through_the_partial_index(engine):
    """ix_deliveries_status_lease holds `sending` rows only (migration i17_deliveries_lean):
    the expired-lease query names the status in its SQL text, so even a prepared statement's
    generic plan (psycopg prepares after 5 runs) can use that index instead of reading every
    delivery; with a bound status value it could not."""
    from sqlalchemy import bindparam, text
    from sqlalchemy.dialects import postgresql

    from dispatch.models.delivery import in_flight

    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's plans")
    d = Delivery.__table__.c
    query = select(d.campaign_id).where(in_flight() & (d.lease_until < bindparam("t")))
    sql = str(query.compile(dialect=postgresql.dialect())).replace("%(t)s", "$1")
    with engine.connect() as conn:
        conn.execute(text("SET LOCAL plan_cache_mode = force_generic_plan"))
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text(f"PREPARE in_flight_probe (timestamptz) AS {sql}"))
        explained = conn.execute(text("EXPLAIN EXECUTE in_flight_probe (now())"))
        plan = "\n".join(explained.scalars())
        conn.execute(text("DEALLOCATE in_flight_probe"))
        conn.rollback()
    assert "ix_deliveries_status_lease" in plan, plan
