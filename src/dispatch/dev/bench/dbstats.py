"""What the database spends on a bench run, and what it stores: for `dispatch bench send` and
`dispatch bench fanout` (PostgreSQL only).

- `ActivitySampler` looks at pg_stat_activity of the bench's database every few milliseconds
  and counts which statement each busy backend is running, by kind (claim, eligibility check,
  result write, events, lease renewal, finish check, reputation guard, sweep, …). Samples ×
  interval estimate the backend seconds each kind cost: the "what each costs at 20,000 and at
  200,000" of issue 17, without pg_stat_statements (not loaded on these machines).
- `storage` reads the on-disk bytes of deliveries (heap, indexes) and events, per delivery.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

from sqlalchemy import Engine, text

# (kind, a piece of the statement's text that names it), first match wins
STATEMENT_KINDS: tuple[tuple[str, str], ...] = (
    ("claim", "WITH picked AS MATERIALIZED"),
    ("eligibility check", "SELECT subscribers.id FROM subscribers WHERE subscribers.id IN"),
    ("eligibility check", "SELECT subscribers.id FROM subscribers WHERE subscribers.id = ANY"),
    ("fan-out", "SELECT lower(split_part(recipients.email"),  # its recipients by domain
    ("source lookup", "SELECT issues.id, issues.slug"),
    ("source lookup", "SELECT site_settings.key"),
    ("source lookup", "SELECT lists.id FROM lists WHERE lists.id IN"),  # the "(AD)" marker
    ("campaign read", "SELECT campaigns.id, campaigns.issue_id"),
    ("bench", "SELECT min(deliveries.sent_at)"),  # the bench's own reads after a run
    ("bench", "SELECT deliveries.status, count(*)"),
    ("result write", "UPDATE deliveries SET status=$1::VARCHAR, attempts="),  # SQLite shape
    ("result write", "UPDATE deliveries AS d SET"),  # PostgreSQL: one UPDATE per chunk
    ("result ownership read", "SELECT deliveries.id FROM deliveries WHERE deliveries.id IN"),
    ("events insert", "INSERT INTO events"),
    (
        "lease renewal",
        "UPDATE deliveries SET lease_until=$1::TIMESTAMP WITH TIME ZONE WHERE deliveries.id IN",
    ),
    ("release", "UPDATE deliveries SET status=$1::VARCHAR, lease_until="),
    ("sweep", "SELECT deliveries.campaign_id, deliveries.batch_no, max(deliveries.id)"),
    ("sweep", "SELECT DISTINCT deliveries.campaign_id, deliveries.batch_no"),
    (
        "sweep",
        "UPDATE deliveries SET lease_until=$1::TIMESTAMP WITH TIME ZONE WHERE deliveries.status IN",
    ),
    ("finish check", "UPDATE campaigns SET status=$1::VARCHAR, finished_at="),
    ("reputation guard", "SELECT anon_1.id, anon_1.email, anon_1.updated_at"),
    ("reputation guard", "SELECT EXISTS (SELECT"),  # reputation.any_signal
    ("campaign status read", "SELECT campaigns.status"),
    ("waiting flag", "UPDATE campaigns SET waiting_reason="),
    ("daily counters", "INSERT INTO daily_usage"),
    ("fan-out", "INSERT INTO deliveries"),
    ("analyze", "ANALYZE"),
    ("commit", "COMMIT"),
    ("begin", "BEGIN"),
)
_SAMPLE = text(
    "SELECT query FROM pg_stat_activity WHERE datname = :db AND state = 'active' "
    "AND pid <> pg_backend_pid()"
)


def statement_kind(query: str) -> str:
    flat = re.sub(r"\s+", " ", query).strip()
    for kind, piece in STATEMENT_KINDS:
        if piece in flat:
            return kind
    return "other: " + re.sub(r"\d+", "N", flat[:60])


class ActivitySampler:
    """A thread sampling the busy backends of one database until `stop()`."""

    def __init__(self, admin: Engine, database: str, interval: float = 0.02):
        self.admin, self.database, self.interval = admin, database, interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.wall = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-activity", daemon=True)

    def __enter__(self) -> ActivitySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        started = time.monotonic()
        with self.admin.connect() as conn:
            while not self._stop.is_set():
                for (query,) in conn.execute(_SAMPLE, {"db": self.database}):
                    kind = statement_kind(query or "")
                    self.counts[kind] = self.counts.get(kind, 0) + 1
                conn.rollback()
                self.samples += 1
                self.wall = time.monotonic() - started
                time.sleep(self.interval)

    def seconds_by_kind(self) -> dict[str, float]:
        """Estimated backend seconds per statement kind (largest first)."""
        if not self.samples:
            return {}
        per_sample = self.wall / self.samples  # seconds each sample stands for
        ranked = sorted(self.counts.items(), key=lambda kv: -kv[1])
        return {kind: round(n * per_sample, 2) for kind, n in ranked}


def storage(engine: Engine, deliveries: int) -> dict[str, Any]:
    """Bytes on disk of deliveries (heap incl. TOAST, indexes) and events, and per delivery."""
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT pg_table_size('deliveries'), pg_indexes_size('deliveries'), "
                "pg_table_size('events'), pg_indexes_size('events'), "
                "(SELECT count(*) FROM events)"
            )
        ).one()
    d_heap, d_idx, e_heap, e_idx, event_rows = (int(v) for v in row)
    n = max(deliveries, 1)
    return {
        "deliveries": deliveries,
        "event_rows": event_rows,
        "deliveries_table_bytes": d_heap,
        "deliveries_index_bytes": d_idx,
        "events_table_bytes": e_heap,
        "events_index_bytes": e_idx,
        "bytes_per_delivery": {
            "row": round(d_heap / n),
            "indexes": round(d_idx / n),
            "events": round((e_heap + e_idx) / n),
            "total": round((d_heap + d_idx + e_heap + e_idx) / n),
        },
    }
