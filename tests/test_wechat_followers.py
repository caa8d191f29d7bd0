"""Follower sync against the fake WeChat API over HTTP: pages, reruns, unfollows, resume."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from dispatch.models.subscriber import MailingList, Subscriber, Subscription
from dispatch.models.wechat import WechatFollower, WechatSyncRun, WechatTag
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import WechatError
from dispatch.wechat.followers import sync_followers


def _members(session, slug="wechat-followers", status="confirmed") -> int:
    list_id = session.scalar(select(MailingList.id).where(MailingList.slug == slug))
    return session.scalar(
        select(func.count()).where(Subscription.list_id == list_id, Subscription.status == status)
    )


def test_25000_followers_synced_in_pages_rerun_changes_nothing_unfollows_marked(
    session, engine, wechat_settings, fake
):
    fake.state.tags = {2: "星标组", 7: "质量处"}
    openids = fake.state.add_followers(25_000, tags=(7,))
    client = WechatClient(wechat_settings)
    pages = []

    report = sync_followers(
        engine, client, wechat_settings, progress=lambda r: pages.append(r.seen)
    )

    assert pages == [10_000, 20_000, 25_000]  # user/get pages of 10,000 with next_openid
    assert fake.state.calls["user/get"] == 3
    assert fake.state.calls["user/info/batchget"] == 250  # 100 openids a call
    assert (report.created, report.seen, report.unfollowed) == (25_000, 25_000, 0)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 25_000
    assert _members(session) == 25_000
    first = session.scalars(select(Subscriber).where(Subscriber.openid == openids[0])).one()
    assert (first.locale, first.email, first.status) == ("en", None, "active")  # language "en"
    follower = session.scalars(
        select(WechatFollower).where(WechatFollower.openid == openids[1])
    ).one()
    assert follower.unionid == "u" + openids[1] and follower.tag_ids == [7]
    tags = {t.tag_id: (t.name, t.count) for t in session.scalars(select(WechatTag))}
    assert tags == {2: ("星标组", 0), 7: ("质量处", 25_000)}

    again = sync_followers(engine, client, wechat_settings)  # rerun: nothing changes
    assert (again.created, again.updated, again.unfollowed) == (0, 0, 0)
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 25_000

    gone = openids[5_000:5_100]
    fake.state.unfollow(gone)
    third = sync_followers(engine, client, wechat_settings)
    assert (third.created, third.unfollowed, third.seen) == (0, 100, 24_900)
    session.expire_all()
    assert _members(session) == 24_900 and _members(session, status="unsubscribed") == 100
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 25_000  # none deleted
    left = session.scalars(select(WechatFollower).where(WechatFollower.openid == gone[0])).one()
    assert left.subscribed is False


def test_a_page_failing_halfway_resumes_from_next_openid(session, engine, wechat_settings, fake):
    fake.state.add_followers(25_000)
    client = WechatClient(wechat_settings)
    fake.state.faults.clear()
    calls = {"n": 0}
    original = client.user_get

    def flaky(next_openid=""):
        calls["n"] += 1
        if calls["n"] == 2:  # the second page fails: WeChat is down
            fake.state.add_fault("user/get", errcode=45009)
        return original(next_openid)

    client.user_get = flaky  # type: ignore[method-assign]
    with pytest.raises(Exception) as info:
        sync_followers(engine, client, wechat_settings)
    assert WechatError.from_exception(info.value).errcode == 45009
    run = session.scalars(select(WechatSyncRun)).one()
    assert (run.status, run.pages, run.seen) == ("running", 1, 10_000)
    assert run.next_openid and run.error
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 10_000  # page 1 only

    before = fake.state.calls["user/get"]
    report = sync_followers(engine, client, wechat_settings)
    assert report.resumed and report.seen == 25_000 and report.created == 25_000
    assert fake.state.calls["user/get"] - before == 2  # pages 2 and 3, page 1 not fetched again
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 25_000
    assert report.unfollowed == 0  # page 1's followers were seen by the same (resumed) run


def test_followers_sync_command_and_daily_beat_entry(session, wechat_settings, fake):
    import json

    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings
    from dispatch.tasks import WECHAT_SYNC, beat_schedule

    set_settings(wechat_settings)
    fake.state.add_followers(120)
    out = CliRunner().invoke(main, ["wechat", "followers", "sync", "--list", "gzh", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert (data["created"], data["seen"]) == (120, 120)
    assert _members(session, slug="gzh") == 120
    assert beat_schedule(wechat_settings)["dispatch-wechat-followers"]["task"] == WECHAT_SYNC
    assert "dispatch-wechat-followers" not in beat_schedule(
        wechat_settings.replace(wechat_app_id="")
    )
