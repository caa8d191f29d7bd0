"""The access token: shared through Redis by worker processes, refreshed once, never in a loop."""

from __future__ import annotations

import multiprocessing

import pytest
import redis as redis_lib
from wechatpy.exceptions import WeChatClientException

from dispatch.wechat.client import WechatClient


@pytest.fixture
def fake(fake):
    fake.state.drafts["DRAFT1"] = [{"title": "t"}]  # a draft is used once: one per send
    fake.state.drafts["DRAFT2"] = [{"title": "t"}]
    return fake


@pytest.fixture
def wechat_settings(tmp_path, fake, redis_url, redis_prefix):
    from dispatch.config import load_settings

    return fake.settings_for(load_settings(env={})).replace(
        data_dir=tmp_path, redis_url=redis_url, redis_key_prefix=redis_prefix
    )


def _worker(settings, n, barrier, results) -> None:
    """One worker process: its own client, the shared Redis token, one mass send."""
    try:
        client = WechatClient(settings)
        barrier.wait(timeout=30)
        answer = client.mass_send_openids([f"o{n}a", f"o{n}b"], f"DRAFT{n}", f"proc-{n}")
        results.put((n, "ok", answer["msg_id"]))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put((n, "error", repr(exc)))


def test_expired_token_refreshed_once_for_two_worker_processes(wechat_settings, fake):
    assert WechatClient(wechat_settings).access_token  # the campaign's token, cached in Redis
    assert fake.state.token_fetches == 1
    fake.state.expire_tokens()  # mid-campaign: WeChat now answers 42001 to it
    fake.state.token_delay = 0.3  # both workers see 42001 while the refresh is in flight

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(wechat_settings, n, barrier, results)) for n in (1, 2)
    ]
    for p in procs:
        p.start()
    outcomes = sorted(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)

    assert [o[1] for o in outcomes] == ["ok", "ok"], outcomes
    assert fake.state.token_fetches == 2  # the first fetch plus ONE shared refresh
    assert fake.state.calls["message/mass/send"] == 4  # each: 42001, then success
    assert len(fake.state.mass_sends()) == 2


def test_token_and_its_refresh_time_live_in_redis(wechat_settings, fake, redis_url):
    first = WechatClient(wechat_settings)
    token = first.access_token
    second = WechatClient(wechat_settings)  # another process would build its own client
    assert second.access_token == token and fake.state.token_fetches == 1
    store = second.token_store
    r = redis_lib.Redis.from_url(redis_url)
    assert float(r.hget(store.key, "refresh_at")) < float(r.hget(store.key, "expires_at"))
    assert 0 < r.ttl(store.key) <= 7200
    r.hset(store.key, "refresh_at", 0)  # the refresh time has come: refreshed before expiry
    assert second.access_token == token  # stable_token: the same token while it is valid
    assert fake.state.calls["stable_token"] == 2 and float(r.hget(store.key, "refresh_at")) > 0


def test_token_rejected_again_after_refresh_is_not_retried_forever(wechat_settings, fake):
    client = WechatClient(wechat_settings)
    fake.state.add_fault("message/mass/get", errcode=40001, times=10)
    with pytest.raises(WeChatClientException) as info:
        client.mass_get("1")
    assert info.value.errcode == 40001
    assert fake.state.calls["message/mass/get"] == 2  # the call and ONE retry
    assert fake.state.token_fetches == 2  # the first token and one refresh


def test_client_needs_app_credentials(wechat_settings):
    with pytest.raises(ValueError, match="wechat_app_id"):
        WechatClient(wechat_settings.replace(wechat_app_secret=""))
