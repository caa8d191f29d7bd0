"""Daily counters shared by every worker: relay quotas ("relay:aliyun") and warm-up volume
("warmup:example.org").

Why two stores: Redis is where workers reserve sends atomically before sending (one Lua
script: never more than the cap, even with many workers); the database keeps what was really
sent per day, and a missing Redis key (Redis restarted, or no Redis) is seeded from it, so a
restart never hands out a day's quota twice. A day is a calendar day in `send_timezone`
(Asia/Shanghai by default: Chinese relays reset their quotas at Beijing midnight).
"""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from dispatch import pg_arrays
from dispatch.models import DailyUsage, utcnow


def local_day(now: datetime, tz: str) -> date:
    return now.astimezone(ZoneInfo(tz)).date()


def next_day_start(now: datetime, tz: str) -> datetime:
    """The next local midnight in `tz`, as an aware datetime."""
    zone = ZoneInfo(tz)
    tomorrow = now.astimezone(zone).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(0, 0), tzinfo=zone)


_RESERVE = """
local used = tonumber(redis.call('GET', KEYS[1]) or ARGV[3])
local cap = tonumber(ARGV[2])
local grant = tonumber(ARGV[1])
if cap > 0 and cap - used < grant then grant = cap - used end
if grant <= 0 then
  if not redis.call('GET', KEYS[1]) then redis.call('SET', KEYS[1], used, 'EX', 172800) end
  return 0
end
redis.call('SET', KEYS[1], used + grant, 'EX', 172800)
return grant
"""


def _upsert_add(session: Session, scope: str, day: str, n: int, now: datetime) -> None:
    """SQLite: one INSERT … ON CONFLICT per scope."""
    from sqlalchemy.dialects.sqlite import insert

    table = DailyUsage.__table__
    stmt = insert(table).values(scope=scope, day=day, used=n, updated_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=["scope", "day"],
        set_={"used": table.c.used + n, "updated_at": now},
    )
    session.execute(stmt)


# PostgreSQL: every scope of a chunk in one prepared-once statement (the ORM insert was built
# and compiled per scope and chunk, ~4 % of a send worker's CPU)
_ADD_USED_PG = text(
    """
    INSERT INTO daily_usage (scope, day, used, updated_at)
    SELECT v.scope, CAST(:day AS varchar), v.n, CAST(:now AS timestamptz)
    FROM unnest(CAST(:scopes AS varchar[]), CAST(:ns AS integer[])) AS v(scope, n)
    ON CONFLICT (scope, day) DO UPDATE
    SET used = daily_usage.used + excluded.used, updated_at = excluded.updated_at
    """
)


def record_used(session: Session, counts: dict[str, int], tz: str, now: datetime | None = None):
    """Add what was really sent to the database rows (in the caller's transaction), scopes in
    sorted order (two workers' transactions lock the rows in the same order: no deadlock)."""
    now = now or utcnow()
    day = local_day(now, tz).isoformat()
    used = [(scope, n) for scope, n in sorted(counts.items()) if n]
    if not used:
        return
    if session.get_bind().dialect.name == "postgresql":
        params = {
            "day": day,
            "now": pg_arrays.timestamp(now),
            "scopes": pg_arrays.texts([scope for scope, _ in used]),
            "ns": pg_arrays.ints([n for _, n in used]),
        }
        session.connection().execute(_ADD_USED_PG, params)
        return
    for scope, n in used:
        _upsert_add(session, scope, day, n, now)


def used_in_db(session: Session, scope: str, day: str) -> int:
    value = session.scalar(
        select(DailyUsage.used).where(DailyUsage.scope == scope, DailyUsage.day == day)
    )
    return int(value or 0)


class DailyCounter:
    """reserve(scope, n, cap) before sending; give_back() what was not sent."""

    def __init__(self, engine: Engine, tz: str, redis_client: Any = None, prefix: str = ""):
        self.engine = engine
        self.tz = tz
        self.redis = redis_client
        self.prefix = prefix
        self._script = redis_client.register_script(_RESERVE) if redis_client else None
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()

    def _key(self, scope: str, day: str) -> str:
        return f"{self.prefix}daily:{scope}:{day}"

    def _db_used(self, scope: str, day: str) -> int:
        with Session(self.engine) as session:
            return used_in_db(session, scope, day)

    def reserve(self, scope: str, n: int, cap: int, now: datetime | None = None) -> int:
        """Take up to `n` of today's `cap` (0: no cap); returns how many were granted."""
        if n <= 0:
            return 0
        now = now or utcnow()
        day = local_day(now, self.tz).isoformat()
        key = self._key(scope, day)
        if self._script is not None:
            seed = 0
            if not self.redis.exists(key):
                seed = self._db_used(scope, day)
            return int(self._script(keys=[key], args=[n, cap, seed]))
        with self._lock:
            if key not in self._local:
                self._local[key] = self._db_used(scope, day)
            used = self._local[key]
            grant = n if cap <= 0 else max(min(n, cap - used), 0)
            self._local[key] = used + grant
            return grant

    def give_back(self, scope: str, n: int, now: datetime | None = None) -> None:
        if n <= 0:
            return
        now = now or utcnow()
        key = self._key(scope, local_day(now, self.tz).isoformat())
        if self.redis is not None:
            self.redis.decrby(key, n)
            return
        with self._lock:
            if key in self._local:
                self._local[key] = max(self._local[key] - n, 0)

    def used(self, scope: str, now: datetime | None = None) -> int:
        """Today's count: Redis (live, includes in-flight reservations) else the database."""
        now = now or utcnow()
        day = local_day(now, self.tz).isoformat()
        key = self._key(scope, day)
        if self.redis is not None:
            value = self.redis.get(key)
            if value is not None:
                return int(value)
        else:
            with self._lock:
                if key in self._local:
                    return self._local[key]
        return self._db_used(scope, day)
