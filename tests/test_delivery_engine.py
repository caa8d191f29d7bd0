"""The engine's state logic, driven directly (no Celery) on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from dispatch.channels.base import SendResult
from dispatch.delivery import campaigns
from dispatch.delivery.claiming import claim_batch, new_claim_token
from dispatch.delivery.engine import deliver_batch, drain, sweep
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign, Delivery, Event, utcnow
from dispatch.subscribers import service as subscribers
from test_delivery_support import channel_factory, make_issue, make_list_with


def _setup(session: Session, n: int = 10, lists: int = 1) -> tuple[int, list[int]]:
    issue = make_issue(session)
    emails = [f"r{i:04d}@example.org" for i in range(n)]
    list_ids = [make_list_with(session, f"list-{k}", emails) for k in range(lists)]
    session.commit()
    return issue.id, list_ids


def _statuses(session: Session, campaign_id: int) -> dict[str, int]:
    session.expire_all()
    return campaigns.counts(session, campaign_id)


def _events(session: Session, campaign_id: int, kind: str) -> int:
    return session.scalar(
        select(func.count()).where(Event.campaign_id == campaign_id, Event.kind == kind)
    )


def _start(engine, settings, session, issue_id, list_ids, **kw) -> tuple[int, ListQueue]:
    campaign, created = campaigns.create_or_get(
        session, issue_id=issue_id, channel="email", list_ids=list_ids, **kw
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    return campaign.id, queue


def test_everyone_once_with_duplicate_across_lists_and_events_match(engine, session, settings):
    settings = settings.replace(batch_size=4)
    issue_id, list_ids = _setup(session, n=10, lists=2)  # everyone on both lists
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    assert len(queue.items) == 3  # 10 rows in batches of 4
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    assert sorted(r.email for r in sent) == sorted(f"r{i:04d}@example.org" for i in range(10))
    counts = _statuses(session, cid)
    assert counts["sent"] == 10 and sum(counts.values()) == 10
    assert _events(session, cid, "sent") == 10
    assert session.get(Campaign, cid).status == "finished"
    batches = session.scalars(
        select(Delivery.batch_no).where(Delivery.campaign_id == cid).order_by(Delivery.id)
    ).all()
    assert batches == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]


def test_double_trigger_sends_nothing_more(engine, session, settings):
    issue_id, list_ids = _setup(session, n=5)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    again, created = campaigns.create_or_get(
        session, issue_id=issue_id, channel="email", list_ids=list(reversed(list_ids))
    )
    assert not created and again.id == cid
    with pytest.raises(campaigns.InvalidTransition, match="cannot go from 'finished' to 'running'"):
        campaigns.start(engine, settings, cid, queue)
    # a duplicate deliver_batch task (the broker redelivered it) claims nothing
    deliver_batch(engine, settings, cid, 0, channel_factory=channel_factory(sent))
    assert len(sent) == 5
    assert session.scalar(select(func.count()).where(Delivery.campaign_id == cid)) == 5


def test_transitions_are_enforced_in_one_place(engine, session, settings):
    issue_id, list_ids = _setup(session, n=1)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue_id, channel="email", list_ids=list_ids
    )
    with pytest.raises(campaigns.InvalidTransition, match="from 'draft' to 'paused'"):
        campaigns.pause(session, campaign.id)
    campaigns.cancel(session, campaign.id)
    session.commit()
    with pytest.raises(campaigns.InvalidTransition, match="from 'cancelled' to 'running'"):
        campaigns.transition(session, campaign, "running")
    assert campaigns.TRANSITIONS["finished"] == frozenset()
    with pytest.raises(campaigns.CampaignError, match="unknown channel 'sms'"):
        campaigns.create_or_get(session, issue_id=issue_id, channel="sms", list_ids=list_ids)


def test_deferred_then_sent_and_max_attempts_then_failed(engine, session, settings):
    settings = settings.replace(max_attempts=3, retry_base_seconds=1000, retry_max_seconds=100000)
    issue_id, list_ids = _setup(session, n=2)

    def script(r, seen):
        if r.email.startswith("r0000"):  # transient twice, then accepted
            return (
                SendResult(r.delivery_id, "deferred", 451, "4.3.0 try later")
                if seen < 2
                else SendResult(r.delivery_id, "sent", 250, "ok")
            )
        return SendResult(r.delivery_id, "deferred", 421, "4.7.0 busy")  # never recovers

    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    sent: list = []
    factory = channel_factory(sent, script)
    drain(engine, settings, queue, channel_factory=factory)
    rows = {
        d.email: d for d in session.scalars(select(Delivery).where(Delivery.campaign_id == cid))
    }
    first = rows["r0000@example.org"]
    assert first.status == "deferred" and first.attempts == 1 and first.last_code == 451
    delay = (first.next_attempt_at - first.updated_at).total_seconds()
    assert 0 <= delay <= 1000.0
    # not due yet: the sweep enqueues nothing
    assert sweep(engine, settings, queue).enqueued == []
    for round_ in range(2):  # attempts 2 and 3
        now = utcnow() + timedelta(seconds=10**6 * (round_ + 1))
        report = sweep(engine, settings, queue, now=now)
        assert report.enqueued == [(cid, 0)]
        session.execute(
            update(Delivery)
            .where(Delivery.campaign_id == cid)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
        drain(engine, settings, queue, channel_factory=factory)
    session.expire_all()
    rows = {
        d.email: d for d in session.scalars(select(Delivery).where(Delivery.campaign_id == cid))
    }
    assert rows["r0000@example.org"].status == "sent" and rows["r0000@example.org"].attempts == 3
    assert rows["r0001@example.org"].status == "failed" and rows["r0001@example.org"].attempts == 3
    assert "gave up after 3 attempts" in rows["r0001@example.org"].last_text
    assert [r.email for r in sent].count("r0001@example.org") == 3
    assert _events(session, cid, "deferred") == 2 + 2 and _events(session, cid, "failed") == 1
    assert session.get(Campaign, cid).status == "finished"


def test_bounce_suppresses_and_is_not_retried(engine, session, settings):
    issue_id, list_ids = _setup(session, n=3)

    def script(r, seen):
        if r.email == "r0001@example.org":
            return SendResult(r.delivery_id, "bounced", 550, "5.1.1 user unknown")
        return SendResult(r.delivery_id, "sent", 250, "ok")

    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent, script))
    assert sweep(engine, settings, queue, now=utcnow() + timedelta(days=1)).enqueued == []
    assert len(sent) == 3
    counts = _statuses(session, cid)
    assert counts["bounced"] == 1 and counts["sent"] == 2
    assert subscribers.is_suppressed(session, email="r0001@example.org")
    assert _events(session, cid, "bounced") == 1
    bounced = session.scalars(select(Delivery).where(Delivery.status == "bounced")).one()
    assert bounced.last_code == 550 and "user unknown" in bounced.last_text


@pytest.mark.parametrize("chunk_size", [0, 7])  # 0: the default chunk_size setting
def test_policy_refusal_pauses_campaign_without_suppressing(engine, session, settings, chunk_size):
    chunk = chunk_size or settings.chunk_size  # one batch holding more than one chunk
    n = chunk + 30
    settings = settings.replace(batch_size=n, chunk_size=chunk)
    issue_id, list_ids = _setup(session, n=n)

    def script(r, seen):
        return SendResult(r.delivery_id, "paused", 550, "5.7.1 sender not authorised")

    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent, script))
    campaign = session.get(Campaign, cid)
    session.refresh(campaign)
    assert campaign.status == "paused" and "5.7.1" in campaign.paused_reason
    counts = _statuses(session, cid)
    assert counts["pending"] == n  # nobody blamed, no attempt counted
    assert (
        session.scalar(select(func.max(Delivery.attempts)).where(Delivery.campaign_id == cid)) == 0
    )
    assert len(sent) == chunk  # the first chunk was tried, the rest never sent
    assert not subscribers.list_suppressions(session)
    # the operator fixes the relay and resumes: everybody gets it once
    batches = campaigns.resume(engine, settings, cid, queue)
    assert batches == [0]
    sent2: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent2))
    assert len(sent2) == n and _statuses(session, cid)["sent"] == n


def test_pause_resume_cancel(engine, session, settings):
    settings = settings.replace(batch_size=10)
    issue_id, list_ids = _setup(session, n=30)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    sent: list = []
    factory = channel_factory(sent)
    deliver_batch(engine, settings, cid, 0, channel_factory=factory)
    campaigns.pause(session, cid)
    session.commit()
    drain(engine, settings, queue, channel_factory=factory)  # queued tasks run while paused
    assert len(sent) == 10
    assert sweep(engine, settings, queue, now=utcnow() + timedelta(days=1)).enqueued == []
    campaigns.resume(engine, settings, cid, queue)
    deliver_batch(engine, settings, cid, 1, channel_factory=factory)
    campaigns.cancel(session, cid)
    session.commit()
    drain(engine, settings, queue, channel_factory=factory)
    assert len(sent) == 20
    counts = _statuses(session, cid)
    assert counts["sent"] == 20 and counts["pending"] == 10
    assert session.get(Campaign, cid).status == "cancelled"
    with pytest.raises(campaigns.InvalidTransition):
        campaigns.resume(engine, settings, cid, queue)


def test_unsubscribed_meanwhile_is_skipped(engine, session, settings):
    issue_id, list_ids = _setup(session, n=3)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    gone = subscribers.find_subscriber(session, email="r0002@example.org")
    subscribers.unsubscribe(session, gone.id, None)
    subscribers.suppress(session, email="r0000@example.org", reason="complained")
    session.commit()
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    assert [r.email for r in sent] == ["r0001@example.org"]
    counts = _statuses(session, cid)
    assert counts["skipped"] == 2 and counts["sent"] == 1
    assert _events(session, cid, "skipped") == 2
    assert session.get(Campaign, cid).status == "finished"


def test_lease_expiry_returns_rows_and_they_are_sent_once(engine, session, settings):
    settings = settings.replace(lease_seconds=60)
    issue_id, list_ids = _setup(session, n=4)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    queue.pop_all()
    # a worker claims the batch and dies before sending anything
    with Session(engine) as s, s.begin():
        claimed = claim_batch(s, cid, 0, new_claim_token("dead-worker"), settings.lease_seconds)
    assert len(claimed) == 4
    assert deliver_batch(engine, settings, cid, 0, channel_factory=channel_factory([])).claimed == 0
    assert sweep(engine, settings, queue).expired == []  # lease still running
    report = sweep(engine, settings, queue, now=utcnow() + timedelta(seconds=61))
    assert report.expired == [(cid, 0)] and report.enqueued == [(cid, 0)]
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    assert len(sent) == 4
    rows = session.scalars(select(Delivery).where(Delivery.campaign_id == cid)).all()
    assert {r.status for r in rows} == {"sent"} and {r.attempts for r in rows} == {2}
    assert sweep(engine, settings, queue, now=utcnow() + timedelta(days=1)).enqueued == []


def test_late_result_of_an_expired_claim_is_not_written(engine, session, settings):
    from dispatch.delivery.engine import BatchReport, record_results

    issue_id, list_ids = _setup(session, n=1)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    with Session(engine) as s, s.begin():
        old = claim_batch(s, cid, 0, "slow-worker:1", settings.lease_seconds)
    sweep(engine, settings, queue, now=utcnow() + timedelta(seconds=settings.lease_seconds + 1))
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    campaign = session.get(Campaign, cid)
    report = BatchReport(cid, 0)
    record_results(
        engine,
        settings,
        campaign,
        old,
        [SendResult(old[0].id, "bounced", 550, "late")],
        "slow-worker:1",
        report,
    )
    assert report.outcomes == {}
    assert _statuses(session, cid)["sent"] == 1 and not subscribers.list_suppressions(session)


def test_scheduled_campaign_is_started_by_the_sweep(engine, session, settings):
    issue_id, list_ids = _setup(session, n=2)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue_id, channel="email", list_ids=list_ids
    )
    at = utcnow() + timedelta(hours=2)
    campaigns.schedule(session, campaign.id, at)
    session.commit()
    queue = ListQueue()
    assert sweep(engine, settings, queue).started == []
    report = sweep(engine, settings, queue, now=at + timedelta(seconds=1))
    assert report.started == [campaign.id] and queue.items == [(campaign.id, 0)]
    sent: list = []
    drain(engine, settings, queue, channel_factory=channel_factory(sent))
    assert len(sent) == 2
    with pytest.raises(campaigns.CampaignError, match="timezone"):
        campaigns.schedule(session, campaign.id, at.replace(tzinfo=None))


def test_claiming_never_double_claims_under_concurrency(engine, session, settings):
    issue_id, list_ids = _setup(session, n=200)
    settings = settings.replace(batch_size=200)
    cid, queue = _start(engine, settings, session, issue_id, list_ids)
    claims: list[list[int]] = []
    sizes: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def worker(k: int) -> None:
        try:
            barrier.wait()
            got = []
            for n in range(10):
                with Session(engine) as s, s.begin():
                    claimed = [r.id for r in claim_batch(s, cid, 0, f"w{k}:{n}", 600, limit=7)]
                sizes.append(len(claimed))
                got += claimed
            claims.append(got)
        except BaseException as exc:  # surfaced below: a dead thread must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    everything = [i for c in claims for i in c]
    assert len(everything) == len(set(everything)) == 200
    assert max(sizes) <= 7  # a claim never takes more than asked (PostgreSQL CTE, not IN-subquery)
    assert sum(1 for c in claims if c) >= 3  # ≤ 70 each: several claimers really raced


def test_rate_limits_hold_rows_back_without_counting_attempts(engine, session, settings):
    from dispatch.delivery.ratelimit import LocalRateLimiter

    issue_id, list_ids = _setup(session, n=5)
    cid, queue = _start(engine, settings, session, issue_id, list_ids, options={"rate_per_hour": 3})
    sent: list = []
    slept: list[float] = []
    limiter = LocalRateLimiter()
    report = deliver_batch(
        engine,
        settings,
        cid,
        0,
        channel_factory=channel_factory(sent),
        limiter=limiter,
        sleep=slept.append,
    )
    assert len(sent) == 3 and report.stopped == "rate limit window full"
    held = session.scalars(
        select(Delivery).where(Delivery.campaign_id == cid, Delivery.status == "pending")
    ).all()
    assert len(held) == 2 and all(d.attempts == 0 and d.next_attempt_at > utcnow() for d in held)
    assert sweep(engine, settings, queue).enqueued == []  # not before the window opens
    # per second: short waits are slept through, not handed back
    settings2 = settings.replace(rate_per_second=1)
    issue2 = make_issue(session, slug="2023-03")
    session.commit()
    cid2, _ = _start(engine, settings2, session, issue2.id, list_ids)
    clock_sent: list = []
    now = [1_000_000.0]
    waits: list[float] = []

    def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter2 = LocalRateLimiter(clock=lambda: now[0])
    report2 = deliver_batch(
        engine,
        settings2,
        cid2,
        0,
        channel_factory=channel_factory(clock_sent),
        limiter=limiter2,
        sleep=fake_sleep,
    )
    assert len(clock_sent) == 5 and report2.outcomes == {"sent": 5}
    assert len(waits) == 4 and all(0 < w <= 1 for w in waits)  # one per second


def test_wechat_fan_out_puts_up_to_10000_followers_in_one_batch(session, settings):
    """Each WeChat batch is one mass send (quota per follower): never cut at the email size."""
    from dispatch.channels import fanout_batch_size
    from dispatch.delivery.fanout import fan_out

    settings = settings.replace(batch_size=4)
    assert fanout_batch_size("email", settings) == 4
    assert fanout_batch_size("wechat", settings) == 10_000
    issue = make_issue(session)
    mailing_list = subscribers.create_list(session, "followers", "Followers")
    for i in range(9):
        sub = subscribers.add_subscriber(session, openid=f"o{i:027d}", name=f"f{i}")
        subscribers.subscribe(session, sub, mailing_list, send_confirmation=False)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="wechat", list_ids=[mailing_list.id]
    )
    session.flush()
    count, batches = fan_out(session, settings, campaign)
    assert count == 9 and batches == [0]
