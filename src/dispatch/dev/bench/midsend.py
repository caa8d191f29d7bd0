"""`dispatch bench admin`'s mid-send scenario: a campaign to every subscriber, still sending.

Why: a running campaign's figures cannot be stored (they change with every message), so its
page, its stats and the progress bar's poll (once a second per open page) count live while
workers write its rows. This builds that moment on the data set: one campaign of one delivery
per subscriber (1,000,000 at scale 1), inserted pending as the fan-out does, then 40 % of it
moved to sent (a few bounced, failed and deferred) by UPDATEs, as the workers leave it (dead
row versions, pages not yet all-visible); while the addresses are asked, a thread plays the
workers: every 0.1 s the claimed rows become sent (with their `sent` events) and the next 100
pending rows are claimed (1,000 messages a second). Its database backend is left out of the
server's CPU figures (application_name). The campaign is removed afterwards (--keep-mid-send
keeps it), so the data set stays what the other figures were measured on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text

from dispatch.db import make_engine

KEY = "bench:mid-send"
SENDER_APP = "bench-load-sender"  # dataset.CpuMeter leaves "bench-load…" backends out
PER_TICK = 100
TICK_SECONDS = 0.1


def _drop(conn) -> None:
    found = conn.execute(text("SELECT id FROM campaigns WHERE dedupe_key = :k"), {"k": KEY})
    for (campaign_id,) in found.all():
        conn.execute(text("DELETE FROM events WHERE campaign_id = :c"), {"c": campaign_id})
        conn.execute(text("DELETE FROM tallies WHERE ref_id = :c"), {"c": campaign_id})
        conn.execute(text("DELETE FROM campaigns WHERE id = :c"), {"c": campaign_id})


def _build_sql(issue_id: int, list_id: int) -> list[str]:
    """The campaign, its rows (pending, as fanned out), then 40 % of them sent an hour long."""
    return [
        f"INSERT INTO campaigns (issue_id, channel, list_ids, dedupe_key, status, is_test, "
        f"tracking, started_at, total, batch_count, options, created_at, updated_at) VALUES "
        f"({issue_id}, 'email', '[{list_id}]', '{KEY}', 'running', false, true, "
        f"now() - interval '1 hour', (SELECT count(*) FROM subscribers), "
        f"(SELECT count(*) / 200 + 1 FROM subscribers), '{{}}', now() - interval '1 hour', "
        f"now() - interval '1 hour')",
        "INSERT INTO deliveries (campaign_id, subscriber_id, email, name, locale, batch_no, "
        "provider, status, attempts, updated_at) SELECT c.id, s.id, s.email, s.name, s.locale, "
        "s.id / 200, d.provider, 'pending', 0, c.started_at FROM subscribers s CROSS JOIN "
        f"(SELECT id, started_at FROM campaigns WHERE dedupe_key = '{KEY}') c JOIN LATERAL "
        "(SELECT CASE split_part(s.email, '@', 2) WHEN 'qq.com' THEN 'qq' WHEN '163.com' THEN "
        "'netease' WHEN 'gmail.com' THEN 'gmail' ELSE 'other' END AS provider) d ON true "
        "ORDER BY s.id",
        "ANALYZE deliveries",
        # the first 40 % went out over the last hour: 1 in 100 bounced, 1 in 200 failed, 1 in
        # 100 deferred, the rest sent
        "UPDATE deliveries d SET status = CASE WHEN d.subscriber_id % 100 = 3 THEN 'bounced' "
        "WHEN d.subscriber_id % 200 = 5 THEN 'failed' WHEN d.subscriber_id % 100 = 9 THEN "
        "'deferred' ELSE 'sent' END, attempts = 1, sent_at = CASE WHEN d.subscriber_id % 100 "
        "IN (5, 9) THEN NULL ELSE c.started_at + d.subscriber_id * (interval '1 hour' / "
        "(0.4 * c.total)) END, updated_at = c.started_at + d.subscriber_id * "
        "(interval '1 hour' / (0.4 * c.total)) FROM campaigns c WHERE c.dedupe_key = "
        f"'{KEY}' AND d.campaign_id = c.id AND d.subscriber_id <= 0.4 * c.total",
        # a first open for 1 in 10 sent, a click for 1 in 50
        "INSERT INTO events (kind, channel, occurred_at, campaign_id, delivery_id, "
        "subscriber_id, data) SELECT k.kind, 'email', d.sent_at + interval '1 minute', "
        "d.campaign_id, d.id, d.subscriber_id, '{}' FROM deliveries d JOIN campaigns c ON "
        f"c.id = d.campaign_id AND c.dedupe_key = '{KEY}' JOIN (VALUES ('opened', 10), "
        "('clicked', 50)) k(kind, every) ON d.subscriber_id % k.every = 1 WHERE d.status = "
        "'sent' ORDER BY d.id",
    ]


def build(url: str, issue_id: int, list_id: int, say: Callable[[str], None]) -> int:
    """The mid-send campaign (a leftover of an earlier run dropped first); its id."""
    engine = make_engine(url)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        _drop(conn)
    for statement in _build_sql(issue_id, list_id):
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            conn.execute(text(statement))
    with engine.connect() as conn:
        campaign_id = int(
            conn.execute(text("SELECT id FROM campaigns WHERE dedupe_key = :k"), {"k": KEY}).one()[
                0
            ]
        )
    engine.dispose()
    say(f"mid-send campaign {campaign_id} built in {time.perf_counter() - t0:.1f} s")
    return campaign_id


def drop(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        _drop(conn)
    engine.dispose()


TICK_SQL = [
    # the rows claimed at the last tick are sent, each with its `sent` event
    "WITH done AS (UPDATE deliveries SET status = 'sent', sent_at = now(), updated_at = now(), "
    "attempts = attempts + 1, lease_until = NULL, claimed_by = NULL WHERE campaign_id = :c AND "
    "status = 'sending' RETURNING id, subscriber_id) INSERT INTO events (kind, channel, "
    "occurred_at, campaign_id, delivery_id, subscriber_id, data) SELECT 'sent', 'email', now(), "
    ":c, id, subscriber_id, '{}' FROM done",
    # the next rows are claimed
    "UPDATE deliveries SET status = 'sending', claimed_by = 'bench', lease_until = now() + "
    "interval '5 minutes', updated_at = now() WHERE id IN (SELECT id FROM deliveries WHERE "
    "campaign_id = :c AND status = 'pending' ORDER BY campaign_id, id LIMIT :n)",
]


@contextmanager
def sending(url: str, campaign_id: int) -> Iterator[dict]:
    """The workers' writes, in a thread, while the block runs; yields its figures
    (messages sent, seconds) filled in when it ends."""
    engine = make_engine(url, connect_args={"application_name": SENDER_APP})
    stop = threading.Event()
    figures = {"messages": 0, "seconds": 0.0}

    def work() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            started = time.perf_counter()
            with engine.begin() as conn:
                sent = conn.execute(text(TICK_SQL[0]), {"c": campaign_id}).rowcount
                conn.execute(text(TICK_SQL[1]), {"c": campaign_id, "n": PER_TICK})
            figures["messages"] += max(sent, 0)
            stop.wait(max(0.0, TICK_SECONDS - (time.perf_counter() - started)))
        figures["seconds"] = round(time.perf_counter() - t0, 1)

    thread = threading.Thread(target=work, name="bench-sender", daemon=True)
    thread.start()
    try:
        yield figures
    finally:
        stop.set()
        thread.join()
        engine.dispose()
