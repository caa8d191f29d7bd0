"""Mass sending through the campaign machinery against the fake WeChat API over real HTTP."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.wechat import WechatChannel
from dispatch.delivery import campaigns as campaign_service
from dispatch.delivery.engine import deliver_batch, drain, sweep
from dispatch.delivery.queue import ListQueue
from dispatch.dev.wechat_testing import drafted_issue, seed_followers
from dispatch.models import Campaign, Delivery, Event, utcnow
from dispatch.models.wechat import WechatMassChunk
from dispatch.wechat.errors import RetryPolicy

FAST = RetryPolicy(attempts=3, scale=0.0)


@pytest.fixture
def wechat_settings(wechat_settings):
    return wechat_settings.replace(batch_size=10_000, retry_base_seconds=60.0)


@pytest.fixture
def issue(session, wechat_settings, tmp_path):
    issue = drafted_issue(session, wechat_settings, tmp_path, 2, 1)
    return issue


def factory_with(sleeps: list[float] | None = None, policy: RetryPolicy = FAST, clock=utcnow):
    def factory(kind, settings, context):
        assert kind == "wechat"
        return WechatChannel(
            settings,
            context,
            policy=policy,
            sleep=(sleeps.append if sleeps is not None else lambda s: None),
            clock=clock,
        )

    return factory


def start_campaign(session, engine, settings, issue, list_id, **options):
    campaign, _ = campaign_service.create_or_get(
        session, issue_id=issue.id, channel="wechat", list_ids=[list_id], options=options
    )
    session.commit()
    queue = ListQueue()
    campaign_service.start(engine, settings, campaign.id, queue)
    return campaign, queue


def _sends_per_batch(session, engine, settings, fake, issue, followers: int) -> int:
    list_id = seed_followers(
        session, followers, list_slug=f"probe-{followers}", openid_prefix="oPROBE"
    )
    campaign, queue = start_campaign(session, engine, settings, issue, list_id)
    assert len(queue.items) == 1
    drain(engine, settings, queue, channel_factory=factory_with())
    return sum(
        1 for m in fake.state.mass_sends() if m.clientmsgid.startswith(f"dispatch-{campaign.id}-")
    )


WHOLE_BATCH = (
    "the delivery engine split one WeChat batch into {n} channel.send() calls; a batch "
    "must reach WechatChannel.send() whole (WechatChannel.chunk_size = 10,000), or every "
    "small chunk becomes its own mass send and uses up the account's mass-send quota"
)


def test_engine_hands_the_wechat_channel_a_whole_batch(
    session, engine, wechat_settings, fake, issue
):
    sends = _sends_per_batch(session, engine, wechat_settings, fake, issue, 120)
    assert sends == 1, WHOLE_BATCH.format(n=sends)


def test_25000_openids_go_out_in_three_chunks_each_once(
    session, engine, wechat_settings, fake, issue
):
    probe = _sends_per_batch(session, engine, wechat_settings, fake, issue, 120)
    if probe != 1:  # fail fast: 25,000 openids in tiny chunks would take minutes
        pytest.fail(WHOLE_BATCH.format(n=probe))
    fake.state.mass.clear()
    list_id = seed_followers(session, 25_000)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    assert len(queue.items) == 3

    drain(engine, wechat_settings, queue, channel_factory=factory_with())

    sends = fake.state.mass_sends("openids")
    assert sorted(len(m.openids) for m in sends) == [8_333, 8_333, 8_334]  # spread evenly
    assert sorted(m.clientmsgid for m in sends) == sorted(
        f"dispatch-{campaign.id}-{b}" for b in range(3)
    )
    everyone = [o for m in sends for o in m.openids]
    assert len(everyone) == len(set(everyone)) == 25_000
    msg_by_openid = {o: str(m.msg_id) for m in sends for o in m.openids}
    rows = session.execute(
        select(Delivery.openid, Delivery.batch_no, Delivery.external_id, Delivery.status).where(
            Delivery.campaign_id == campaign.id
        )
    ).all()
    assert len(rows) == 25_000 and {r.status for r in rows} == {"sent"}
    per_batch = defaultdict(set)
    for r in rows:
        assert r.external_id == msg_by_openid[r.openid]  # each recipient tied to its chunk's msg_id
        per_batch[r.batch_no].add(r.external_id)
    assert all(len(ids) == 1 for ids in per_batch.values()) and len(per_batch) == 3
    chunks = session.scalars(
        select(WechatMassChunk).where(WechatMassChunk.campaign_id == campaign.id)
    ).all()
    assert sorted(c.status for c in chunks) == ["sent"] * 3 and all(c.attempts == 1 for c in chunks)
    session.expire_all()
    assert session.get(Campaign, campaign.id).status == "finished"

    # triggering the batches again sends nothing more
    for b in range(3):
        deliver_batch(engine, wechat_settings, campaign.id, b, channel_factory=factory_with())
    assert len(fake.state.mass_sends("openids")) == 3


def test_chunk_retried_after_dropped_connection_is_not_sent_twice(
    session, engine, wechat_settings, fake, issue
):
    list_id = seed_followers(session, 6)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    # WeChat takes the send, then the connection drops before the answer; no in-process retry
    fake.state.add_fault("message/mass/send", drop=True, after_processing=True)
    drain(
        engine, wechat_settings, queue, channel_factory=factory_with(policy=RetryPolicy(attempts=1))
    )

    statuses = set(
        session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign.id))
    )
    assert statuses == {"deferred"}
    assert len(fake.state.mass_sends()) == 1  # it did go out once

    # the engine's retry comes due: same batch, same clientmsgid → 45065 → the earlier msg_id
    session.execute(
        update(Delivery).where(Delivery.campaign_id == campaign.id).values(next_attempt_at=utcnow())
    )
    session.commit()
    deliver_batch(engine, wechat_settings, campaign.id, 0, channel_factory=factory_with())

    sends = fake.state.mass_sends()
    assert len(sends) == 1 and fake.state.calls["message/mass/send"] == 2
    session.expire_all()
    rows = session.execute(
        select(Delivery.status, Delivery.external_id).where(Delivery.campaign_id == campaign.id)
    ).all()
    assert {r.status for r in rows} == {"sent"} and {r.external_id for r in rows} == {
        str(sends[0].msg_id)
    }


def test_dropped_connection_retried_in_process_still_sends_once(
    session, wechat_settings, fake, issue
):
    fake.state.add_fault("message/mass/send", drop=True, after_processing=True)
    channel = WechatChannel(
        wechat_settings,
        CampaignContext(77, issue.id, 0, (1,), False),
        policy=FAST,
        sleep=lambda s: None,
    )
    results = channel.send([Recipient(i, i, None, "", "zh-CN", f"o{i}") for i in range(1, 6)])
    assert {r.outcome for r in results} == {"sent"}
    assert len(fake.state.mass_sends()) == 1
    assert {r.external_id for r in results} == {str(fake.state.mass_sends()[0].msg_id)}


def test_minute_limit_backs_off_with_jitter_then_succeeds(session, wechat_settings, fake, issue):
    fake.state.add_fault("message/mass/send", errcode=45011, times=2, errmsg="api minute-quota")
    sleeps: list[float] = []
    channel = WechatChannel(
        wechat_settings,
        CampaignContext(78, issue.id, 0, (1,), False),
        policy=RetryPolicy(attempts=4, scale=0.001),
        sleep=sleeps.append,
    )
    results = channel.send([Recipient(i, i, None, "", "zh-CN", f"o{i}") for i in range(1, 4)])
    assert {r.outcome for r in results} == {"sent"}
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1]  # exponential backoff, waited twice
    assert fake.state.calls["message/mass/send"] == 3 and len(fake.state.mass_sends()) == 1


def _beijing(day, hour: int, minute: int = 0) -> datetime:
    """A Beijing wall-clock time as UTC (WeChat's quota day is the Beijing calendar day)."""
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=ZoneInfo("Asia/Shanghai"))
    return local.astimezone(UTC)


def _waiting(session, campaign_id):
    session.expire_all()
    return session.get(Campaign, campaign_id)


def test_45009_waits_for_the_next_quota_day_then_resumes_by_itself(
    session, engine, wechat_settings, fake, issue
):
    list_id = seed_followers(session, 10_001)  # two batches: 5,000 and 5,001 openids
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    assert len(queue.items) == 2
    fake.state.mass_daily_calls = 1  # the account has one mass send left today
    day = (utcnow() + timedelta(days=2)).astimezone(ZoneInfo("Asia/Shanghai")).date()
    late_evening = _beijing(day, 23, 50)
    reset = _beijing(day + timedelta(days=1), 0)  # midnight Beijing = 16:00 UTC the day before
    assert reset.hour == 16

    evening = factory_with(clock=lambda: late_evening)
    drain(engine, wechat_settings, queue, channel_factory=evening, clock=lambda: late_evening)
    assert len(fake.state.mass_sends()) == 1  # batch 0 went out; batch 1 got 45009
    assert fake.state.calls["message/mass/send"] == 2  # a daily quota: no retry within minutes
    waiting = _waiting(session, campaign.id)
    assert waiting.status == "running" and waiting.paused_reason is None  # no operator needed
    assert waiting.waiting_until == reset
    assert "45009" in waiting.waiting_reason and "额度" in waiting.waiting_reason  # both languages
    assert reset.strftime("%Y-%m-%d %H:%M") in waiting.waiting_reason
    held = session.execute(
        select(Delivery.status, Delivery.next_attempt_at, Delivery.attempts).where(
            Delivery.campaign_id == campaign.id, Delivery.batch_no == 1
        )
    ).all()
    assert {(r.status, r.next_attempt_at, r.attempts) for r in held} == {("deferred", reset, 0)}

    # the sweep (beat) before the reset: nothing is due, nothing is sent, nothing finishes
    before = ListQueue()
    report = sweep(engine, wechat_settings, before, now=reset - timedelta(minutes=1))
    assert before.items == [] and report.enqueued == [] and report.finished == []
    assert fake.state.calls["message/mass/send"] == 2

    # WeChat's quota day turns; the next sweep hands batch 1 back and it goes out
    fake.state.new_quota_day()
    after_reset = reset + timedelta(seconds=30)
    after = ListQueue()
    sweep(engine, wechat_settings, after, now=after_reset)
    assert after.items == [(campaign.id, 1)]
    at_reset = factory_with(clock=lambda: after_reset)
    drain(engine, wechat_settings, after, channel_factory=at_reset, clock=lambda: after_reset)

    sends = fake.state.mass_sends("openids")
    assert sorted(m.clientmsgid for m in sends) == [
        f"dispatch-{campaign.id}-0",
        f"dispatch-{campaign.id}-1",
    ]
    everyone = [o for m in sends for o in m.openids]
    assert len(everyone) == len(set(everyone)) == 10_001  # every follower exactly once
    done = _waiting(session, campaign.id)
    assert done.status == "finished" and done.waiting_reason is None
    statuses = session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign.id))
    assert set(statuses) == {"sent"}

    # a later sweep finds nothing left to send
    later = ListQueue()
    sweep(engine, wechat_settings, later, now=after_reset + timedelta(days=1))
    assert later.items == [] and len(fake.state.mass_sends()) == 2


@pytest.mark.parametrize(("code", "action"), [(48003, "群发"), (48004, "banned"), (40164, "IP")])
def test_account_refusals_pause_with_the_operators_action(
    session, engine, wechat_settings, fake, issue, code, action
):
    list_id = seed_followers(session, 3)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    fake.state.add_fault("message/mass/send", errcode=code, times=5)
    drain(engine, wechat_settings, queue, channel_factory=factory_with())
    session.expire_all()
    paused = session.get(Campaign, campaign.id)
    assert paused.status == "paused" and str(code) in paused.paused_reason
    assert action in paused.paused_reason
    # these need the operator: no quota day brings them back by itself
    later = ListQueue()
    sweep(engine, wechat_settings, later, now=utcnow() + timedelta(days=2))
    assert later.items == [] and session.get(Campaign, campaign.id).status == "paused"


def test_45028_pauses_the_campaign_with_a_clear_reason(
    session, engine, wechat_settings, fake, issue
):
    list_id = seed_followers(session, 10)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    fake.state.mass_quota = 0
    drain(engine, wechat_settings, queue, channel_factory=factory_with())
    session.expire_all()
    paused = session.get(Campaign, campaign.id)
    assert paused.status == "paused"
    assert "45028" in paused.paused_reason and "quota" in paused.paused_reason
    assert set(
        session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign.id))
    ) == {"pending"}
    assert not fake.state.mass_sends()


def test_invalid_media_fails_with_code_and_message_kept(
    session, engine, wechat_settings, fake, issue
):
    list_id = seed_followers(session, 3)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    fake.state.add_fault("message/mass/send", errcode=40007, errmsg="invalid media_id")
    drain(engine, wechat_settings, queue, channel_factory=factory_with())
    rows = session.execute(
        select(Delivery.status, Delivery.last_code, Delivery.last_text).where(
            Delivery.campaign_id == campaign.id
        )
    ).all()
    assert {r.status for r in rows} == {"failed"} and {r.last_code for r in rows} == {40007}
    assert all("invalid media_id" in r.last_text for r in rows)
    assert session.scalar(
        select(Event.id).where(Event.campaign_id == campaign.id, Event.kind == "failed")
    )


def test_a_consumed_draft_is_never_reused(session, engine, wechat_settings, fake, issue):
    """Two campaigns of one issue, and a draft published from the console in between: each
    mass send uses a draft nobody used, and a gone draft is replaced (no 40007)."""
    from dispatch.models.wechat import WechatDraft

    first_list = seed_followers(session, 3, list_slug="one", openid_prefix="oOne")
    second_list = seed_followers(session, 3, list_slug="two", openid_prefix="oTwo")
    for list_id in (first_list, second_list):
        campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
        drain(engine, wechat_settings, queue, channel_factory=factory_with())
        assert set(
            session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign.id))
        ) == {"sent"}
        fake.state.drafts.clear()  # any draft left is published from the console meanwhile
    used = [m.media_id for m in fake.state.mass_sends()]
    assert len(used) == 2 and len(set(used)) == 2  # two sends, two drafts
    assert fake.state.calls["draft/add"] >= 2
    session.expire_all()
    drafts = session.scalars(select(WechatDraft)).all()
    assert all(d.consumed_at is not None for d in drafts if d.media_id in used)
    assert fake.state.calls["media/uploadimg"] == 2  # the fixture's two images: uploads reused


def test_20001_followers_produce_no_batch_under_two(session, engine, wechat_settings, fake, issue):
    list_id = seed_followers(session, 20_001)
    campaign, queue = start_campaign(session, engine, wechat_settings, issue, list_id)
    sizes = dict(
        session.execute(
            select(Delivery.batch_no, func.count())
            .where(Delivery.campaign_id == campaign.id)
            .group_by(Delivery.batch_no)
        ).all()
    )
    assert min(sizes.values()) >= 2 and max(sizes.values()) <= 10_000
    assert sum(sizes.values()) == 20_001 and len(sizes) == 3


def test_job_finish_err_fails_its_chunk(session, engine, wechat_settings, fake, issue):
    from dispatch.dev.wechat_fake import new_aes_key
    from dispatch.wechat.callbacks import handle_callback

    fake.state.callback_token, fake.state.callback_aes_key = "tok", new_aes_key()
    hooked = wechat_settings.replace(wechat_token="tok", wechat_aes_key=fake.state.callback_aes_key)
    list_id = seed_followers(session, 5)
    campaign, queue = start_campaign(session, engine, hooked, issue, list_id)
    drain(engine, hooked, queue, channel_factory=factory_with())
    msg_id = fake.state.mass_sends()[0].msg_id
    params, body = fake.api.sign_and_encrypt(fake.api.mass_finish_xml(msg_id, status="err(10001)"))
    assert handle_callback(session, hooked, params, body) == "success"
    session.commit()
    rows = session.execute(
        select(Delivery.status, Delivery.last_text).where(Delivery.campaign_id == campaign.id)
    ).all()
    assert {r.status for r in rows} == {"failed"}
    assert all("err(10001)" in r.last_text for r in rows)
    chunk = session.scalars(select(WechatMassChunk)).one()
    assert (chunk.error_count, chunk.event["status"]) == (5, "err(10001)")


def test_tag_mode_sends_one_sendall_with_tag_id(session, engine, wechat_settings, fake, issue):
    list_id = seed_followers(session, 5)
    campaign, queue = start_campaign(
        session, engine, wechat_settings, issue, list_id, wechat_mode="tag", wechat_tag_id=7
    )
    drain(engine, wechat_settings, queue, channel_factory=factory_with())
    sends = fake.state.mass_sends("tag")
    assert (
        len(sends) == 1
        and sends[0].tag_id == 7
        and sends[0].clientmsgid == f"dispatch-{campaign.id}-tag"
    )
    assert set(
        session.scalars(select(Delivery.external_id).where(Delivery.campaign_id == campaign.id))
    ) == {str(sends[0].msg_id)}


def test_test_campaign_sends_previews(session, engine, wechat_settings, fake, issue):
    list_id = seed_followers(session, 2)
    from dispatch.models.subscriber import Subscription

    ids = list(
        session.scalars(select(Subscription.subscriber_id).where(Subscription.list_id == list_id))
    )
    campaign = campaign_service.create_test(
        session, issue_id=issue.id, channel="wechat", subscriber_ids=ids
    )
    session.commit()
    queue = ListQueue()
    campaign_service.start(engine, wechat_settings, campaign.id, queue)
    drain(engine, wechat_settings, queue, channel_factory=factory_with())
    previews = fake.state.mass_sends("preview")
    assert len(previews) == 2 and not fake.state.mass_sends("openids")


def test_prepare_campaign_uploads_before_claiming(session, wechat_settings, fake, tmp_path):
    from dispatch.channels import prepare_channel
    from dispatch.content.store import publish_source
    from dispatch.paths import SAMPLE_ISSUE_DIR

    sample = publish_source(session, SAMPLE_ISSUE_DIR)
    session.commit()
    prepare_channel("wechat", wechat_settings, CampaignContext(1, sample.id, 0, (1,), False))
    uploads = fake.state.calls["media/uploadimg"] + fake.state.calls["material/add_material"]
    assert uploads > 0 and fake.state.calls["draft/add"] == 0  # a draft is made per send
    assert set(fake.state.materials.values()) == {"image"}  # the cover: permanent image material
    prepare_channel("wechat", wechat_settings, CampaignContext(1, sample.id, 1, (1,), False))
    again = fake.state.calls["media/uploadimg"] + fake.state.calls["material/add_material"]
    assert again == uploads  # cached: nothing uploaded twice


def test_system_busy_is_retried_then_sent(session, wechat_settings, fake, issue):
    fake.state.add_fault("message/mass/send", errcode=-1, errmsg="system error")
    sleeps: list[float] = []
    channel = WechatChannel(
        wechat_settings,
        CampaignContext(79, issue.id, 0, (1,), False),
        policy=RetryPolicy(attempts=3, scale=0.001),
        sleep=sleeps.append,
    )
    results = channel.send([Recipient(i, i, None, "", "zh-CN", f"o{i}") for i in range(1, 3)])
    assert {r.outcome for r in results} == {"sent"} and len(sleeps) == 1
    assert fake.state.calls["message/mass/send"] == 2 and len(fake.state.mass_sends()) == 1


def test_a_single_openid_chunk_fails_clearly(session, wechat_settings, fake, issue):
    channel = WechatChannel(
        wechat_settings, CampaignContext(80, issue.id, 0, (1,), False), policy=FAST
    )
    results = channel.send(
        [Recipient(1, 1, None, "", "zh-CN", "oOnly"), Recipient(2, 2, "a@b.c", "", "zh-CN")]
    )
    assert [(r.outcome, r.code) for r in results] == [("failed", None), ("failed", 40130)]
    assert "at least 2 openids" in results[1].text and "no WeChat openid" in results[0].text
    assert fake.state.calls["message/mass/send"] == 0
