"""The data set of the admin and tracking benchmarks: a university's bulletin after four years.

At --scale 1: 1,000,000 subscribers on three lists, 50 finished monthly campaigns, 4,000,000
deliveries, 10,000,000 events (queued and sent for each delivery, a first open for 40 %, a first
click for 10 %), 2,000,000 tracking hit counters and 10,000 suppressions. Everything scales
with --scale except the 50 campaigns.

How it is fast on two shared cores: a database of its own (created on the server named by
--database-url, dropped and rebuilt only when the scale changes); subscribers stream in with
PostgreSQL's COPY (one round trip, no per-row statements); every table derived from them is
one `INSERT … SELECT generate_series` inside the server; the secondary indexes of the big
tables are dropped before the load and built once afterwards (a sorted build is several times
cheaper than millions of index insertions), then ANALYZE gives the planner real statistics,
as PostgreSQL's documentation advises after a bulk load.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from dispatch.db import make_engine, upgrade

CAMPAIGNS = 50
SUBSCRIBERS = 1_000_000
EVENTS = 10_000_000
EVENTS_PER_DELIVERY = 2.5  # queued + sent + 0.4 opened + 0.1 clicked
BIG_TABLES = ("subscribers", "subscriptions", "deliveries", "events", "tracking_hits")
SURNAMES = [
    ("zhang", "张"),
    ("wang", "王"),
    ("li", "李"),
    ("zhao", "赵"),
    ("chen", "陈"),
    ("liu", "刘"),
    ("yang", "杨"),
    ("huang", "黄"),
    ("zhou", "周"),
    ("wu", "吴"),
    ("xu", "徐"),
    ("sun", "孙"),
    ("hu", "胡"),
    ("zhu", "朱"),
    ("gao", "高"),
    ("lin", "林"),
    ("he", "何"),
    ("guo", "郭"),
    ("ma", "马"),
    ("luo", "罗"),
]
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍"
DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "foxmail.com", "gmail.com", "pku.edu.cn"]
PROVIDERS = {
    "qq.com": "qq",
    "foxmail.com": "qq",
    "163.com": "netease",
    "126.com": "netease",
    "sina.com": "sina",
    "gmail.com": "gmail",
}


@dataclass(frozen=True)
class Dataset:
    url: str  # the data set's own database
    scale: float
    subscribers: int
    deliveries_per_campaign: int
    events: int
    campaign_ids: list[int]
    list_ids: list[int]
    issue_id: int
    n_links: int
    build_seconds: float  # 0.0 when an existing build was reused

    @property
    def latest_campaign(self) -> int:
        return self.campaign_ids[-1]


def sizes(scale: float) -> tuple[int, int]:
    """(subscribers, deliveries per campaign) at this scale."""
    subscribers = max(1000, int(SUBSCRIBERS * scale))
    per_campaign = max(100, int(EVENTS * scale / (CAMPAIGNS * EVENTS_PER_DELIVERY)))
    return subscribers, min(per_campaign, subscribers)


def _database_url(server_url: str, name: str) -> str:
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def _recreate(server_url: str, name: str) -> None:
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


def _built_scale(url: str) -> float | None:
    """The scale an earlier complete build recorded, or None."""
    try:
        engine = make_engine(url)
        with engine.connect() as conn:
            found = conn.execute(text("SELECT scale FROM bench_dataset")).scalar()
        engine.dispose()
        return float(found) if found is not None else None
    except Exception:  # noqa: BLE001 - no database, no table: not built
        return None


def _subscriber_rows(count: int, seed: int = 17) -> Iterator[tuple]:
    rng = random.Random(seed)
    start = datetime(2022, 9, 1, tzinfo=UTC)
    for i in range(1, count + 1):
        pinyin, hanzi = SURNAMES[rng.randrange(len(SURNAMES))]
        domain = DOMAINS[rng.randrange(len(DOMAINS))]
        email = f"{pinyin}.{i}@{domain}"
        name = hanzi + GIVEN[rng.randrange(len(GIVEN))] + GIVEN[rng.randrange(len(GIVEN))]
        created = start + timedelta(seconds=i * 120)
        locale = "en" if i % 7 == 0 else "zh-CN"
        yield (email, email, name, locale, "{}", "active", "email", created, created)


def _copy_subscribers(engine: Engine, count: int) -> None:
    """The one table that comes from outside: streamed in with COPY."""
    raw = engine.raw_connection()
    try:
        dbapi = raw.dbapi_connection
        assert dbapi is not None
        with dbapi.cursor() as cursor:
            columns = "email, email_key, name, locale, attributes, status, preferred_channel, "
            columns += "created_at, confirmed_at"
            with cursor.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
                for row in _subscriber_rows(count):
                    copy.write_row(row)
        raw.commit()
    finally:
        raw.close()


def drop_secondary_indexes(conn, tables: tuple[str, ...] = BIG_TABLES) -> list[str]:
    """Drop the tables' indexes that back no key (primary, unique or constraint), so a bulk
    load does not maintain them row by row; returns their CREATE statements to run after."""
    rows = conn.execute(
        text(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "WHERE i.indrelid::regclass::text = ANY(:tables) AND NOT i.indisprimary "
            "AND NOT i.indisunique AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)"
        ),
        {"tables": list(tables)},
    ).all()
    for name, _ in rows:
        conn.execute(text(f'DROP INDEX "{name}"'))
    return [str(definition) for _, definition in rows]


def ensure_database(server_url: str, name: str) -> bool:
    """Create the database `name` on the server unless it exists; whether it existed."""
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            found = conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if not found:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return bool(found)


def _publish(engine: Engine) -> tuple[int, int, list[int]]:
    """The sample issue and three lists; (issue id, number of links, list ids)."""
    from dispatch.content.store import publish_source
    from dispatch.paths import SAMPLE_ISSUE_DIR
    from dispatch.subscribers import service

    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        lists = [
            service.create_list(session, "everyone", "全体读者 Everyone"),
            service.create_list(session, "alumni", "校友 Alumni"),
            service.create_list(session, "staff", "教职工 Staff"),
        ]
        return issue.id, len(issue.summary["links"]), [m.id for m in lists]


def _derived_sql(issue_id: int, list_ids: list[int], per_campaign: int) -> list[str]:
    """Subscriptions, campaigns, deliveries, events, hit counters and suppressions, each one
    set-based statement over the subscribers already loaded."""
    everyone, alumni, staff = list_ids
    provider = "CASE split_part(s.email, '@', 2) " + " ".join(
        f"WHEN '{d}' THEN '{p}'" for d, p in PROVIDERS.items()
    )
    provider += " ELSE 'other' END"
    return [
        f"INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, confirmed_at, "
        f"source) SELECT id, {everyone}, 'confirmed', created_at, created_at, 'import' "
        f"FROM subscribers UNION ALL SELECT id, {alumni}, 'confirmed', created_at, created_at, "
        f"'import' FROM subscribers WHERE id % 2 = 0 UNION ALL SELECT id, {staff}, "
        f"CASE WHEN id % 50 = 0 THEN 'unsubscribed' ELSE 'confirmed' END, created_at, "
        f"created_at, 'web-form' FROM subscribers WHERE id % 10 = 0",
        # 50 monthly campaigns, the last one a month ago
        f"INSERT INTO campaigns (issue_id, channel, list_ids, dedupe_key, status, is_test, "
        f"tracking, started_at, finished_at, total, batch_count, options, created_at, "
        f"updated_at) SELECT {issue_id}, 'email', '[{everyone}]', 'bench:' || k, 'finished', "
        f"false, true, t, t + interval '3 hours', {per_campaign}, {-(-per_campaign // 200)}, "
        f"'{{}}', t - interval '1 day', t + interval '3 hours' FROM generate_series(1, "
        f"{CAMPAIGNS}) k, LATERAL (SELECT now() - ({CAMPAIGNS} - k + 1) * interval '30 days' "
        f"AS t) x",
        # campaign k reaches a window of the subscribers (every one of them once)
        f"INSERT INTO deliveries (campaign_id, subscriber_id, email, name, locale, batch_no, "
        f"provider, status, attempts, sent_at, updated_at) SELECT c.id, s.id, s.email, s.name, "
        f"s.locale, i / 200, {provider}, 'sent', 1, c.started_at + i * interval '2 ms', "
        f"c.started_at + i * interval '2 ms' FROM campaigns c CROSS JOIN generate_series(0, "
        f"{per_campaign - 1}) i JOIN subscribers s ON s.id = 1 + ((c.id - 1) * {per_campaign} "
        f"+ i) % (SELECT max(id) FROM subscribers) ORDER BY c.id, i",
        # queued and sent for each delivery, a first open for 4 in 10, a first click for 1
        "INSERT INTO events (kind, channel, occurred_at, campaign_id, delivery_id, "
        "subscriber_id, list_id, data) SELECT k.kind, 'email', d.sent_at + k.delay, "
        "d.campaign_id, d.id, d.subscriber_id, NULL, k.data::json FROM deliveries d JOIN "
        "(VALUES ('queued', interval '-1 hour', '{}', 10), ('sent', interval '0', '{}', 10), "
        "('opened', interval '5 hours', '{\"ua\": \"Mozilla/5.0\"}', 4), ('clicked', "
        "interval '6 hours', '{\"link_index\": 0}', 1)) k(kind, delay, data, share) ON "
        "d.id % 10 < k.share ORDER BY d.id",
        "INSERT INTO tracking_hits (delivery_id, link_index, campaign_id, count, first_at, "
        "last_at) SELECT d.id, -1, d.campaign_id, 1 + d.id % 3, d.sent_at + interval '5 hours', "
        "d.sent_at + interval '9 hours' FROM deliveries d WHERE d.id % 10 < 4 UNION ALL "
        "SELECT d.id, 0, d.campaign_id, 1, d.sent_at + interval '6 hours', d.sent_at + "
        "interval '6 hours' FROM deliveries d WHERE d.id % 10 = 0",
        "INSERT INTO suppressions (email, email_key, reason, source, created_at, note) SELECT "
        "email, email_key, 'bounced', 'bench', created_at, '' FROM subscribers WHERE id % 100 = 7",
    ]


def _load(engine: Engine, subscribers: int, per_campaign: int, say: Callable[[str], None]):
    issue_id, n_links, list_ids = _publish(engine)
    with engine.begin() as conn:
        definitions = drop_secondary_indexes(conn)
    t0 = time.perf_counter()
    _copy_subscribers(engine, subscribers)
    say(f"COPY {subscribers} subscribers: {time.perf_counter() - t0:.1f} s")
    for statement in _derived_sql(issue_id, list_ids, per_campaign):
        t0 = time.perf_counter()
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL synchronous_commit = off"))
            done = conn.execute(text(statement)).rowcount
        table = statement.split()[2]
        say(f"{table}: {done} rows in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
        for definition in definitions:
            conn.execute(text(definition))
    say(f"{len(definitions)} indexes built in {time.perf_counter() - t0:.1f} s")
    return issue_id, n_links, list_ids


def analyze(url: str) -> None:
    engine = make_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("VACUUM (ANALYZE)"))
    engine.dispose()


def build(
    server_url: str,
    scale: float,
    *,
    name: str = "dispatch_bench_dataset",
    reuse: bool = True,
    say: Callable[[str], None] = print,
) -> Dataset:
    """The data set at `scale` in database `name` on the server of `server_url` (PostgreSQL),
    reused when an earlier complete build has the same scale."""
    url = _database_url(server_url, name)
    subscribers, per_campaign = sizes(scale)
    started = time.perf_counter()
    if not (reuse and _built_scale(url) == scale):
        _recreate(server_url, name)
        engine = make_engine(url)
        upgrade(engine)
        _load(engine, subscribers, per_campaign, say)
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE bench_dataset (scale float, built_at timestamptz)"))
            conn.execute(text("INSERT INTO bench_dataset VALUES (:s, now())"), {"s": scale})
        engine.dispose()
        t0 = time.perf_counter()
        analyze(url)
        say(f"VACUUM ANALYZE: {time.perf_counter() - t0:.1f} s")
        built = time.perf_counter() - started
    else:
        built = 0.0
    return describe(url, scale, built)


def describe(url: str, scale: float, build_seconds: float) -> Dataset:
    engine = make_engine(url)
    with engine.connect() as conn:
        # (the admin bench's mid-send campaign, while it exists, is not one of the 50)
        campaign_ids = list(
            conn.execute(
                text("SELECT id FROM campaigns WHERE dedupe_key <> 'bench:mid-send' ORDER BY id")
            ).scalars()
        )
        list_ids = list(conn.execute(text("SELECT id FROM lists ORDER BY id")).scalars())
        issue_id, links = conn.execute(text("SELECT id, summary FROM issues LIMIT 1")).one()
        events = conn.execute(text("SELECT count(*) FROM events")).scalar() or 0
        people = conn.execute(text("SELECT count(*) FROM subscribers")).scalar() or 0
    engine.dispose()
    return Dataset(
        url=url,
        scale=scale,
        subscribers=int(people),
        deliveries_per_campaign=sizes(scale)[1],
        events=int(events),
        campaign_ids=campaign_ids,
        list_ids=list_ids,
        issue_id=int(issue_id),
        n_links=len(links["links"]) if isinstance(links, dict) else 0,
        build_seconds=round(build_seconds, 1),
    )


# -- what both benches share: their options, the data set, a server over it, its CPU ------

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def options(command: Callable) -> Callable:
    """--scale, --database-url, --dataset, --rebuild: the data set's options of both benches."""
    for option in reversed(
        [
            click.option(
                "--scale", type=click.FloatRange(0.001, 1.0), default=1.0, show_default=True
            ),
            click.option(
                "--database-url",
                default=DEFAULT_SERVER,
                show_default=True,
                help="a PostgreSQL server; the data set gets a database of its own there",
            ),
            click.option(
                "--dataset",
                "dataset_name",
                default="dispatch_bench_dataset",
                show_default=True,
                help="the data set's database (rebuilt when its scale differs)",
            ),
            click.option("--rebuild", is_flag=True, help="build the data set again"),
        ]
    ):
        command = option(command)
    return command


def open_dataset(
    database_url: str, scale: float, dataset_name: str, rebuild: bool, quiet: bool
) -> Dataset:
    """The data set the options name, built (progress on stderr unless quiet) or reused."""
    from dispatch.cli.common import fail

    if not database_url.startswith("postgresql"):
        fail("the data set needs PostgreSQL / 需要 PostgreSQL (--database-url)")
    say = (lambda _m: None) if quiet else (lambda m: click.echo(m, err=True))
    return build(database_url, scale, name=dataset_name, reuse=not rebuild, say=say)


class CpuMeter:
    """CPU seconds spent by the web server (and its workers) and by the PostgreSQL backends of
    the data set's database: what the requests cost whatever else the machine runs (on a shared
    machine the wall-clock time also holds the waits for a core). Backends whose
    application_name starts with "bench-load" (a bench's simulated workers) are left out."""

    def __init__(self, url: str, server_pid: int):
        self.engine = make_engine(url)
        self.server_pid = server_pid

    def _backends(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND application_name NOT LIKE 'bench-load%'"
                    )
                ).scalars()
            )

    def split(self) -> tuple[float, float]:
        """(web process seconds, database backend seconds) so far."""
        from dispatch.dev.bench.loopback import _cpu_seconds

        database = 0.0
        tick = os.sysconf("SC_CLK_TCK")
        for pid in self._backends():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            database += (int(fields[11]) + int(fields[12])) / tick
        return _cpu_seconds(self.server_pid), database

    def seconds(self) -> float:
        return sum(self.split())

    def close(self) -> None:
        self.engine.dispose()


@dataclass
class Served:
    proc: object  # subprocess.Popen
    port: int
    var: Path  # the server's data_dir (uvicorn.log)
    cpu: CpuMeter


@contextmanager
def served(url: str, workers: int = 1) -> Iterator[Served]:
    """uvicorn on loopback over the data set's database, stopped afterwards."""
    from dispatch.dev.bench.loopback import _free_port, _start_server, _stop

    with tempfile.TemporaryDirectory(prefix="dispatch-bench-dataset-") as tmp:
        port = _free_port()
        var = Path(tmp) / "var"
        proc = _start_server(url, var, port, workers)
        cpu = CpuMeter(url, proc.pid)
        try:
            yield Served(proc, port, var, cpu)
        finally:
            cpu.close()
            _stop(proc)
