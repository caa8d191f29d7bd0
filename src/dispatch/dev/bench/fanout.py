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
import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy import event, text
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
        "cpu": (
            "  数据库服务进程 CPU：{cpu} 秒（受负载影响小于墙钟时间）",
            "  database server CPU: {cpu} s (less distorted by load than wall time)",
        ),
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
        "reused": ("复用已保留的数据集：{s:.1f} 秒", "kept data set reused: {s:.1f} s"),
        "statements": ("  各语句耗时（秒）：{s}", "  seconds per statement: {s}"),
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


class StatementTimer:
    """Wall seconds per statement kind on one engine (verb and table: `INSERT deliveries`,
    `ANALYZE subscribers`, …), for the "where did the time go" of each phase."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seconds: dict[str, float] = {}
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn, cursor, statement, params, context, many) -> None:
        conn.info["bench_started"] = time.perf_counter()

    def _after(self, conn, cursor, statement, params, context, many) -> None:
        took = time.perf_counter() - conn.info.pop("bench_started", time.perf_counter())
        kind = statement_label(statement)
        self.seconds[kind] = self.seconds.get(kind, 0.0) + took

    def take(self) -> dict[str, float]:
        """The seconds so far (largest first, statements over 10 ms), and start again."""
        taken, self.seconds = self.seconds, {}
        ranked = sorted(taken.items(), key=lambda kv: -kv[1])
        return {k: round(v, 2) for k, v in ranked if v >= 0.01}


def statement_label(statement: str) -> str:
    """`VERB table` of a statement (the first table it names after INTO/FROM/UPDATE/ANALYZE)."""
    flat = " ".join(statement.split())
    verb = flat.split(" ", 1)[0].upper() if flat else "?"
    found = re.search(r"\b(?:INTO|FROM|UPDATE|ANALYZE|TABLE)\s+\"?(\w+)", flat, re.IGNORECASE)
    return f"{verb} {found.group(1)}" if found else verb


def run(recipients: int, keep: str | None = None) -> dict[str, Any]:
    """Seed (or reuse `keep`'s data), fan out, measure; the figures as a dict (--json)."""
    from dispatch.dev.bench.send import fresh_database, load_average

    result: dict[str, Any] = {"recipients": recipients, "cpus": os.cpu_count()}
    result["load_before"] = load_average()
    with (
        fresh_database() if keep is None else kept_database(keep) as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        settings = bench_settings(
            database_url=url,
            data_dir=Path(tmp),
            secret_key="bench-secret-key",
            provider_mx_lookup=False,  # the provider table only: no DNS in a benchmark
        )
        _measure(settings, recipients, result)
    result["load_after"] = load_average()
    return result


def _measure(settings, recipients: int, result: dict[str, Any]) -> None:
    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.delivery.queue import ListQueue
    from dispatch.dev.bench.dbstats import storage

    engine = make_engine(settings.database_url)
    timer = StatementTimer(engine)
    try:
        started = time.perf_counter()
        issue_id, list_id, result["reused"] = _data_set(engine, recipients)
        result["seed_seconds"] = round(time.perf_counter() - started, 2)
        result["seed_statements"] = timer.take()
        with Session(engine) as session, session.begin():
            campaign, _ = campaigns.create_or_get(
                session, issue_id=issue_id, channel="email", list_ids=[list_id]
            )
            campaign_id = campaign.id
        queue = ListQueue()
        timer.take()
        cpu_before = backend_cpu(engine)
        started = time.perf_counter()
        batches = campaigns.start(engine, settings, campaign_id, queue)
        result["fan_out_seconds"] = round(time.perf_counter() - started, 2)
        result["fan_out_backend_cpu_seconds"] = cpu_spent(cpu_before, backend_cpu(engine))
        result["fan_out_statements"] = timer.take()
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


def backend_cpu(engine) -> dict[int, float]:
    """CPU seconds so far of this database's server processes, by pid (read from /proc: the
    server runs on this machine; empty when it does not). Less distorted by load than wall."""
    with engine.connect() as conn:
        pids = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).scalars()
        spent = {}
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            spent[int(pid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return spent


def cpu_spent(before: dict[int, float], after: dict[int, float]) -> float | None:
    if not after:
        return None
    return round(sum(v - before.get(pid, 0.0) for pid, v in after.items()), 2)


@contextmanager
def kept_database(name: str) -> Iterator[str]:
    """A bench database kept between runs (created and migrated when missing), so a run at
    1,000,000 seeds once: `--keep NAME`; `dropdb NAME` when done."""
    from dispatch.db import make_engine, upgrade
    from dispatch.dev.bench.dataset import ensure_database
    from dispatch.dev.bench.send import PG_ADMIN_URL, _pg_url

    if not re.fullmatch(r"[a-z0-9_]{1,50}", name):
        raise click.BadParameter(f"{name!r}: a-z, 0-9 and _ only")
    ensure_database(PG_ADMIN_URL, name)
    url = _pg_url(name)
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    yield url


def _data_set(engine, recipients: int) -> tuple[int, int, bool]:
    """(issue id, list id, reused): the list `fanout-<N>` of a kept database when it is there
    (the previous run's campaigns, deliveries and events dropped), else seeded now."""
    from dispatch.dev.bench.population import MIXED_DOMAINS, seed_list

    slug = f"fanout-{recipients}"
    with engine.begin() as conn:
        found = conn.execute(
            text("SELECT (SELECT min(id) FROM issues), (SELECT id FROM lists WHERE slug = :s)"),
            {"s": slug},
        ).one()
        if found[0] is not None and found[1] is not None:
            conn.execute(text("TRUNCATE events, deliveries, campaigns CASCADE"))
            return int(found[0]), int(found[1]), True
        # another size's data set: one list of N people per kept database
        conn.execute(text("TRUNCATE events, deliveries, campaigns, lists, subscribers CASCADE"))
    issue_id, list_id = seed_list(engine, recipients, slug=slug, domains=MIXED_DOMAINS)
    assert issue_id is not None
    return issue_id, list_id, False


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
@click.option(
    "--keep",
    default=None,
    metavar="DBNAME",
    help="Keep the data set in this database and reuse it next run / 保留并复用此数据库",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object / 输出 JSON")
def command(recipients: int, keep: str | None, as_json: bool) -> None:
    """Fan-out of one campaign to N people on PostgreSQL, and the bytes stored per delivery /
    扇出基准."""
    result = run(recipients, keep)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    say = lambda key, **kw: click.echo(MESSAGES.both(key, **kw))  # noqa: E731
    say("load", load=result["load_before"])
    say("reused" if result["reused"] else "seeded", n=recipients, s=result["seed_seconds"])
    say("statements", s=_listed(result["seed_statements"]))
    say(
        "fanned",
        n=recipients,
        b=result["batches"],
        s=result["fan_out_seconds"],
        a=result["analyze_seconds"],
    )
    say("statements", s=_listed(result["fan_out_statements"]))
    say("cpu", cpu=result["fan_out_backend_cpu_seconds"])
    say("rate", rate=result["deliveries_per_second"])
    say("events", s=result["events_seconds"])
    say("stored", **result["storage"]["bytes_per_delivery"])
    say("load", load=result["load_after"])


def _listed(seconds: dict[str, float]) -> str:
    return ", ".join(f"{kind} {s:.2f}" for kind, s in seconds.items()) or "-"
