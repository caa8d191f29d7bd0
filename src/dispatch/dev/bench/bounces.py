"""`dispatch bench bounces [--messages N] [--json]`: parse-and-record rate and peak memory.

The sample corpus (tests/fixtures/bounces, 40+ real-world bounces, complaints and auto-replies)
is repeated to N messages. Each copy gets its own Delivered-To VERP address naming a delivery
of a seeded campaign (so every message is matched, recorded, and hard bounces suppress, as in
production) and a sequence header (so no two copies share a digest). The messages go through
`dispatch.bounces.record.record_chunk` `--batch` at a time, one transaction per chunk (500 by
default; `--batch 1` is what the mailbox poller and the SMTP intake do per message).
A fresh PostgreSQL database is created and dropped (never the configured one); `--sqlite`
uses a temporary SQLite file instead.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
from sqlalchemy import insert, make_url, select, text
from sqlalchemy.orm import Session

from dispatch.cli.common import fail, json_option, settings_or_exit
from dispatch.config import Settings
from dispatch.db import make_engine, upgrade
from dispatch.paths import PROJECT_ROOT

CORPUS = PROJECT_ROOT / "tests" / "fixtures" / "bounces"
LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def corpus() -> list[bytes]:
    files = sorted(CORPUS.glob("*.eml"))
    if not files:
        fail(f"no sample corpus at {CORPUS} (it ships with the source tree)")
    return [f.read_bytes() for f in files]


def seed(engine: Any, n: int) -> tuple[int, list[int]]:
    """One campaign of `n` sent deliveries to distinct subscribers; (campaign id, delivery ids)."""
    from datetime import date

    from dispatch.models import Campaign, Delivery, Issue, utcnow
    from dispatch.models.subscriber import Subscriber

    now = utcnow()
    with Session(engine) as session, session.begin():
        issue = Issue(
            slug="bench",
            title="bench",
            number=1,
            period_from=date(2026, 11, 1),
            period_to=date(2026, 11, 30),
            publisher="bench",
            source_path="/nonexistent",
            source_text="",
            content_hash="0" * 64,
            status="published",
        )
        session.add(issue)
        session.flush()
        campaign = Campaign(
            issue_id=issue.id,
            channel="email",
            list_ids=[],
            dedupe_key="bench",
            status="finished",
            total=n,
        )
        session.add(campaign)
        session.flush()
        session.execute(
            insert(Subscriber),
            [{"email": f"reader{i}@bench.example.net", "name": f"r{i}"} for i in range(n)],
        )
        ids = dict(session.execute(select(Subscriber.email, Subscriber.id)).all())
        session.execute(
            insert(Delivery),
            [
                {
                    "campaign_id": campaign.id,
                    "subscriber_id": ids[f"reader{i}@bench.example.net"],
                    "email": f"reader{i}@bench.example.net",
                    "batch_no": i // 200,
                    "status": "sent",
                    "attempts": 1,
                    "sent_at": now,
                }
                for i in range(n)
            ],
        )
        delivery_ids = list(
            session.scalars(
                select(Delivery.id).where(Delivery.campaign_id == campaign.id).order_by(Delivery.id)
            )
        )
        return campaign.id, delivery_ids


def messages(
    settings: Settings, samples: list[bytes], campaign_id: int, delivery_ids: list[int], n: int
) -> Iterator[bytes]:
    from dispatch.tokens import verp_address

    for i in range(n):
        verp = verp_address(settings, "c", campaign_id, delivery_ids[i % len(delivery_ids)])
        yield f"Delivered-To: {verp}\r\nX-Bench-Seq: {i}\r\n".encode() + samples[i % len(samples)]


def run(settings: Settings, n: int, database_url: str, batch: int = 500) -> dict[str, Any]:
    from dispatch.bounces.parse import parse_bounce
    from dispatch.bounces.record import Inbound, record_chunk

    samples = corpus()
    engine = make_engine(database_url)
    upgrade(engine)
    campaign_id, delivery_ids = seed(engine, n)
    settings = settings.replace(database_url=database_url)

    started = time.perf_counter()
    for raw in samples * max(1, 2000 // len(samples)):
        parse_bounce(raw)
    parse_only = len(samples) * max(1, 2000 // len(samples)) / (time.perf_counter() - started)

    kinds: dict[str, int] = {}
    matched = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    session = Session(bind=engine)
    chunk: list[Inbound] = []

    def flush() -> None:
        nonlocal matched
        for recorded in record_chunk(session, settings, chunk):
            kinds[recorded.kind] = kinds.get(recorded.kind, 0) + 1
            matched += recorded.delivery_id is not None
        session.commit()
        chunk.clear()

    try:
        for raw in messages(settings, samples, campaign_id, delivery_ids, n):
            chunk.append(Inbound(raw=raw, source="file"))
            if len(chunk) >= batch:
                flush()
        flush()
    finally:
        session.close()
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    engine.dispose()
    return {
        "messages": n,
        "messages_per_transaction": batch,
        "samples": len(samples),
        "seconds": round(seconds, 2),
        "messages_per_second": round(n / seconds, 1),
        # this process's own CPU per message: a figure the other processes' load barely moves
        # (the database server's work is not in it)
        "cpu_ms_per_message": round(1000 * cpu / n, 2),
        "parse_only_per_second": round(parse_only, 1),
        "matched_to_delivery": matched,
        "kinds": kinds,
        "peak_memory_mb": _peak_mb(),
        "target": {"messages_per_second": 500, "peak_memory_mb": 200},
    }


def _fresh_postgres(settings: Settings) -> tuple[str, Any]:
    server = LOCAL_SERVER
    if settings.database_url.startswith("postgresql"):
        server = (
            make_url(settings.database_url)
            .set(database="postgres")
            .render_as_string(hide_password=False)
        )
    name = f"dispatch_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


@click.command("bounces")
@click.option("--messages", "n", default=20_000, show_default=True, help="Messages / 邮件数")
@click.option("--sqlite", is_flag=True, help="A temporary SQLite file instead of PostgreSQL")
@click.option(
    "--batch",
    default=500,
    show_default=True,
    help="Messages per chunk and transaction (1: as the SMTP intake and the mailbox poller)",
)
@json_option
def command(n: int, sqlite: bool, batch: int, as_json: bool) -> None:
    """退信解析与记录速度 / Bounce parse-and-record rate over the sample corpus."""
    settings = settings_or_exit().replace(
        bounce_address="bounces@bounce.bench.example.org",
        secret_key="bench-secret-key",
    )
    # a terminated run still drops its database (the finally below runs on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if sqlite:
        folder = tempfile.mkdtemp(prefix="dispatch-bench-bounces-")
        url, drop = f"sqlite:///{Path(folder) / 'bench.db'}", (lambda: None)
    else:
        url, drop = _fresh_postgres(settings)
    try:
        figures = run(settings, max(n, 1), url, max(batch, 1))
    finally:
        drop()
    figures["database"] = "sqlite" if sqlite else "postgresql"
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"{figures['messages']} 封（{figures['samples']} 个样本循环） / messages "
        f"({figures['samples']} samples repeated) on {figures['database']}, "
        f"{figures['messages_per_transaction']} per transaction"
    )
    click.echo(
        f"解析+记录 / parse+record: {figures['messages_per_second']} msg/s "
        f"({figures['seconds']} s; target ≥ 500)"
    )
    click.echo(f"仅解析 / parse only: {figures['parse_only_per_second']} msg/s")
    click.echo(f"本进程 CPU / this process's CPU: {figures['cpu_ms_per_message']} ms per message")
    click.echo(f"匹配到投递 / matched to a delivery: {figures['matched_to_delivery']}")
    click.echo(f"类型 / kinds: {figures['kinds']}")
    click.echo(f"峰值内存 / peak memory: {figures['peak_memory_mb']} MB (target < 200)")
