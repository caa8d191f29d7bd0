"""Per-provider slow-down: a throttle reply backs off only that provider, then speed returns
gradually.

State per provider (Redis hash, shared by every worker; in-process without Redis):
  until   epoch seconds: no message to this provider before then
  factor  the share of the provider's configured rate allowed once `until` passes
  strikes throttle replies in a row (each doubles the backoff)

On a throttle reply: if the provider is already backing off, nothing changes (replies to
messages that were already in flight must not escalate the backoff); else strikes += 1,
backoff = min(base * 2^(strikes-1), max) with jitter (x0.75..1.25), factor halves (>= 0.1).
After `until`, the allowed rate climbs linearly from factor to 1 over recovery_seconds;
strikes are forgotten once it is back at full speed.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from dispatch.config import Settings

MIN_FACTOR = 0.1


@dataclass(frozen=True)
class ThrottleState:
    provider: str
    until: float = 0.0
    factor: float = 1.0
    strikes: int = 0
    reason: str = ""

    def blocked(self, now: float) -> bool:
        return now < self.until

    def speed(self, now: float, recovery_seconds: float) -> float:
        """Share (0..1] of the provider's rate allowed now (0 while blocked)."""
        if self.blocked(now):
            return 0.0
        if self.factor >= 1.0 or recovery_seconds <= 0:
            return 1.0
        progress = min((now - self.until) / recovery_seconds, 1.0)
        return self.factor + (1.0 - self.factor) * progress

    def as_dict(self, now: float, recovery_seconds: float) -> dict[str, Any]:
        blocked = self.blocked(now)
        speed = self.speed(now, recovery_seconds)
        return {
            "provider": self.provider,
            "state": "backoff" if blocked else "recovering" if speed < 1.0 else "normal",
            "until": self.until if blocked else None,
            "seconds_left": round(self.until - now, 1) if blocked else 0,
            "speed": round(speed, 3),
            "strikes": self.strikes,
            "reason": self.reason,
        }


class ProviderThrottle:
    def __init__(
        self,
        settings: Settings,
        redis_client: Any = None,
        *,
        clock=time.time,
        rng: random.Random | None = None,
    ):
        self.base = settings.throttle_base_seconds
        self.max = settings.throttle_max_seconds
        self.recovery = settings.throttle_recovery_seconds
        self.redis = redis_client
        self.prefix = f"{settings.redis_key_prefix or 'dispatch:'}throttle:"
        self.clock = clock
        self.rng = rng or random.Random()
        self._local: dict[str, ThrottleState] = {}
        self._lock = threading.Lock()

    def _read(self, provider: str) -> ThrottleState:
        if self.redis is not None:
            raw = self.redis.get(self.prefix + provider)
            if not raw:
                return ThrottleState(provider)
            data = json.loads(raw)
            return ThrottleState(provider, **data)
        with self._lock:
            return self._local.get(provider, ThrottleState(provider))

    def state(self, provider: str) -> ThrottleState:
        state = self._read(provider)
        now = self.clock()
        if state.strikes and state.speed(now, self.recovery) >= 1.0:
            return ThrottleState(provider)  # fully recovered: strikes forgotten
        return state

    def states(self, providers: list[str]) -> dict[str, ThrottleState]:
        return {p: self.state(p) for p in providers}

    def speed(self, provider: str) -> float:
        return self.state(provider).speed(self.clock(), self.recovery)

    def throttled(self, provider: str, reason: str) -> ThrottleState:
        """Record a throttle reply from `provider`; returns the state now in force."""
        now = self.clock()
        current = self.state(provider)
        if current.blocked(now):
            return current
        strikes = current.strikes + 1
        backoff = min(self.base * (2 ** min(strikes - 1, 20)), self.max)
        backoff *= self.rng.uniform(0.75, 1.25)
        state = ThrottleState(
            provider,
            until=now + backoff,
            factor=max(current.speed(now, self.recovery) / 2, MIN_FACTOR),
            strikes=strikes,
            reason=reason[:300],
        )
        ttl = int(backoff + self.recovery + 60)
        payload = json.dumps(
            {
                "until": state.until,
                "factor": state.factor,
                "strikes": state.strikes,
                "reason": state.reason,
            }
        )
        if self.redis is not None:
            # workers that saw the same state race to escalate it: the first wins (SET NX on a
            # key naming the state they saw), the others read the new state
            seen = f"{current.until:.3f}:{current.strikes}"
            lock = self.redis.set(f"{self.prefix}{provider}:lock:{seen}", "1", nx=True, ex=ttl)
            if not lock:
                return self._read(provider)
            self.redis.set(self.prefix + provider, payload, ex=ttl)
        else:
            with self._lock:
                self._local[provider] = state
        return state

    def retry_at(self, provider: str, spread: float = 0.25) -> float:
        """When a held message of `provider` should be tried again: the end of the backoff
        plus a jittered share of it, so held messages do not all return in the same second."""
        now = self.clock()
        state = self.state(provider)
        base = max(state.until, now)
        span = max(state.until - now, self.base) * spread
        return base + self.rng.uniform(0, span)

    def clear(self, provider: str) -> None:
        if self.redis is not None:
            self.redis.delete(self.prefix + provider)
        with self._lock:
            self._local.pop(provider, None)


_local_throttles: dict[str, ProviderThrottle] = {}


def provider_throttle(settings: Settings, redis_client: Any = None) -> ProviderThrottle:
    """Redis-backed when configured; otherwise one in-process instance per settings' prefix."""
    if redis_client is None and settings.redis_url:
        from dispatch.delivery.relays import redis_for

        redis_client = redis_for(settings)
    if redis_client is not None:
        return ProviderThrottle(settings, redis_client)
    key = settings.redis_key_prefix or ""
    if key not in _local_throttles:
        _local_throttles[key] = ProviderThrottle(settings)
    return _local_throttles[key]
