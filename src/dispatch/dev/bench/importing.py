"""`dispatch bench import --rows N`: CSV import speed and peak memory on PostgreSQL.

Why a fresh database: the benchmark writes N fake subscribers, which must never land in a
real deployment's tables. It creates `dispatch_bench_<random>` on the PostgreSQL server of
settings.database_url (or on 127.0.0.1:5432 when the configured database is not PostgreSQL),
migrates it, imports, re-imports (the upsert path: nothing changes) and drops it.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import click
from sqlalchemy import make_url, text

from dispatch.cli.common import fail, json_option, settings_or_exit
from dispatch.db import make_engine, session_scope, upgrade
from dispatch.subscribers import service
from dispatch.subscribers.csv_import import import_csv

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
DOMAINS = ("qq.com", "163.com", "example.org", "gmail.com", "126.com", "cnis.ac.cn")
SURNAMES = "王李张刘陈杨赵黄周吴"
DEPARTMENTS = ("标准化研究所", "质量管理部", "Research", "办公室")


def generate_csv(path: Path, rows: int) -> None:
    """A realistic file: UTF-8 with BOM (as Excel saves), Chinese names, one extra attribute."""
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["email", "name", "locale", "openid", "department"])
        for i in range(rows):
            writer.writerow(
                [
                    f"user{i:06d}@{DOMAINS[i % len(DOMAINS)]}",
                    f"{SURNAMES[i % len(SURNAMES)]}{i}",
                    "en" if i % 5 == 0 else "zh-CN",
                    f"o{i:027d}" if i % 3 == 0 else "",
                    DEPARTMENTS[i % len(DEPARTMENTS)],
                ]
            )


def _server_url(database_url: str) -> tuple[str, str]:
    if database_url.startswith("postgresql"):
        return str(
            make_url(database_url).set(database="postgres").render_as_string(hide_password=False)
        ), "settings"
    return LOCAL_SERVER, "local"


def _backend_cpu_seconds(engine: Any, dbname: str) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends serving this database, read from
    /proc (only when the server runs on this machine; None otherwise). It lets the report say
    how much of the wall time was the server's own work on a machine shared with other load."""
    with engine.connect() as conn:
        pids = conn.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = :d"), {"d": dbname}
        ).all()
    total, ticks = 0.0, os.sysconf("SC_CLK_TCK")
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return total


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def run(database_url: str, rows: int) -> dict[str, Any]:
    server_url, where = _server_url(database_url)
    name = f"dispatch_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(
        str(make_url(server_url).set(database=name).render_as_string(hide_password=False))
    )
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            service.create_list(session, "bench", "Benchmark")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "subscribers.csv"
            generate_csv(path, rows)
            size = path.stat().st_size
            local = make_url(server_url).host in ("127.0.0.1", "localhost", "::1")
            server_cpu = _backend_cpu_seconds(admin, name) if local else None
            wall, cpu = time.perf_counter(), time.process_time()
            first = import_csv(engine, path, "bench")
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            server_after = _backend_cpu_seconds(admin, name) if local else None
            wall2, cpu2 = time.perf_counter(), time.process_time()
            second = import_csv(engine, path, "bench")
            wall2, cpu2 = time.perf_counter() - wall2, time.process_time() - cpu2
            server_end = _backend_cpu_seconds(admin, name) if local else None
            load = os.getloadavg()[0]
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    return {
        "rows": rows,
        "file_bytes": size,
        "database": (
            f"{make_url(server_url).host}:{make_url(server_url).port or 5432}/{name} "
            "(created and dropped; "
            "server from "
            f"{'settings.database_url' if where == 'settings' else 'the local default'})"
        ),
        "import_seconds": round(wall, 3),
        "import_rows_per_second": round(rows / wall),
        "import_client_cpu_seconds": round(cpu, 3),
        "import_server_cpu_seconds": _delta(server_cpu, server_after),
        "imported": first.imported,
        "reimport_seconds": round(wall2, 3),
        "reimport_rows_per_second": round(rows / wall2),
        "reimport_client_cpu_seconds": round(cpu2, 3),
        "reimport_server_cpu_seconds": _delta(server_after, server_end),
        "reimport_unchanged": second.unchanged,
        "peak_memory_mb": round(_peak_mb(), 1),
        "load_average_1min": round(load, 2),
        "cpus": os.cpu_count(),
    }


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


@click.command("import")
@click.option(
    "--rows", default=100_000, show_default=True, type=click.IntRange(1), help="CSV rows / 行数"
)
@json_option
def command(rows: int, as_json: bool) -> None:
    """CSV 导入基准 / CSV import into PostgreSQL: rows/s and peak memory."""
    settings = settings_or_exit()
    try:
        figures = run(settings.resolved_database_url, rows)
    except Exception as exc:  # one line, not a traceback, e.g. PostgreSQL not reachable
        fail(
            f"bench import: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        )
        return
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    click.echo(f"数据库 / database: {figures['database']}")
    click.echo(
        f"导入 / import: {figures['rows']:,} rows in {figures['import_seconds']} s = "
        f"{figures['import_rows_per_second']:,} rows/s (client CPU "
        f"{figures['import_client_cpu_seconds']} s)"
    )
    click.echo(
        f"重复导入 / re-import (unchanged {figures['reimport_unchanged']:,}): "
        f"{figures['reimport_seconds']} s = "
        f"{figures['reimport_rows_per_second']:,} rows/s (client CPU "
        f"{figures['reimport_client_cpu_seconds']} s)"
    )
    click.echo(f"峰值内存 / peak memory (ru_maxrss): {figures['peak_memory_mb']} MB")
    if figures["import_server_cpu_seconds"] is not None:
        click.echo(
            f"服务器 CPU / PostgreSQL backend CPU: import {figures['import_server_cpu_seconds']} "
            f"s, "
            f"re-import {figures['reimport_server_cpu_seconds']} s"
        )
    click.echo(
        f"负载 / load average (1 min): {figures['load_average_1min']} on {figures['cpus']} CPUs"
    )
