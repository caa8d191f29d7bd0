"""The reputation guard: a campaign pauses itself on hard bounces or complaints, naming domains.

Sent through the real email channel to a scripted SMTP server on loopback that refuses the
addresses of a dead domain with 550 5.1.1, as a stale alumni list would be answered.
"""

from __future__ import annotations

from sqlalchemy import func, select

from dispatch import events
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns, reputation
from dispatch.delivery.engine import deliver_batch, drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Campaign, Delivery, Event
from dispatch.paths import PROJECT_ROOT
from dispatch.subscribers import service as subscribers
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import make_list_with

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"
DEAD = "old-alumni.example"


def _addresses(n: int, every: int) -> list[str]:
    """n addresses; every `every`-th one on the dead domain."""
    return [
        f"a{i:04d}@{DEAD}" if i % every == every - 1 else f"r{i:04d}@example.net" for i in range(n)
    ]


def _campaign(session, settings, server, emails: list[str]) -> tuple[int, ListQueue]:
    for email in emails:
        if email.endswith("@" + DEAD):
            server.script.rcpt[email] = f"550 5.1.1 <{email}>: Recipient address rejected"
    issue = publish_source(session, SAMPLE_ISSUE)
    list_id = make_list_with(session, "alumni", emails)
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id], tracking=False
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(session.get_bind(), settings, campaign.id, queue)
    return campaign.id, queue


def _guard_settings(settings, server):
    """A window of 100 over chunks of 50 (pinned, whatever the default): the guard's look
    after a batch's first chunk still sees the previous batch's last 50 rows."""
    return settings.replace(
        smtp_url=server.url,
        batch_size=100,
        chunk_size=50,
        reputation_window=100,
        reputation_min_sample=50,
        reputation_max_bounce_rate=0.05,
        reputation_max_complaint_rate=0.001,
    )


def _finished(session, campaign_id: int) -> int:
    return session.scalar(
        select(func.count()).where(
            Delivery.campaign_id == campaign_id,
            Delivery.status.in_(("sent", "bounced", "failed")),
        )
    )


def test_one_in_ten_hard_bouncing_pauses_within_the_window_and_names_the_domain(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
):
    settings = _guard_settings(settings, smtp_server)
    emails = _addresses(300, every=10)
    campaign_id, queue = _campaign(session, settings, smtp_server, emails)
    drain(engine, settings, queue)
    session.expire_all()
    campaign = session.get(Campaign, campaign_id)
    assert campaign.status == "paused"
    assert DEAD in campaign.paused_reason and "hard bounces" in campaign.paused_reason
    assert "硬退信" in campaign.paused_reason
    finished = _finished(session, campaign_id)
    assert 50 <= finished <= settings.reputation_window  # paused within the configured window
    pause = session.scalars(
        select(Event).where(Event.campaign_id == campaign_id, Event.kind == "campaign_paused")
    ).one()
    assert pause.data["by"] == "reputation"
    assert pause.data["worst_domains"][0]["domain"] == DEAD
    assert pause.data["bounce_rate"] >= 0.05
    # nobody was lost: everything not finished is still waiting
    counts = campaigns.counts(session, campaign_id)
    assert counts["pending"] + finished == 300

    # the administrator cleans the list (the dead domain's remaining addresses) and resumes:
    # the fresh window holds no bounces, so it runs to the end
    for email in emails:
        if email.endswith("@" + DEAD):
            subscribers.suppress(session, email=email, reason="manual", source="cleanup")
    session.commit()
    campaigns.resume(engine, settings, campaign_id, queue)
    drain(engine, settings, queue)
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "finished"
    received = {a for m in smtp_server.messages for a in m.rcpt_tos}
    assert received == {e for e in emails if not e.endswith("@" + DEAD)}
    assert len(smtp_server.messages) == len(received)  # each once


def test_a_campaign_under_the_thresholds_never_pauses(engine, session, settings, smtp_server):  # noqa: F811
    settings = _guard_settings(settings, smtp_server)
    emails = _addresses(300, every=50)  # 2 % hard bounces
    campaign_id, queue = _campaign(session, settings, smtp_server, emails)
    drain(engine, settings, queue)
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "finished"
    assert campaigns.counts(session, campaign_id)["bounced"] == 6
    assert not session.scalar(
        select(func.count()).where(
            Event.campaign_id == campaign_id, Event.kind == "campaign_paused"
        )
    )


def test_complaints_arriving_later_pause_the_campaign(engine, session, settings, smtp_server):  # noqa: F811
    settings = _guard_settings(settings, smtp_server)
    emails = _addresses(300, every=1000)  # no bounces at all
    campaign_id, queue = _campaign(session, settings, smtp_server, emails)
    deliver_batch(engine, settings, campaign_id, 0)  # the first 100 go out
    assert reputation.guard(engine, settings, campaign_id) is None  # no complaint yet
    delivered = session.scalars(
        select(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == "sent")
    ).all()[:2]
    for row in delivered:  # ARF reports as the bounce intake records them
        events.record(
            session, "complained", campaign_id=campaign_id, delivery_id=row.id, data={"arf": True}
        )
    session.commit()
    reason = reputation.guard(engine, settings, campaign_id)
    assert reason and "2 complaints (2.00%, limit 0.10%)" in reason
    assert "example.net (2/100)" in reason
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "paused"


def test_no_verdict_below_the_minimum_sample(engine, session, settings, smtp_server):  # noqa: F811
    settings = _guard_settings(settings, smtp_server).replace(reputation_min_sample=500)
    emails = _addresses(200, every=2)  # half bounce, but too few to judge
    campaign_id, queue = _campaign(session, settings, smtp_server, emails)
    drain(engine, settings, queue)
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "finished"


def test_hard_bounces_reported_later_by_dsn_count_too(engine, session, settings, smtp_server):  # noqa: F811
    """A relay accepts everyone; the DSNs arrive afterwards as bounce_hard events
    (dispatch.bounces)."""
    settings = _guard_settings(settings, smtp_server)
    emails = _addresses(300, every=1000)  # the relay refuses nobody
    campaign_id, queue = _campaign(session, settings, smtp_server, emails)
    deliver_batch(engine, settings, campaign_id, 0)
    sent = session.scalars(
        select(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == "sent")
    ).all()
    for row in sent[:8]:
        events.record(
            session,
            "bounce_hard",
            campaign_id=campaign_id,
            delivery_id=row.id,
            data={"status": "5.1.1"},
        )
    session.commit()
    drain(engine, settings, queue)  # the next batch consults the guard after its chunks
    session.expire_all()
    campaign = session.get(Campaign, campaign_id)
    assert campaign.status == "paused"
    assert "8 hard bounces" in campaign.paused_reason
    assert campaigns.counts(session, campaign_id)["pending"] > 0


def test_the_guard_runs_only_when_the_chunks_own_transaction_found_a_signal(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
    monkeypatch,
):
    """Its first probe (any hard bounce or complaint at all?) is asked in the chunk's recording
    transaction: a clean campaign never opens the guard's own transaction, while complaints
    that arrive between batches still pause the campaign at the next batch's first chunk."""
    settings = _guard_settings(settings, smtp_server)
    emails = _addresses(300, every=1000)  # no bounces at all
    campaign_id, _ = _campaign(session, settings, smtp_server, emails)
    guarded: list[int] = []
    real_guard = reputation.guard

    def counting_guard(engine, settings, campaign_id):
        guarded.append(campaign_id)
        return real_guard(engine, settings, campaign_id)

    monkeypatch.setattr(reputation, "guard", counting_guard)
    deliver_batch(engine, settings, campaign_id, 0)
    assert guarded == []  # 100 sent, asked after the first chunk: nothing to look at
    sent = session.scalars(
        select(Delivery).where(Delivery.campaign_id == campaign_id, Delivery.status == "sent")
    ).all()[:2]
    for row in sent:
        events.record(
            session, "complained", campaign_id=campaign_id, delivery_id=row.id, data={"arf": True}
        )
    session.commit()
    deliver_batch(engine, settings, campaign_id, 1)
    assert guarded == [campaign_id]  # after its first chunk, then it stopped
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "paused"
    assert _finished(session, campaign_id) == 150  # batch 1 stopped after its first chunk
