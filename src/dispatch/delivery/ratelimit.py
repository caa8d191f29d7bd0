"""Messages per second and per hour, per campaign and globally, across worker processes.

Fixed-window counters: each limit is a counter per window (one second, one hour) that every
worker increments atomically before sending. With `settings.redis_url` the counters live in
Redis (one Lua script checks and increments all windows at once, so concurrent workers never
overshoot); without it an in-process limiter does the same for a single process.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dispatch.config import Settings


@dataclass(frozen=True)
class Limit:
    """`per_second` / `per_minute` / `per_hour` / `per_day` messages for one scope ("global",
    "campaign:12"); 0 = none."""

    scope: str
    per_second: float = 0.0
    per_hour: float = 0.0
    per_day: float = 0.0
    per_minute: float = 0.0


@dataclass(frozen=True)
class Window:
    key: str  # e.g. "campaign:12:s1:1700000000"
    capacity: int
    seconds: int
    ends_at: float  # epoch seconds


@dataclass(frozen=True)
class Grant:
    granted: int
    wait_seconds: float = 0.0  # when nothing was granted: until the blocking window ends


def _window_shape(rate: float, per: int) -> tuple[int, int]:
    """(capacity, window length) for `rate` messages per `per` seconds, rates below one per
    window becoming one message per longer window."""
    per_window = rate
    if per_window >= 1:
        return math.floor(per_window), per
    return 1, max(per, math.ceil(per / rate))


def windows_for(limits: Sequence[Limit], now: float) -> list[Window]:
    out: list[Window] = []
    for limit in limits:
        for rate, per, tag in (
            (limit.per_second, 1, "s"),
            (limit.per_minute, 60, "m"),
            (limit.per_hour, 3600, "h"),
            (limit.per_day, 86400, "d"),
        ):
            if rate <= 0:
                continue
            capacity, seconds = _window_shape(rate, per)
            index = int(now // seconds)
            out.append(
                Window(
                    key=f"{limit.scope}:{tag}{seconds}:{index}",
                    capacity=capacity,
                    seconds=seconds,
                    ends_at=(index + 1) * seconds,
                )
            )
    return out


class RateLimiter(Protocol):
    def acquire(self, limits: Sequence[Limit], wanted: int) -> Grant:
        """Take up to `wanted` sends from every window at once (never blocks)."""


class LocalRateLimiter:
    """The in-process fallback: the same windows in a dict under a lock."""

    def __init__(self, clock=time.time):
        self._counts: dict[str, tuple[int, float]] = {}
        self._next_purge = 0.0
        self._lock = threading.Lock()
        self._clock = clock

    def acquire(self, limits: Sequence[Limit], wanted: int) -> Grant:
        now = self._clock()
        windows = windows_for(limits, now)
        if not windows or wanted <= 0:
            return Grant(max(wanted, 0))
        with self._lock:
            if now >= self._next_purge:  # expired windows go once a second, not on every call
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
                self._next_purge = now + 1.0
            grant, blocking = wanted, windows[0]
            for w in windows:
                left = w.capacity - self._counts.get(w.key, (0, 0.0))[0]
                if left < grant:
                    grant, blocking = left, w
            if grant <= 0:
                return Grant(0, max(blocking.ends_at - now, 0.001))
            for w in windows:
                used = self._counts.get(w.key, (0, w.ends_at))[0]
                self._counts[w.key] = (used + grant, w.ends_at)
            return Grant(grant)


_ACQUIRE_LUA = """
local wanted = tonumber(ARGV[1])
local grant = wanted
local blocking = 0
for i, key in ipairs(KEYS) do
  local cap = tonumber(ARGV[2 * i])
  local used = tonumber(redis.call('GET', key) or '0')
  if cap - used < grant then
    grant = cap - used
    blocking = i
  end
end
if grant <= 0 then
  return {0, blocking}
end
for i, key in ipairs(KEYS) do
  redis.call('INCRBY', key, grant)
  redis.call('EXPIRE', key, tonumber(ARGV[2 * i + 1]))
end
return {grant, 0}
"""


class RedisRateLimiter:
    """Windows shared by every worker through Redis (keys expire with their window)."""

    def __init__(self, client, prefix: str = "", clock=time.time):
        self._prefix = prefix
        self._script = client.register_script(_ACQUIRE_LUA)
        self._clock = clock

    def acquire(self, limits: Sequence[Limit], wanted: int) -> Grant:
        now = self._clock()
        windows = windows_for(limits, now)
        if not windows or wanted <= 0:
            return Grant(max(wanted, 0))
        keys = [f"{self._prefix}ratelimit:{w.key}" for w in windows]
        args: list[int] = [wanted]
        for w in windows:
            args += [w.capacity, w.seconds + 2]
        granted, blocking = self._script(keys=keys, args=args)
        if int(granted) > 0:
            return Grant(int(granted))
        window = windows[int(blocking) - 1] if int(blocking) > 0 else windows[0]
        return Grant(0, max(window.ends_at - now, 0.001))


_local = LocalRateLimiter()


def make_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis-backed when a Redis URL is configured, else the process-wide local limiter."""
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        return RedisRateLimiter(client, prefix=settings.redis_key_prefix or "dispatch:")
    return _local
