"""`dispatch bench tracking`: the open pixel and the click redirect with 10,000,000 events stored.

Issue 17 item 3's target: 1,000 hits/s or more with p99 under 50 ms while the events table holds
10,000,000 rows. The data set is the admin bench's (dev/bench/dataset.py: 50 campaigns, 10M
events at --scale 1, built once with COPY and reused). The hits go to the latest campaign's
deliveries (opens and clicks, repeats included) through uvicorn on loopback, driven by the same
minimal HTTP/1.1 client as `dispatch bench web`; afterwards the database must hold one new
first-hit event per (delivery, link) that had none and hit counters grown by the number of hits.

With --rollup the campaigns before the latest are then rolled into daily counts
(dispatch.rollup, what events_retention_days does nightly) and the hits are measured again:
the table sizes before and after show what the retention keeps small. The data set is then
marked for a rebuild on the next run.
"""

from __future__ import annotations

import asyncio
import os
import time

import click
from sqlalchemy import text

from dispatch.cli.common import emit, json_option
from dispatch.config import load_settings
from dispatch.db import make_engine
from dispatch.dev.bench import dataset
from dispatch.dev.bench.loopback import BASE_URL, SECRET, _drive, _drive_raw, _plan, _stats

TARGET = {"requests_per_second": 1000, "p99_ms": 50}


def table_sizes(url: str) -> dict[str, dict[str, int]]:
    """Rows (exact) and bytes on disk (with indexes) of the tables tracking writes."""
    engine = make_engine(url)
    found = {}
    with engine.connect() as conn:
        for table in ("events", "tracking_hits", "event_daily"):
            rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() or 0
            size = conn.execute(text(f"SELECT pg_total_relation_size('{table}')")).scalar() or 0
            found[table] = {"rows": int(rows), "bytes": int(size)}
    engine.dispose()
    return found


def _counts(url: str, campaign_id: int) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT (SELECT count(*) FROM events WHERE campaign_id = :c AND kind = 'opened'), "
                "(SELECT count(*) FROM events WHERE campaign_id = :c AND kind = 'clicked'), "
                "(SELECT coalesce(sum(count), 0) FROM tracking_hits WHERE campaign_id = :c)"
            ),
            {"c": campaign_id},
        ).one()
        pairs = conn.execute(
            text("SELECT delivery_id, link_index FROM tracking_hits WHERE campaign_id = :c"),
            {"c": campaign_id},
        ).all()
    engine.dispose()
    return {"opened": row[0], "clicked": row[1], "hits": row[2], "pairs": {tuple(p) for p in pairs}}


def _verify(before: dict, after: dict, plan: list[tuple[str, int, int]], done: list[int]) -> dict:
    hits = [plan[i] for i in done]
    new_pairs = {(d, link) for _, d, link in hits} - before["pairs"]
    new_opened = sum(1 for _, link in new_pairs if link < 0)
    new_clicked = len(new_pairs) - new_opened
    figures = {
        "expected_new_opened_events": new_opened,
        "new_opened_events": after["opened"] - before["opened"],
        "expected_new_clicked_events": new_clicked,
        "new_clicked_events": after["clicked"] - before["clicked"],
        "expected_hits": len(hits),
        "recorded_hits": after["hits"] - before["hits"],
    }
    figures["all_recorded"] = (
        figures["new_opened_events"] == new_opened
        and figures["new_clicked_events"] == new_clicked
        and figures["recorded_hits"] == len(hits)
    )
    return figures


def measure(
    ds: dataset.Dataset, n_requests: int, concurrency: int, workers: int, max_seconds: float
) -> dict:
    """One load run against the data set's latest campaign; figures and the DB check."""
    from dispatch.tokens import make_click_token, make_open_token

    engine = make_engine(ds.url)
    with engine.connect() as conn:
        ids = list(
            conn.execute(
                text("SELECT id FROM deliveries WHERE campaign_id = :c"),
                {"c": ds.latest_campaign},
            ).scalars()
        )
    engine.dispose()
    settings = load_settings(env={}).replace(secret_key=SECRET, public_base_url=BASE_URL)
    plan = _plan(ids, ds.n_links, n_requests, seed=int(time.time()))
    paths = [
        ("open", f"/t/o/{make_open_token(settings, d)}.gif")
        if kind == "open"
        else ("click", f"/t/c/{make_click_token(settings, d, link)}")
        for kind, d, link in plan
    ]
    before = _counts(ds.url, ds.latest_campaign)
    with dataset.served(ds.url, workers) as server:
        warm = asyncio.run(_drive(server.port, paths[:200], min(concurrency, 16), 30))
        web0, db0 = server.cpu.split()
        result = asyncio.run(_drive_raw(server.port, paths[200:], concurrency, max_seconds))
        web1, db1 = server.cpu.split()
    done = sorted(set(warm["done"]) | {i + 200 for i in result["done"]})
    figures = _stats(result)
    n = len(result["latencies"])
    figures["server_cpu_ms_per_request"] = round((web1 - web0) * 1000 / n, 3) if n else 0.0
    figures["database_cpu_ms_per_request"] = round((db1 - db0) * 1000 / n, 3) if n else 0.0
    figures.update(_verify(before, _counts(ds.url, ds.latest_campaign), plan, done))
    figures["meets_target"] = (
        figures["requests_per_second"] >= TARGET["requests_per_second"]
        and figures["p99_ms"] < TARGET["p99_ms"]
        and figures["all_recorded"]
        and not result["errors"]
    )
    return figures


def _rollup_older(ds: dataset.Dataset) -> dict:
    """Roll every campaign but the latest into daily counts; mark the data set as changed."""
    from dispatch import rollup

    engine = make_engine(ds.url)
    t0 = time.perf_counter()
    results = rollup.roll_up(engine, load_settings(env={}), campaign_ids=ds.campaign_ids[:-1])
    seconds = time.perf_counter() - t0
    with engine.begin() as conn:
        conn.execute(text("UPDATE bench_dataset SET scale = -1"))  # rebuilt on the next run
    engine.dispose()
    return {
        "campaigns": len(results),
        "seconds": round(seconds, 1),
        "events_removed": sum(r.events_removed for r in results),
        "hit_rows_removed": sum(r.hit_rows_removed for r in results),
    }


def _human(f: dict) -> None:
    ds = f["dataset"]
    click.echo(
        f"data set (scale {ds['scale']}): {ds['events']} events, {ds['subscribers']} "
        f"subscribers; built in {ds['build_seconds']} s (0: reused)"
    )
    for label, run in (("tracking", f["tracking"]), ("after rollup", f.get("after_rollup"))):
        if not run:
            continue
        sizes = run["tables"]
        click.echo(
            f"{label}: events {sizes['events']['rows']} rows "
            f"({sizes['events']['bytes'] // 2**20} MB), tracking_hits "
            f"{sizes['tracking_hits']['rows']}, event_daily {sizes['event_daily']['rows']}"
        )
        click.echo(
            f"  {run['requests']} hits in {run['seconds']} s: {run['requests_per_second']} "
            f"req/s, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, errors {run['errors']}, "
            f"CPU {run['server_cpu_ms_per_request']} ms/hit web + "
            f"{run['database_cpu_ms_per_request']} ms database; "
            f"{'all recorded' if run['all_recorded'] else 'MISMATCH'}; target 1000 req/s, "
            f"p99 < 50 ms: {'met' if run['meets_target'] else 'NOT met'}"
        )
    if f.get("rollup"):
        r = f["rollup"]
        click.echo(
            f"rollup of {r['campaigns']} campaigns: {r['events_removed']} events and "
            f"{r['hit_rows_removed']} hit rows into daily counts in {r['seconds']} s"
        )
    click.echo(f"machine: {f['cpus']} CPUs, load average {f['load_average']}")


@click.command("tracking")
@dataset.options
@click.option(
    "--requests", "n_requests", type=click.IntRange(500, 500_000), default=20_000, show_default=True
)
@click.option("--concurrency", type=click.IntRange(1, 500), default=16, show_default=True)
@click.option("--workers", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--max-seconds", type=float, default=60.0, show_default=True)
@click.option("--rollup", "with_rollup", is_flag=True, help="then roll up and measure again")
@json_option
def command(
    scale: float,
    database_url: str,
    dataset_name: str,
    rebuild: bool,
    n_requests: int,
    concurrency: int,
    workers: int,
    max_seconds: float,
    with_rollup: bool,
    as_json: bool,
) -> None:
    """Tracking hits/s and p99 with 10M events stored / 千万事件下的跟踪吞吐量."""
    ds = dataset.open_dataset(database_url, scale, dataset_name, rebuild, as_json)
    figures: dict = {
        "dataset": {k: v for k, v in ds.__dict__.items() if k not in ("campaign_ids", "url")},
        "target": TARGET,
        "tracking": {
            "tables": table_sizes(ds.url),
            **measure(ds, n_requests, concurrency, workers, max_seconds),
        },
        "cpus": os.cpu_count(),
    }
    if with_rollup:
        figures["rollup"] = _rollup_older(ds)
        figures["after_rollup"] = {
            "tables": table_sizes(ds.url),
            **measure(ds, n_requests, concurrency, workers, max_seconds),
        }
    figures["load_average"] = [round(x, 2) for x in os.getloadavg()]
    emit(figures, as_json, _human)
