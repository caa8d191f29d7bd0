"""`dispatch bench fanout`: how long fanning a campaign out to N people takes on PostgreSQL, and
what a delivery costs on disk.

A fresh PostgreSQL database gets one confirmed list of N subscribers over a realistic mix of
mail domains (QQ, NetEase, Sina, Gmail, Outlook, a campus domain), loaded by INSERT … SELECT
and never analysed (as after a big import with autovacuum off). Then `campaigns.start` runs as
`dispatch send` does (the fan-out's INSERT … SELECT with providers and batch numbers in one
transaction, then ANALYZE of the deliveries), the batches going to an in-memory queue. The
figure is that call's wall time (the issue's target: under 20 s for 1,000,000).

Storage: the bytes of the deliveries table and its indexes after fan-out, per delivery; then one
`sent` event per delivery shaped like the engine's (code, attempt, text, relay, message_id) is
written, and the events' bytes per delivery reported. (After a real send the deliveries table
also holds the dead versions of each row's updates until VACUUM: `dispatch bench send` reports
that figure.)
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy import text
from sqlalchemy.orm import Session

from dispatch.dev.bench import bench_settings
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "seeded": (
            "{n} 位订阅者已载入（INSERT … SELECT，未 ANALYZE）：{s:.1f} 秒",
            "{n} subscribers loaded (INSERT … SELECT, not analysed): {s:.1f} s",
        ),
        "fanned": (
            "扇出 {n} 封投递、{b} 个批次：{s:.1f} 秒（其中 ANALYZE {a:.1f} 秒；目标 < 20 秒）",
            "fan-out of {n} deliveries in {b} batches: {s:.1f} s (ANALYZE {a:.1f} s of it; "
            "target < 20 s)",
        ),
        "rate": ("即每秒 {rate:,.0f} 封投递", "that is {rate:,.0f} deliveries/s"),
        "stored": (
            "每次投递存储字节：行 {row}，索引 {indexes}，事件 {events}，合计 {total}",
            "bytes stored per delivery: row {row}, indexes {indexes}, events {events}, "
            "total {total}",
        ),
        "events": (
            "每人一条 sent 事件已写入：{s:.1f} 秒",
            "one sent event per delivery written: {s:.1f} s",
        ),
        "load": ("负载（uptime）：{load}", "load (uptime): {load}"),
    }
)

# one `sent` event per delivery, the shape engine._event_data gives a message the relay took
_SENT_EVENTS = text(
    """
    INSERT INTO events (kind, channel, occurred_at, campaign_id, delivery_id, subscriber_id, data)
    SELECT 'sent', 'email', now(), campaign_id, id, subscriber_id,
           json_build_object('code', 250, 'attempt', 1,
                             'text', '2.0.0 Ok: queued as 4Xyz' || id, 'relay', 'default',
                             'message_id', '<' || id || '.c' || campaign_id
                                           || '@bulletin.example.org>')
    FROM deliveries WHERE campaign_id = :campaign_id
    """
)


def run(recipients: int) -> dict[str, Any]:
    """Seed, fan out, measure; the figures as a dict (the --json object)."""
    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.delivery.queue import ListQueue
    from dispatch.dev.bench.dbstats import storage
    from dispatch.dev.bench.population import MIXED_DOMAINS, seed_list
    from dispatch.dev.bench.send import fresh_database, load_average

    result: dict[str, Any] = {"recipients": recipients, "cpus": os.cpu_count()}
    result["load_before"] = load_average()
    with fresh_database() as url, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(
            database_url=url,
            data_dir=Path(tmp),
            secret_key="bench-secret-key",
            provider_mx_lookup=False,  # the provider table only: no DNS in a benchmark
        )
        engine = make_engine(url)
        try:
            started = time.perf_counter()
            issue_id, list_id = seed_list(engine, recipients, domains=MIXED_DOMAINS)
            result["seed_seconds"] = round(time.perf_counter() - started, 2)
            with Session(engine) as session, session.begin():
                campaign, _ = campaigns.create_or_get(
                    session, issue_id=issue_id, channel="email", list_ids=[list_id]
                )
                campaign_id = campaign.id
            queue = ListQueue()
            started = time.perf_counter()
            batches = campaigns.start(engine, settings, campaign_id, queue)
            result["fan_out_seconds"] = round(time.perf_counter() - started, 2)
            result["analyze_seconds"] = _time_analyze(engine)
            result["batches"] = len(batches)
            result["deliveries_per_second"] = round(recipients / result["fan_out_seconds"])
            result["storage_after_fan_out"] = storage(engine, recipients)
            started = time.perf_counter()
            with engine.begin() as conn:
                conn.execute(_SENT_EVENTS, {"campaign_id": campaign_id})
            result["events_seconds"] = round(time.perf_counter() - started, 2)
            result["storage"] = storage(engine, recipients)
        finally:
            engine.dispose()
    result["load_after"] = load_average()
    return result


def _time_analyze(engine) -> float:
    """A second ANALYZE of deliveries, timed alone: what the fan-out's own ANALYZE costs."""
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("ANALYZE deliveries"))
    return round(time.perf_counter() - started, 2)


@click.command("fanout")
@click.option(
    "--recipients", default=1_000_000, show_default=True, help="Subscribers on the list / 收件人数"
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object / 输出 JSON")
def command(recipients: int, as_json: bool) -> None:
    """Fan-out of one campaign to N people on PostgreSQL, and the bytes stored per delivery /
    扇出基准."""
    result = run(recipients)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    say = lambda key, **kw: click.echo(MESSAGES.both(key, **kw))  # noqa: E731
    say("load", load=result["load_before"])
    say("seeded", n=recipients, s=result["seed_seconds"])
    say(
        "fanned",
        n=recipients,
        b=result["batches"],
        s=result["fan_out_seconds"],
        a=result["analyze_seconds"],
    )
    say("rate", rate=result["deliveries_per_second"])
    say("events", s=result["events_seconds"])
    say("stored", **result["storage"]["bytes_per_delivery"])
    say("load", load=result["load_after"])
