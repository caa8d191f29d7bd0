"""`dispatch bench wechat-sync [--followers N] [--json]`: follower sync speed and peak memory.

Why the fake runs in its own process: it plays WeChat's servers, so its CPU must not be
charged to (or share the interpreter lock with) the sync being measured. The sync writes into
a fresh database (PostgreSQL `dispatch_bench_<random>` on the local server, or a temporary
SQLite file with --backend sqlite), created and dropped here, never a deployment's tables.
Figures: the first sync (every follower new), a rerun (nothing changes) and the peak memory of
this process (ru_maxrss; the fake's memory is not counted).
"""

from __future__ import annotations

import json
import multiprocessing
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
from dispatch.db import make_engine, upgrade

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def _serve(followers: int, conn: Any) -> None:
    from dispatch.dev.wechat_fake import FakeWechatServer

    server = FakeWechatServer()
    server.state.tags = {100: "全体职工", 101: "专家"}
    server.state.add_followers(followers, tags=(100,))
    server.start()
    conn.send(server.base_url)
    conn.recv()  # parent says stop
    server.stop()


def run(followers: int, backend: str, threads: int) -> dict[str, Any]:
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.followers import sync_followers

    settings = settings_or_exit()
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(followers, child), daemon=True)
    proc.start()
    base_url = parent.recv()
    tmp = tempfile.TemporaryDirectory()
    name = f"dispatch_bench_{uuid.uuid4().hex[:10]}"
    admin = None
    if backend == "postgresql":
        admin = make_engine(LOCAL_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = make_url(LOCAL_SERVER).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{Path(tmp.name) / 'bench.db'}"
    engine = make_engine(str(url))
    try:
        upgrade(engine)
        bench_settings = settings.replace(
            database_url=str(url),
            redis_url="",
            wechat_app_id="wxfake0000000000",
            wechat_app_secret="fake-secret",
            wechat_api_base_url=base_url,
            wechat_token_url="",
        )
        client = WechatClient(bench_settings)
        wall, cpu = time.perf_counter(), time.process_time()
        first = sync_followers(engine, client, bench_settings, threads=threads)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        wall2 = time.perf_counter()
        second = sync_followers(engine, client, bench_settings, threads=threads)
        wall2 = time.perf_counter() - wall2
        load = os.getloadavg()[0]
    finally:
        engine.dispose()
        parent.send("stop")
        proc.join(timeout=10)
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        tmp.cleanup()
    return {
        "followers": followers,
        "backend": backend,
        "batchget_threads": threads,
        "sync_seconds": round(wall, 3),
        "followers_per_second": round(followers / wall),
        "client_cpu_seconds": round(cpu, 3),
        "created": first.created,
        "rerun_seconds": round(wall2, 3),
        "rerun_followers_per_second": round(followers / wall2),
        "rerun_created": second.created,
        "rerun_updated": second.updated,
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "target": ">= 5,000 followers/s, < 200 MB",
        "load_average_1min": round(load, 2),
        "cpus": os.cpu_count(),
    }


@click.command("wechat-sync")
@click.option("--followers", default=100_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--backend",
    type=click.Choice(["postgresql", "sqlite"]),
    default="postgresql",
    show_default=True,
)
@click.option("--threads", default=4, show_default=True, type=click.IntRange(1, 32))
@json_option
def command(followers: int, backend: str, threads: int, as_json: bool) -> None:
    """微信关注者同步基准 / WeChat follower sync against the fake API: followers/s, peak memory."""
    try:
        figures = run(followers, backend, threads)
    except Exception as exc:  # one line, e.g. PostgreSQL not reachable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail(f"bench wechat-sync: {first}")
        return
    if as_json:
        click.echo(json.dumps(figures, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"同步 / sync: {figures['followers']:,} followers ({figures['backend']}) in "
        f"{figures['sync_seconds']} s = {figures['followers_per_second']:,}/s "
        f"(client CPU {figures['client_cpu_seconds']} s)"
    )
    click.echo(
        f"重复同步 / rerun (new {figures['rerun_created']}, updated {figures['rerun_updated']}): "
        f"{figures['rerun_seconds']} s = {figures['rerun_followers_per_second']:,}/s"
    )
    click.echo(f"峰值内存 / peak memory (ru_maxrss): {figures['peak_memory_mb']} MB")
    click.echo(f"目标 / target: {figures['target']}")
    click.echo(
        f"负载 / load average (1 min): {figures['load_average_1min']} on {figures['cpus']} CPUs"
    )
