"""The access token, shared by every worker process through Redis.

Why not wechatpy's RedisStorage alone: in 1.8.18 the token's expiry lives in process memory,
so a fresh worker trusts a cached token blindly and every worker refreshes on its own. Here the
token AND its refresh time live in one Redis hash, refreshing takes a Redis lock (one fetch at a
time across all workers; the others wait and then reuse the new token), and a token rejected by
the API is replaced only if it is still the current one (so N workers that all saw 42001
cause one refresh, not N).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis as redis_lib

log = logging.getLogger("dispatch.wechat.token")

# the old and new token overlap 5 minutes on WeChat's side: refresh that long before expiry,
# or a tenth of the lifetime for short-lived tokens (the fake server issues those in tests)
REFRESH_MARGIN_SECONDS = 300.0
LOCK_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class FetchedToken:
    token: str
    expires_in: float


Fetcher = Callable[[], FetchedToken]


def refresh_at(now: float, expires_in: float) -> float:
    return now + expires_in - min(REFRESH_MARGIN_SECONDS, expires_in / 10)


class TokenStore:
    """Interface: `get` a valid token, `replace(stale)` after the API refused `stale`."""

    def get(self, fetch: Fetcher) -> str:  # pragma: no cover - interface
        raise NotImplementedError

    def replace(self, stale: str, fetch: Fetcher) -> str:  # pragma: no cover - interface
        raise NotImplementedError


class RedisTokenStore(TokenStore):
    """Token + refresh time in one Redis hash; refreshes serialised by a Redis lock."""

    def __init__(self, redis: redis_lib.Redis, key: str):
        self.redis = redis
        self.key = key
        self.lock_key = key + ":lock"

    def _read(self) -> tuple[str | None, float]:
        raw = self.redis.hgetall(self.key)
        token = raw.get(b"token")
        if token is None:
            return None, 0.0
        text = token.decode() if isinstance(token, bytes) else str(token)
        return text, float(raw.get(b"refresh_at", b"0"))

    def _store(self, fetched: FetchedToken) -> str:
        now = time.time()
        pipe = self.redis.pipeline()
        pipe.hset(
            self.key,
            mapping={
                "token": fetched.token,
                "refresh_at": refresh_at(now, fetched.expires_in),
                "expires_at": now + fetched.expires_in,
            },
        )
        pipe.expire(self.key, max(1, int(fetched.expires_in)))
        pipe.execute()
        return fetched.token

    def get(self, fetch: Fetcher) -> str:
        token, due = self._read()
        if token is not None and time.time() < due:
            return token
        with self.redis.lock(
            self.lock_key, timeout=LOCK_TIMEOUT_SECONDS, blocking_timeout=LOCK_TIMEOUT_SECONDS
        ):
            token, due = self._read()  # another worker may have refreshed while we waited
            if token is not None and time.time() < due:
                return token
            log.info("wechat.token.refresh reason=%s", "missing" if token is None else "due")
            return self._store(fetch())

    def replace(self, stale: str, fetch: Fetcher) -> str:
        with self.redis.lock(
            self.lock_key, timeout=LOCK_TIMEOUT_SECONDS, blocking_timeout=LOCK_TIMEOUT_SECONDS
        ):
            token, due = self._read()
            if token is not None and token != stale:
                return token  # someone already replaced it: reuse theirs
            log.info("wechat.token.refresh reason=rejected")
            return self._store(fetch())

    def clear(self) -> None:
        self.redis.delete(self.key)


class MemoryTokenStore(TokenStore):
    """Embedded default (no Redis configured): one process, a thread lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._token: str | None = None
        self._due = 0.0

    def get(self, fetch: Fetcher) -> str:
        with self._lock:
            if self._token is None or time.time() >= self._due:
                fetched = fetch()
                self._token, self._due = fetched.token, refresh_at(time.time(), fetched.expires_in)
            return self._token

    def replace(self, stale: str, fetch: Fetcher) -> str:
        with self._lock:
            if self._token is None or self._token == stale:
                fetched = fetch()
                self._token, self._due = fetched.token, refresh_at(time.time(), fetched.expires_in)
            return self._token


_memory_stores: dict[str, MemoryTokenStore] = {}


def token_store_for(redis_url: str, key: str) -> TokenStore:
    """A Redis store when Redis is configured, else one in-process store per key."""
    if redis_url:
        return RedisTokenStore(redis_lib.Redis.from_url(redis_url), key)
    return _memory_stores.setdefault(key, MemoryTokenStore())
