"""Issue 12, the pure parts: provider backoff (jitter, escalation, gradual return), sending
windows and spreading, the warm-up decision."""

from __future__ import annotations

import random
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from dispatch.config import load_settings
from dispatch.delivery import warmup
from dispatch.delivery.throttle import ProviderThrottle
from dispatch.delivery.windows import (
    WindowError,
    check_spread,
    parse_window,
    spread_rate_per_hour,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["local", "redis"])
def throttle(request, redis_url, redis_prefix):
    clock = Clock()
    settings = load_settings(env={}).replace(
        throttle_base_seconds=60,
        throttle_max_seconds=600,
        throttle_recovery_seconds=300,
        redis_key_prefix=redis_prefix,
    )
    client = None
    if request.param == "redis":
        import redis

        client = redis.Redis.from_url(redis_url)
    yield ProviderThrottle(settings, client, clock=clock, rng=random.Random(1)), clock
    if client is not None:
        for key in client.scan_iter(match=f"{redis_prefix}*"):
            client.delete(key)
        client.close()


def test_a_throttle_backs_off_with_jitter_then_speed_returns_gradually(throttle):
    t, clock = throttle
    first = t.throttled("netease", "421 HL:IFC")
    assert 45 <= first.until - clock.now <= 75  # 60 s x 0.75..1.25
    assert t.speed("netease") == 0.0 and t.speed("qq") == 1.0  # only NetEase
    again = t.throttled("netease", "421 HL:IFC")  # a reply to a message already in flight
    assert again.until == first.until and again.strikes == 1
    clock.now = first.until + 1
    assert 0.5 <= t.speed("netease") < 0.51  # half speed right after the backoff
    clock.now = first.until + 150
    assert 0.74 < t.speed("netease") < 0.76  # halfway back
    second = t.throttled("netease", "421 HL:IFC")  # throttled again while recovering
    assert second.strikes == 2 and 90 <= second.until - clock.now <= 150  # doubled
    clock.now = second.until + 301
    assert t.speed("netease") == 1.0 and t.state("netease").strikes == 0  # forgotten


def test_held_messages_return_spread_after_the_backoff(throttle):
    t, clock = throttle
    state = t.throttled("qq", "550 Connection frequency limited")
    times = [t.retry_at("qq") for _ in range(50)]
    assert min(times) >= state.until and max(times) <= state.until + 0.25 * 75 + 1
    assert len({round(x) for x in times}) > 5  # not all in one second


@pytest.mark.parametrize(
    "window,inside,outside",
    [
        ("08:00-21:00", "2026-03-02T08:00", "2026-03-02T21:00"),
        ("21:00-07:00", "2026-03-02T23:30", "2026-03-02T12:00"),  # across midnight
        ("9:30-10:00", "2026-03-02T09:45", "2026-03-02T09:29"),
    ],
)
def test_windows_in_shanghai_time(window, inside, outside):
    w = parse_window(window, "Asia/Shanghai")
    assert w.contains(datetime.fromisoformat(inside).replace(tzinfo=SHANGHAI))
    later = datetime.fromisoformat(outside).replace(tzinfo=SHANGHAI)
    assert not w.contains(later)
    opens = w.next_open(later)
    assert opens > later and w.contains(opens) and opens.time() == w.start


@pytest.mark.parametrize("bad", ["8-21", "25:00-26:00", "08:00-21:61", "08:00", "soon"])
def test_a_bad_window_is_refused_with_the_value(bad):
    with pytest.raises(WindowError) as info:
        parse_window(bad, "Asia/Shanghai")
    assert repr(bad) in str(info.value)
    with pytest.raises(WindowError, match="Mars/Base"):
        parse_window("08:00-09:00", "Mars/Base")


def test_spreading():
    assert check_spread(0) == 0 and check_spread("6") == 6
    with pytest.raises(WindowError):
        check_spread(0.5)
    assert spread_rate_per_hour(20_000, 10) == 2000


@pytest.mark.parametrize(
    "previous,sent,bounced,complained,allowance,reason",
    [
        (200, 200, 1, 0, 400, "grown"),
        (200, 60, 0, 0, 200, "held: less than half"),
        (400, 400, 12, 0, 400, "held: over threshold"),  # 3 % bounces
        (800, 800, 40, 0, 400, "reduced"),  # 5 %: more than twice the threshold
        (800, 800, 0, 2, 400, "reduced"),  # 0.25 % complaints
        (150_000, 150_000, 0, 0, 200_000, "grown"),  # capped at the target
    ],
)
def test_warm_up_decision(previous, sent, bounced, complained, allowance, reason):
    settings = load_settings(env={})
    got, why = warmup.decide(
        settings, previous, {"sent": sent, "bounced": bounced, "complained": complained}
    )
    assert got == allowance and why.startswith(reason)


def test_the_shipped_plan_ramps_from_200_to_the_target():
    plan = warmup.projected(load_settings(env={}), days=20)
    assert plan[0] == 200 and plan[1] == 400 and plan[-1] == 200_000


def test_spreading_becomes_a_campaign_rate():
    from dispatch.delivery.engine import campaign_limits
    from dispatch.models import Campaign

    campaign = Campaign(id=7, options={"spread_hours": 2}, total=7200)
    limits = {lim.scope: lim for lim in campaign_limits(load_settings(env={}), campaign)}
    assert limits["campaign:7:spread"].per_second == pytest.approx(1.0)
