"""Workers render a campaign while its fan-out runs (issue 17 item 1, delivery.prepare).

`campaigns.start` and `resume` ask each live worker for a prepare task before their
transaction (pinned with a queue that records what it is asked, and what the database held
at that moment); the task renders the campaign into the worker's per-process source cache
before any batch exists (a real Redis broker and an in-process Celery worker); and it never
raises, whatever the campaign.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from pathlib import Path

from celery.contrib.testing.worker import start_worker
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch import tasks
from dispatch.channels import email_source
from dispatch.config import set_settings
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.heartbeat import record, stale_after
from dispatch.delivery.prepare import live_workers
from dispatch.models import Campaign, Delivery, utcnow
from dispatch.vocabulary import DeliveryStatus, ProcessKind
from test_delivery_support import make_issue, make_list_with
from test_delivery_workers import _small_issue


class RecordingQueue:
    """A BatchQueue that can prepare; notes each call with what the database held then."""

    def __init__(self, engine, fail_prepare: bool = False):
        self.engine, self.fail_prepare = engine, fail_prepare
        self.calls: list[tuple] = []

    def prepare(self, campaign_id: int) -> None:
        if self.fail_prepare:
            raise ConnectionError("broker away")
        with Session(self.engine) as s:
            status = s.scalar(select(Campaign.status).where(Campaign.id == campaign_id))
            rows = s.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.campaign_id == campaign_id)
            )
        self.calls.append(("prepare", campaign_id, str(status), rows))

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        self.calls.append(("enqueue", campaign_id, batch_no))


def _campaign(session: Session, issue_id: int, people: int = 6, slug: str = "members") -> int:
    emails = [f"{slug}{i}@example.org" for i in range(people)]
    list_id = make_list_with(session, slug, emails)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue_id, channel="email", list_ids=[list_id]
    )
    session.commit()
    return campaign.id


def _beat(engine, settings, kind: str, name: str, age: float) -> None:
    record(engine, kind, name, now=utcnow() - timedelta(seconds=age), fresh=True)


def test_start_asks_each_live_worker_to_prepare_before_the_fan_out(engine, session, settings):
    settings = settings.replace(batch_size=2)
    campaign_id = _campaign(session, make_issue(session).id)
    _beat(engine, settings, ProcessKind.WORKER, "w1@host:101", 1)
    _beat(engine, settings, ProcessKind.WORKER, "w2@host:102", stale_after(settings) - 5)
    _beat(engine, settings, ProcessKind.WORKER, "gone@host:103", stale_after(settings) + 5)
    _beat(engine, settings, ProcessKind.BEAT, "beat@host:104", 1)
    assert live_workers(engine, settings) == 2

    queue = RecordingQueue(engine)
    assert campaigns.start(engine, settings, campaign_id, queue) == [0, 1, 2]
    # two prepares (the live workers), asked while the campaign was a draft with no rows
    assert queue.calls == [
        ("prepare", campaign_id, "draft", 0),
        ("prepare", campaign_id, "draft", 0),
        ("enqueue", campaign_id, 0),
        ("enqueue", campaign_id, 1),
        ("enqueue", campaign_id, 2),
    ]

    with Session(engine) as s, s.begin():
        campaigns.pause(s, campaign_id)
    queue.calls.clear()
    campaigns.resume(engine, settings, campaign_id, queue)
    assert queue.calls[:2] == [("prepare", campaign_id, "paused", 6)] * 2
    assert [c[0] for c in queue.calls[2:]] == ["enqueue"] * 3


def test_with_no_live_worker_one_prepare_is_queued_and_a_failing_one_stops_nothing(
    engine, session, settings
):
    settings = settings.replace(batch_size=2)
    issue_id = make_issue(session).id
    first = _campaign(session, issue_id)
    _beat(engine, settings, ProcessKind.WORKER, "gone@host:103", stale_after(settings) + 5)
    queue = RecordingQueue(engine)
    campaigns.start(engine, settings, first, queue)
    assert [c[0] for c in queue.calls] == ["prepare", "enqueue", "enqueue", "enqueue"]

    second = _campaign(session, issue_id, people=3, slug="others")
    broken = RecordingQueue(engine, fail_prepare=True)  # the broker refuses the prepare
    assert campaigns.start(engine, settings, second, broken) == [0, 1]
    assert broken.calls == [("enqueue", second, 0), ("enqueue", second, 1)]


def test_the_prepare_task_never_raises(engine, session, settings, caplog):
    """A campaign that is gone, or whose issue cannot be rendered (make_issue stores no
    source text): the task logs it and returns False; its batches report it later."""
    caplog.set_level(logging.WARNING, logger="dispatch.delivery.prepare")
    campaign_id = _campaign(session, make_issue(session).id)
    assert tasks.prepare_campaign(campaign_id + 1000) is False
    assert tasks.prepare_campaign(campaign_id) is False
    events = [(r.getMessage(), r.fields["campaign_id"]) for r in caplog.records]  # type: ignore[attr-defined]
    assert events == [
        ("campaign.prepare_skipped", campaign_id + 1000),
        ("campaign.prepare_failed", campaign_id),
    ]


def _cached(campaign_id: int) -> bool:
    return any(key[1] == campaign_id for key in email_source._SOURCE_CACHE)


def test_a_worker_renders_the_campaign_before_any_batch_is_claimed(
    engine, session, settings, redis_url, redis_prefix, tmp_path: Path
):
    """Through a real Redis broker: `start` queues the prepare task, an in-process worker
    (this process: its source cache is ours to look at) takes it and renders the campaign,
    while its batches are held back by the queue: every row is still pending."""
    settings = settings.replace(
        broker_url=redis_url,
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        celery_queue=f"dispatch-test-prepare-{uuid.uuid4().hex[:8]}",
        smtp_url="smtp://127.0.0.1:9",  # never reached: no batch runs
        batch_size=2,
    )
    with Session(engine) as s, s.begin():
        issue_id = publish_source(s, _small_issue(tmp_path / "issue")).id
    campaign_id = _campaign(session, issue_id)
    email_source._SOURCE_CACHE.clear()
    email_source._RECENT.clear()
    set_settings(settings)  # what the worker's tasks read (tasks._deps)
    app = tasks.configure(tasks.app, settings)
    real = tasks.CeleryQueue(app, settings.celery_queue)
    held = RecordingQueue(engine)
    held.prepare = real.prepare  # type: ignore[method-assign]  # prepares go to the broker
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
            campaigns.start(engine, settings, campaign_id, held)
            deadline = time.monotonic() + 30
            while not _cached(campaign_id) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _cached(campaign_id), "the worker did not render the campaign"
        assert [c[0] for c in held.calls] == ["enqueue"] * 3  # held back: never sent
        with Session(engine) as s:
            statuses = set(
                s.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign_id))
            )
        assert statuses == {DeliveryStatus.PENDING}  # rendered before any claim
    finally:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_delete(settings.celery_queue)
        tasks.configure(app, settings.replace(broker_url=""))
