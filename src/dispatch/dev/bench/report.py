"""`dispatch bench report [--recipients N] [--events M] [--reuse] [--json]`: a big report.

Builds, in a PostgreSQL database of its own, one finished campaign of the sample issue to N
recipients (default 1,000,000) with M events (default 3,000,000: sent, bounces, complaints,
unsubscribes, opens by people, Apple MPP and scanners, clicks on 30 links, a few all-at-once
scanner bursts) and their tracking-hit counters. The load is COPY with the big tables'
secondary indexes dropped and rebuilt afterwards (a sorted build is several times cheaper than
millions of index insertions), then ANALYZE (autovacuum may be off). With `--reuse` the database
is named after N and M (`dispatch_bench_report_<N>_<M>`), kept, and used again by the next
`--reuse` run (its tallies reset, the previous run's fresh events deleted); without it, a
random name, dropped afterwards. Then it measures:

- `rollup_seconds`: the one-time roll-up of every event into the report tallies (the beat task
  does this a minute at a time in production);
- per endpoint (campaign report page, issue report page, campaign CSV export, campaign report
  API): `cold` (the first request of a fresh app), `p50`/`p95` of `--repeat` warm requests,
  and the web process's CPU seconds per warm request;
- the same campaign page and API with `--tail` fresh events not rolled up yet (`tail`).

The target (issue 14): the report renders in under 1 s. `--json` keys are stable.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import make_url, text
from sqlalchemy.orm import Session

from dispatch.cli.common import fail, json_option, settings_or_exit
from dispatch.db import make_engine, session_scope, upgrade
from dispatch.dev.bench.dataset import drop_secondary_indexes, ensure_database

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
PROVIDERS = ("qq", "netease", "other", "gmail", "outlook", "sina", "edu")
AGENTS = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 13; V2227A) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 "
    "Chrome/98.0 Mobile Safari/537.36 QQMail/6.5.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.5.0",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17029; Pro)",
    "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 12) AppleWebKit/537.36 MailMaster/7.18.2 Mobile Safari/537.36",
)
LINKS = 30


def _server_url(database_url: str) -> str:
    if database_url.startswith("postgresql"):
        url = make_url(database_url).set(database="postgres")
        return str(url.render_as_string(hide_password=False))
    return LOCAL_SERVER


def _copy(engine: Any, table: str, columns: str, lines: Any) -> None:
    """COPY … FROM STDIN in blocks of text lines (tab-separated, no tabs in the values)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            block = io.StringIO()
            for n, line in enumerate(lines, start=1):
                block.write(line)
                if n % 50_000 == 0:
                    copy.write(block.getvalue())
                    block = io.StringIO()
            copy.write(block.getvalue())
        raw.commit()
    finally:
        raw.close()


def _setup(engine: Any, recipients: int, start: datetime) -> tuple[int, int, int]:
    """The sample issue, a list and a finished campaign; (campaign id, list id, link count)."""
    from dispatch.content.store import publish_source
    from dispatch.delivery import campaigns
    from dispatch.models.delivery import Campaign
    from dispatch.paths import SAMPLE_ISSUE_DIR
    from dispatch.subscribers import service

    with session_scope(engine) as session:
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        mailing_list = service.create_list(session, "members", "会员 Members")
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[mailing_list.id]
        )
        row = session.get_one(Campaign, campaign.id)
        row.status, row.total, row.started_at = "finished", recipients, start
        row.finished_at = start + timedelta(hours=3)
        return campaign.id, mailing_list.id, len(issue.summary.get("links") or [])


class _Plan:
    """Who did what, drawn once with a fixed seed so every run loads the same data."""

    def __init__(self, recipients: int, events: int, links: int, start: datetime):
        self.rng = random.Random(14)
        self.n, self.start, self.links = recipients, start, max(1, min(links, LINKS))
        self.bounced = recipients // 100  # at sending
        self.sent = recipients - self.bounced
        self.late = recipients // 200
        self.complaints, self.unsubscribed = recipients // 1000, recipients // 250
        fixed = self.sent + self.bounced + self.late + self.complaints + self.unsubscribed
        self.openers = min(self.sent, int(recipients * 0.62))
        clicks = max(0, events - fixed - self.openers)
        self.clickers = min(self.openers, max(1, clicks // 4)) if clicks else 0
        self.clicks = clicks

    def at(self, hours: float) -> datetime:
        return self.start + timedelta(hours=hours)


def _delivery_lines(plan: _Plan, campaign_id: int) -> Any:
    sent_at = plan.start.isoformat()
    for i in range(1, plan.n + 1):
        status = "bounced" if i > plan.sent else "sent"
        provider = PROVIDERS[i % len(PROVIDERS)]
        when = sent_at if status == "sent" else "\\N"
        yield (
            f"{i}\t{campaign_id}\t{i}\tu{i}@example.org\t\tzh-CN\t{i // 500}\t{provider}\t"
            f"{status}\t1\t{when}\t{sent_at}\n"
        )


def _event(kind: str, at: datetime, campaign_id: int, d: int, data: str = "{}") -> str:
    return f"{kind}\temail\t{at.isoformat()}\t{campaign_id}\t{d}\t{d}\t\\N\t{data}\n"


def _data(**values: Any) -> str:
    return json.dumps(values, ensure_ascii=False)


def _open_data(rng: random.Random, d: int) -> tuple[str, float]:
    """(event data, hours after the send) of one first open: people, MPP or scanners."""
    roll = d % 100
    if roll < 28:  # Apple MPP, fetched on arrival
        return _data(ua="Mozilla/5.0", ip=f"17.58.{d % 250}.{d % 200}"), 0.01
    if roll < 34:  # a gateway scanner, seconds after delivery
        agent = AGENTS[2]
        return _data(ua=agent, ip=f"203.0.113.{d % 250}"), 0.0005
    agent = AGENTS[d % len(AGENTS)]
    return _data(ua=agent, ip=f"198.51.{d % 250}.{d % 200}"), rng.expovariate(0.08)


def _event_lines(plan: _Plan, campaign_id: int) -> Any:
    rng = plan.rng
    for d in range(1, plan.sent + 1):
        yield _event("sent", plan.start, campaign_id, d)
    for d in range(plan.sent + 1, plan.n + 1):
        yield _event("bounced", plan.start, campaign_id, d)
    for d in range(1, plan.late + 1):
        yield _event("bounce_hard", plan.at(1 + d % 20), campaign_id, d)
    left = plan.clicks
    for d in range(1, plan.openers + 1):
        data, hours = _open_data(rng, d)
        yield _event("opened", plan.at(min(hours, 24 * 5)), campaign_id, d, data)
        if d <= plan.clickers and left > 0:
            count = min(left, 1 + (d % 7) if d % 50 else plan.links)  # every 50th: a burst
            left -= count
            agent = AGENTS[d % len(AGENTS)]
            base = hours + 0.02
            for k in range(count):
                link = (d + k) % plan.links
                step = 1.0 / 3600 if d % 50 == 0 else 0.05 * (k + 1)
                payload = _data(link_index=link, url=f"u{link}", ua=agent, ip=f"198.51.1.{d % 250}")
                yield _event(
                    "clicked", plan.at(min(base + k * step, 24 * 5)), campaign_id, d, payload
                )
    for d in range(1, plan.complaints + 1):
        yield _event("complaint", plan.at(2), campaign_id, plan.late + d)
    for d in range(1, plan.unsubscribed + 1):
        yield _event("unsubscribed", plan.at(3), campaign_id, plan.late + plan.complaints + d)


def _hit_lines(engine: Any, campaign_id: int) -> None:
    """One tracking_hits counter per first open and first click (1-4 hits each)."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO tracking_hits (delivery_id, link_index, campaign_id, count, "
                "first_at, last_at) SELECT delivery_id, CASE WHEN kind = 'opened' THEN -1 ELSE "
                "(data->>'link_index')::int END, campaign_id, 1 + (delivery_id % 4), occurred_at, "
                "occurred_at FROM events WHERE campaign_id = :c AND kind IN ('opened', 'clicked')"
            ),
            {"c": campaign_id},
        )


BIG_TABLES = ("deliveries", "events", "tracking_hits")
EVENT_COLUMNS = "kind, channel, occurred_at, campaign_id, delivery_id, subscriber_id, list_id, data"
META = "bench_report_meta"  # one row once a build is complete: what --reuse looks for


def load(engine: Any, recipients: int, events: int) -> dict[str, Any]:
    """Build the data set; its figures (campaign id, seconds, rows)."""
    now = datetime.now(UTC)
    start = now - timedelta(days=5, hours=3)
    campaign_id, _list_id, links = _setup(engine, recipients, start)
    plan = _Plan(recipients, events, links, start)
    began = time.perf_counter()
    with engine.begin() as conn:
        indexes = drop_secondary_indexes(conn, BIG_TABLES)
    _copy(
        engine,
        "deliveries",
        "id, campaign_id, subscriber_id, email, name, locale, batch_no, provider, status, "
        "attempts, sent_at, updated_at",
        _delivery_lines(plan, campaign_id),
    )
    _copy(engine, "events", EVENT_COLUMNS, _event_lines(plan, campaign_id))
    _hit_lines(engine, campaign_id)
    copied = time.perf_counter() - began
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET maintenance_work_mem = '256MB'"))
        for statement in indexes:
            conn.execute(text(statement))
        conn.execute(text("ANALYZE"))
        counts = {t: int(conn.scalar(text(f"SELECT count(*) FROM {t}"))) for t in BIG_TABLES}
        built = {
            "campaign_id": campaign_id,
            "events_max_id": int(conn.scalar(text("SELECT max(id) FROM events"))),
            "copy_seconds": round(copied, 1),
            "load_seconds": round(time.perf_counter() - began, 1),
            "events": counts["events"],
            "deliveries": counts["deliveries"],
            "tracking_hits": counts["tracking_hits"],
        }
        conn.execute(text(f"CREATE TABLE {META} (figures json NOT NULL)"))
        conn.execute(text(f"INSERT INTO {META} VALUES (:f)"), {"f": json.dumps(built)})
    return {**built, "reused": False}


def _reused(engine: Any) -> dict[str, Any] | None:
    """The figures of a complete earlier build in this database, made ready for a new run
    (tallies emptied, the earlier run's fresh events deleted); None when there is none."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if conn.scalar(text("SELECT to_regclass(:t)"), {"t": META}) is None:
            return None
        built = json.loads(str(conn.scalar(text(f"SELECT figures::text FROM {META}"))))
        conn.execute(text("DELETE FROM events WHERE id > :m"), {"m": built["events_max_id"]})
        conn.execute(text("DELETE FROM report_tallies"))
        conn.execute(text("DELETE FROM report_watermarks"))
        conn.execute(text("VACUUM ANALYZE events"))
    return {**built, "reused": True}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(call: Any, repeat: int) -> dict[str, float]:
    """The first call (cold), then p50/p95 and CPU seconds per call of `repeat` more."""
    began = time.perf_counter()
    call()
    cold = time.perf_counter() - began
    runs = []
    cpu = _cpu()
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        runs.append(time.perf_counter() - began)
    return {
        "cold": round(cold, 3),
        "p50": round(_percentile(runs, 0.5), 3),
        "p95": round(_percentile(runs, 0.95), 3),
        "cpu_per_request": round((_cpu() - cpu) / repeat, 3),
    }


def _client(settings: Any, engine: Any) -> tuple[Any, dict[str, str]]:
    """A test client of a fresh web app, logged in as an editor, and an API token's headers."""
    from fastapi.testclient import TestClient

    from dispatch.web.app import create_app
    from dispatch.web.users import create_api_token, create_user

    password = "bench-" + uuid.uuid4().hex
    email = f"bench-{uuid.uuid4().hex[:8]}@example.org"
    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = create_user(session, email, password, "editor", "zh-CN")
        token = create_api_token(session, user, "bench")
    client = TestClient(create_app(settings), base_url="https://testserver")
    page = client.get("/admin/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": csrf},
        follow_redirects=False,
    )
    return client, {"Authorization": f"Bearer {token}"}


def _endpoints(campaign_id: int, issue_id: int) -> dict[str, str]:
    return {
        "campaign_page": f"/admin/campaigns/{campaign_id}/report",
        "issue_page": f"/admin/issues/{issue_id}/report",
        "campaign_csv": f"/admin/campaigns/{campaign_id}/report.csv",
        "campaign_api": f"/api/campaigns/{campaign_id}/report",
    }


def _requests(settings: Any, engine: Any, paths: dict[str, str], repeat: int) -> dict[str, Any]:
    """Each endpoint timed through a fresh app (its first request is the cold one)."""
    client, headers = _client(settings, engine)
    out: dict[str, Any] = {}
    with client:
        for name, path in paths.items():
            extra = headers if path.startswith("/api/") else {}

            def get(path: str = path, extra: dict[str, str] = extra) -> None:
                response = client.get(path, headers=extra)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {path}: {response.status_code}")

            out[name] = _timed(get, repeat)
            out[name]["bytes"] = len(client.get(path, headers=extra).content)
    return out


def _rollup(engine: Any, campaign_id: int) -> dict[str, Any]:
    from dispatch.models.delivery import Campaign
    from dispatch.reports import rollup

    with Session(engine) as session:
        campaign = session.get_one(Campaign, campaign_id)
        began = time.perf_counter()
        added = rollup.refresh(session, campaign, now=datetime.now(UTC) + timedelta(minutes=2))
        return {
            "rollup_seconds": round(time.perf_counter() - began, 2),
            "rollup_events": added,
            "issue_id": int(campaign.issue_id or 0),
        }


def _add_tail(engine: Any, campaign_id: int, tail: int, recipients: int) -> None:
    """`tail` fresh opens of people who had not opened (not rolled up yet)."""
    now = datetime.now(UTC)
    first = max(1, recipients - tail - recipients // 100)
    rows = (
        _event("opened", now, campaign_id, d, _data(ua=AGENTS[0], ip="198.51.100.1"))
        for d in range(first, first + tail)
    )
    _copy(engine, "events", EVENT_COLUMNS, rows)


def _database(server_url: str, reuse: bool, recipients: int, events: int) -> tuple[str, bool]:
    """(database name, whether it existed) — created when it did not."""
    name = (
        f"dispatch_bench_report_{recipients}_{events}"
        if reuse
        else f"dispatch_bench_{uuid.uuid4().hex[:10]}"
    )
    return name, ensure_database(server_url, name)


def _drop(server_url: str, name: str) -> None:
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _figures(engine: Any, settings: Any, options: dict[str, Any]) -> dict[str, Any]:
    recipients, events = options["recipients"], options["events"]
    built = _reused(engine) if options["existed"] else None
    if built is None:
        upgrade(engine)
        built = load(engine, recipients, events)
    figures: dict[str, Any] = {"recipients": recipients, **built}
    campaign_id = built["campaign_id"]
    figures["load_before"] = round(os.getloadavg()[0], 2)
    figures.update(_rollup(engine, campaign_id))
    paths = _endpoints(campaign_id, figures["issue_id"])
    figures["requests"] = _requests(settings, engine, paths, options["repeat"])
    if options["tail"]:
        _add_tail(engine, campaign_id, options["tail"], recipients)
        tail_paths = {k: paths[k] for k in ("campaign_page", "campaign_api")}
        figures["tail"] = {
            "events": options["tail"],
            **_requests(settings, engine, tail_paths, options["repeat"]),
        }
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    figures["cpus"] = os.cpu_count()
    figures["target_seconds"] = 1.0
    return figures


def run(settings: Any, **options: Any) -> dict[str, Any]:
    """Build or reuse the data set, measure, and drop it unless reused."""
    server_url = _server_url(settings.resolved_database_url)
    name, existed = _database(
        server_url, options["reuse"], options["recipients"], options["events"]
    )
    url = str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    engine = make_engine(url)
    try:
        figures = _figures(
            engine, settings.replace(database_url=url), {**options, "existed": existed}
        )
        figures["database"] = name
        return figures
    finally:
        engine.dispose()  # the app's own pooled engine is ended by DROP … WITH (FORCE)
        if not options["reuse"]:
            _drop(server_url, name)


def _echo(figures: dict[str, Any]) -> None:
    how = (
        "reused"
        if figures["reused"]
        else f"COPY + indexes + ANALYZE in {figures['load_seconds']} s"
    )
    click.echo(
        f"数据 / data: {figures['recipients']:,} recipients, {figures['events']:,} events, "
        f"{figures['tracking_hits']:,} hit counters ({how})"
    )
    click.echo(
        f"汇总 / rollup: {figures['rollup_events']:,} events in {figures['rollup_seconds']} s "
        "(once; the beat task keeps it current)"
    )
    groups = [("", figures["requests"])]
    if "tail" in figures:
        groups.append((f" + {figures['tail']['events']:,} untallied", figures["tail"]))
    for label, group in groups:
        for name, t in group.items():
            if isinstance(t, dict):
                click.echo(
                    f"{name}{label}: cold {t['cold']} s, p50 {t['p50']} s, p95 {t['p95']} s, "
                    f"CPU {t['cpu_per_request']} s/request"
                )
    click.echo(
        f"目标 / target < {figures['target_seconds']} s; 负载 / load average (1 min): "
        f"{figures['load_before']} before, {figures['load_average_1min']} after, "
        f"{figures['cpus']} CPUs"
    )


@click.command("report")
@click.option("--recipients", default=1_000_000, show_default=True, type=click.IntRange(10))
@click.option("--events", default=3_000_000, show_default=True, type=click.IntRange(10))
@click.option("--repeat", default=10, show_default=True, type=click.IntRange(1))
@click.option("--tail", default=10_000, show_default=True, type=click.IntRange(0))
@click.option(
    "--reuse",
    is_flag=True,
    help="keep the data set in a database named after its size and use it again next time",
)
@json_option
def command(
    recipients: int, events: int, repeat: int, tail: int, reuse: bool, as_json: bool
) -> None:
    """报告基准 / the report of a big campaign on PostgreSQL (target: page under 1 s)."""
    settings = settings_or_exit()
    try:
        figures = run(
            settings, recipients=recipients, events=events, repeat=repeat, tail=tail, reuse=reuse
        )
    except Exception as exc:  # one line, not a traceback, e.g. PostgreSQL not reachable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"bench report: {first}")
        return
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2, default=str))
        return
    _echo(figures)
