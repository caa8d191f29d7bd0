"""The public form's shared guards: one rate limiter and one proof-of-work ledger per app,
in Redis when configured (every web worker sees the same counters), else in memory."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from dispatch.config import Settings
from dispatch.delivery.ratelimit import LocalRateLimiter, RateLimiter, RedisRateLimiter
from dispatch.subscribers.proof import Ledger, LocalLedger, RedisLedger


@dataclass
class Guards:
    limiter: RateLimiter
    ledger: Ledger


def make_guards(settings: Settings) -> Guards:
    if settings.redis_url:
        import redis

        client = redis.Redis.from_url(
            settings.redis_url, socket_timeout=5, socket_connect_timeout=5
        )
        prefix = settings.redis_key_prefix or "dispatch:"
        return Guards(RedisRateLimiter(client, prefix=prefix), RedisLedger(client, prefix))
    return Guards(LocalRateLimiter(), LocalLedger())


def guards(request: Request) -> Guards:
    found = getattr(request.app.state, "signup_guards", None)
    if found is None:
        found = request.app.state.signup_guards = make_guards(request.app.state.settings)
    return found


def client_ip(request: Request) -> str:
    """The peer address (uvicorn has already applied X-Forwarded-For from trusted proxies)."""
    return request.client.host if request.client else ""
