"""Rate limits per campaign and global, per second and per hour, shared through Redis."""

from __future__ import annotations

import multiprocessing
import time

import redis as redis_lib

from dispatch.delivery.ratelimit import Limit, LocalRateLimiter, RedisRateLimiter, windows_for


class Clock:
    def __init__(self, t: float = 1_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_windows_shape():
    ws = windows_for(
        [Limit("global", per_second=10, per_hour=1000), Limit("campaign:1", per_second=0.5)],
        1_000_000.2,
    )
    assert [(w.capacity, w.seconds) for w in ws] == [(10, 1), (1000, 3600), (1, 2)]
    assert windows_for([Limit("global")], 0) == []


def _exercise(limiter, clock: Clock) -> None:
    limits = [Limit("global", per_second=10, per_hour=25), Limit("campaign:7", per_second=4)]
    assert limiter.acquire(limits, 50).granted == 4  # the campaign's per-second window binds
    blocked = limiter.acquire(limits, 1)
    assert blocked.granted == 0 and 0 < blocked.wait_seconds <= 1
    clock.t += 1
    assert limiter.acquire(limits, 3).granted == 3
    assert (
        limiter.acquire([Limit("global", per_second=10, per_hour=25)], 50).granted == 7
    )  # global 10/s
    clock.t += 1
    assert limiter.acquire([Limit("global", per_second=10, per_hour=25)], 50).granted == 10
    clock.t += 1
    # 24 of 25 used this hour: only one more, then wait for the hour window
    assert limiter.acquire([Limit("global", per_second=10, per_hour=25)], 50).granted == 1
    hourly = limiter.acquire([Limit("global", per_second=10, per_hour=25)], 1)
    assert hourly.granted == 0 and hourly.wait_seconds > 5


def test_local_limiter():
    clock = Clock()
    _exercise(LocalRateLimiter(clock), clock)


def test_redis_limiter(redis_url, redis_prefix):
    clock = Clock()
    client = redis_lib.Redis.from_url(redis_url)
    try:
        _exercise(RedisRateLimiter(client, prefix=redis_prefix, clock=clock), clock)
        keys = list(client.scan_iter(match=f"{redis_prefix}*"))
        assert keys and all(0 < client.ttl(k) <= 3602 for k in keys)  # windows expire by themselves
    finally:
        for key in client.scan_iter(match=f"{redis_prefix}*"):
            client.delete(key)
        client.close()


def _take(redis_url: str, prefix: str, start: float, out) -> None:
    client = redis_lib.Redis.from_url(redis_url)
    limiter = RedisRateLimiter(client, prefix=prefix, clock=lambda: start)  # all in one window
    got = 0
    for _ in range(40):
        got += limiter.acquire([Limit("global", per_second=100)], 3).granted
    out.put(got)


def test_redis_limiter_holds_across_processes(redis_url, redis_prefix):
    """Four processes hammer one window of 100: together they get exactly 100, never more."""
    out = multiprocessing.get_context("fork").Queue()
    start = float(int(time.time()) + 1000)
    procs = [
        multiprocessing.get_context("fork").Process(
            target=_take, args=(redis_url, redis_prefix, start, out)
        )
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    totals = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    client = redis_lib.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{redis_prefix}*"):
        client.delete(key)
    client.close()
    assert sum(totals) == 100, totals
