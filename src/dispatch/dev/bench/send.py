"""`dispatch bench send`: the email pipeline's rate against the machine's SMTP ceiling, at one
or more campaign sizes, in one run.

Ceilings, all into the same sink with the same message (the sample issue, personalised and
tracked, about 120 KB):
(c) Postfix's own load generator `smtp-source` (C), one session per worker, the connection kept
    (`-d`): the machine's real ceiling, which issue 17 measures the pipeline against;
(a) a bare smtplib loop over one connection, MAIL/RCPT/DATA per message, nothing else;
(a') the channel's own wire path (PIPELINING, no regex dot-stuffing) on one connection.
Pipeline (b), per size in `--recipients 20000,200000`: a real campaign on a fresh PostgreSQL
database (subscribers loaded by INSERT … SELECT and never analysed), fanned out and delivered
by Celery worker processes over the Redis broker; every Delivery row claimed, sent and
recorded with its event. Each size is checked: every recipient delivered exactly once (the
database: one `sent` row and one `sent` event each; the sink: as many messages accepted as
recipients). The run also reports the workers' peak memory, their CPU per message, where the
database's time went (pg_stat_activity samples by statement kind) and the bytes stored per
delivery. With two sizes it prints the ratio of the rates (the growth target: ≥ 0.9).

The sink is Postfix's `smtp-sink` when installed, else the aiosmtpd outbox in counting mode
(slower, and it shares this process's CPU; the output says which, and the smtp-source ceiling
and the sink-side count are then not measured). Peak memory is each process's VmHWM (read
from /proc while it lives).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from dispatch.config import Settings, set_settings
from dispatch.dev.bench import bench_settings
from dispatch.i18n import Catalog
from dispatch.outbox import LocalOutbox, free_port
from dispatch.paths import PROJECT_ROOT

MESSAGES = Catalog(
    {
        "sink": ("SMTP 接收端：{sink}", "SMTP sink: {sink}"),
        "raw": (
            "(a) 裸 smtplib 上限：{n} 封，{s:.1f} 秒，{rate:.0f} 封/秒",
            "(a) raw smtplib ceiling: {n} messages in {s:.1f} s, {rate:.0f} msg/s",
        ),
        "pipe": (
            "(b) 完整流程（{w} 个 Celery 工作进程，PostgreSQL + Redis）：{n} 封，{s:.1f} 秒，"
            "{rate:.0f} 封/秒",
            "(b) full pipeline ({w} Celery workers, PostgreSQL + Redis): {n} messages in {s:.1f} "
            "s, {rate:.0f} msg/s",
        ),
        "wire": (
            "(a') 同一连接上本通道的发送路径（PIPELINING，无正则转义）：{n} 封，{s:.1f} 秒，{rate:"
            ".0f} 封/秒",
            "(a') the channel's wire path on one connection (PIPELINING, no regex dot-stuffing): "
            "{n} messages in {s:.1f} s, {rate:.0f} msg/s",
        ),
        "source": (
            "(c) Postfix smtp-source 上限（C，{s} 个会话）：{n} 封，{sec:.1f} 秒，{rate:.0f} 封/秒",
            "(c) Postfix smtp-source ceiling (C, {s} sessions): {n} messages in {sec:.1f} s, "
            "{rate:.0f} msg/s",
        ),
        "no_source": ("未测 smtp-source 上限：{why}", "smtp-source ceiling not measured: {why}"),
        "run": ("== {n} 位收件人 ==", "== {n} recipients =="),
        "ratio_source": (
            "流程 / smtp-source 上限 = {ratio:.0%}（目标 ≥ 75%）",
            "pipeline / smtp-source ceiling = {ratio:.0%} (target ≥ 75%)",
        ),
        "ratio": (
            "流程 / 裸 smtplib 循环 = {ratio:.0%}",
            "pipeline / bare smtplib loop = {ratio:.0%}",
        ),
        "once": (
            "每位收件人恰好一次：{ok}（已发送 {sent}，sent 事件 {events}，接收端收到 {sink}）",
            "every recipient exactly once: {ok} (sent rows {sent}, sent events {events}, "
            "accepted by the sink {sink})",
        ),
        "worker_peak": (
            "工作进程峰值内存 {mb:.0f} MB（目标 < 250 MB）",
            "worker peak memory {mb:.0f} MB (target < 250 MB)",
        ),
        "db_time": (
            "数据库时间（后端秒，按语句）：{parts}",
            "database time (backend seconds, by statement): {parts}",
        ),
        "stored": (
            "每次投递存储字节：行 {row}，索引 {indexes}，事件 {events}，合计 {total}",
            "bytes stored per delivery: row {row}, indexes {indexes}, events {events}, "
            "total {total}",
        ),
        "growth": (
            "速率比 {big} / {small} 位收件人 = {ratio:.2f}（目标 ≥ 0.9）",
            "rate ratio {big} / {small} recipients = {ratio:.2f} (target ≥ 0.9)",
        ),
        "load": ("负载（uptime）：{load}", "load (uptime): {load}"),
        "ratio_wire": (
            "流程 / 通道发送路径 = {ratio:.0%}",
            "pipeline / channel wire path = {ratio:.0%}",
        ),
        "mem": ("峰值内存 {proc}：{mb:.0f} MB", "peak memory {proc}: {mb:.0f} MB"),
        "steady": (
            "    其中：启动到首封发出 {first:.1f} 秒（扇出、每个进程渲染一次），之后 {rate:.0f} "
            "封/秒",
            "    of which: {first:.1f} s until the first message was sent (fan-out, one render "
            "per process), then {rate:.0f} msg/s",
        ),
        "cpu": ("工作进程 CPU：每封 {ms:.2f} 毫秒", "worker CPU: {ms:.2f} ms per message"),
        "no_pipeline": ("未测流程：{why}", "pipeline not measured: {why}"),
        "chunk": (
            "每块 {n} 封（一次发送调用、一个记录事务）",
            "chunks of {n} messages (one send call, one recording transaction)",
        ),
        "run_dkim": (
            "== {n} 位收件人，DKIM 签名（RSA 2048，生成的测试密钥）==",
            "== {n} recipients, DKIM-signed (RSA 2048, a generated test key) ==",
        ),
        "dkim_vs": (
            "DKIM：签名 {signed:.0f} 封/秒（CPU 每封 {cpu_s:.2f} 毫秒）对未签名 {plain:.0f} 封/秒"
            "（{cpu_p:.2f} 毫秒）= {ratio:.0%}",
            "DKIM: signed {signed:.0f} msg/s (CPU {cpu_s:.2f} ms/message) vs unsigned {plain:.0f} "
            "msg/s ({cpu_p:.2f} ms) = {ratio:.0%}",
        ),
        "size": ("每封邮件约 {kb:.0f} KB", "message size about {kb:.0f} KB"),
    }
)

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"
DISTINCT_RAW_MESSAGES = 200  # the raw loop cycles through this many personalised messages
PG_ADMIN_URL = os.environ.get("DISPATCH_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DISPATCH_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


# --------------------------------------------------------------------------------------------
# the sink
# --------------------------------------------------------------------------------------------


@dataclass
class Sink:
    kind: str
    url: str
    pid: int | None = None
    counter: Path | None = None  # smtp-sink -c output: "sess=… quit=… mesg=N" per session end

    def accepted(self) -> int | None:
        """Messages the sink accepted so far, counted at the end of each SMTP session (None
        when the sink does not count)."""
        if self.counter is None:
            return None
        found = re.findall(rb"mesg=(\d+)", self.counter.read_bytes())
        return int(found[-1]) if found else 0

    def wait_settled(self, timeout: float = 10.0) -> int | None:
        """The count once it stops changing (the last sessions are closing)."""
        last, deadline = self.accepted(), time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.accepted()
            if now == last:
                return now
            last = now
        return last


@contextmanager
def running_sink() -> Iterator[Sink]:
    """smtp-sink (Postfix) if installed, else the aiosmtpd outbox counting and discarding."""
    binary = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if binary:
        port = free_port()
        args = [binary, "-c"]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        counter = Path(tempfile.mkstemp(prefix="dispatch-sink-", suffix=".count")[1])
        with counter.open("wb") as out:
            proc = subprocess.Popen(
                [*args, f"127.0.0.1:{port}", "1024"], stdout=out, stderr=subprocess.PIPE
            )
        try:
            _wait_for_port(port, proc)
            yield Sink(
                f"Postfix smtp-sink ({binary})", f"smtp://127.0.0.1:{port}", proc.pid, counter
            )
        finally:
            proc.terminate()
            proc.wait(10)
            counter.unlink(missing_ok=True)
        return
    with LocalOutbox(None) as outbox:
        yield Sink("aiosmtpd outbox in this process (smtp-sink not installed)", outbox.url, None)


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise click.ClickException(f"smtp-sink exited: {err.strip()}")
        try:
            smtplib.SMTP("127.0.0.1", port, timeout=1).quit()
            return
        except OSError:
            time.sleep(0.05)
    raise click.ClickException(f"smtp-sink did not listen on port {port}")


# --------------------------------------------------------------------------------------------
# (a) the raw ceiling
# --------------------------------------------------------------------------------------------


def sample_messages(settings: Settings, n: int) -> list[tuple[str, bytes]]:
    """(recipient, bytes) of `n` personalised, tracked messages of the sample issue."""
    from dispatch.channels.base import CampaignContext, Recipient
    from dispatch.channels.email_source import build_campaign_source
    from dispatch.content.parse import parse_issue
    from dispatch.render.email import render_email

    rendered = render_email(parse_issue(SAMPLE_ISSUE), settings, tracking=True)
    context = CampaignContext(campaign_id=1, issue_id=1, batch_no=0, list_ids=(1,), tracking=True)
    source = build_campaign_source(settings, context, rendered)
    out = []
    for i in range(1, n + 1):
        address = f"reader{i}@example.net"
        out.append((address, source.message_for(Recipient(i, i, address, f"读者{i}", "zh-CN"))[1]))
    return out


def raw_ceiling(
    url: str, from_address: str, messages: list[tuple[str, bytes]], total: int
) -> float:
    """Seconds for `total` messages by a bare smtplib loop: mail(), rcpt(), data() per message."""
    host, _, port = url.removeprefix("smtp://").partition(":")
    smtp = smtplib.SMTP(host, int(port), local_hostname="bench.example.org", timeout=60)
    try:
        smtp.ehlo()
        started = time.perf_counter()
        for i in range(total):
            rcpt, data = messages[i % len(messages)]
            code, _ = smtp.mail(from_address)
            if code == 250:
                code, _ = smtp.rcpt(rcpt)
            if code == 250:
                code, _ = smtp.data(data)
            if code != 250:
                raise click.ClickException(f"the sink refused message {i}: {code}")
        return time.perf_counter() - started
    finally:
        smtp.quit()


def smtp_source_ceiling(url: str, message: bytes, sessions: int, total: int) -> float:
    """Seconds for `total` messages by Postfix's smtp-source (C) over `sessions` parallel
    sessions that keep their connection (-d), each message the given bytes (-F: smtp-source
    dot-stuffs and ends each line with CRLF, so the file holds LF lines)."""
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    if not Path(binary).exists():
        raise FileNotFoundError("smtp-source is not installed (Debian package postfix)")
    host, _, port = url.removeprefix("smtp://").partition(":")
    with tempfile.NamedTemporaryFile(prefix="dispatch-source-", suffix=".eml") as f:
        f.write(message.replace(b"\r\n", b"\n"))
        f.flush()
        args = [binary, "-d", "-s", str(sessions), "-m", str(total), "-F", f.name]
        args += ["-f", "bench@bulletin.example.org", "-t", "reader@example.net"]
        started = time.perf_counter()
        done = subprocess.run(
            [*args, f"{host}:{port}"], capture_output=True, timeout=1800, check=False
        )
        seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise click.ClickException(f"smtp-source failed: {done.stderr.decode().strip()}")
    return seconds


def wire_ceiling(settings: Settings, messages: list[tuple[str, bytes]], total: int) -> float:
    """Seconds for `total` messages over one connection through the channel's own wire path
    (PIPELINING when offered, each next envelope sent with the final dot, no regex
    dot-stuffing, TCP_NODELAY) with nothing else around it: the stricter ceiling, which
    isolates what the pipeline itself costs."""
    from dispatch.channels.base import CampaignContext
    from dispatch.channels.smtp import SmtpChannel
    from dispatch.channels.smtp_conversation import Progress

    context = CampaignContext(campaign_id=1, issue_id=1, batch_no=0, list_ids=(1,), tracking=True)
    channel = SmtpChannel(settings, context)
    channel.open()
    conn = channel._conn
    if conn is None:
        raise click.ClickException("cannot connect to the sink")
    try:
        started = time.perf_counter()
        for i in range(total):
            rcpt, data = messages[i % len(messages)]
            ahead = (settings.from_address, messages[(i + 1) % len(messages)][0])
            code, _ = conn.transaction(
                settings.from_address,
                rcpt,
                data,
                Progress(),
                following=(lambda envelope=ahead: envelope) if i + 1 < total else None,
            )
            if code != 250:
                raise click.ClickException(f"the sink refused message {i}: {code}")
        return time.perf_counter() - started
    finally:
        channel.close()


# --------------------------------------------------------------------------------------------
# (b) the pipeline
# --------------------------------------------------------------------------------------------


def _pg_url(dbname: str, admin_url: str = PG_ADMIN_URL) -> str:
    return admin_url.rpartition("/")[0] + "/" + dbname


@contextmanager
def fresh_database(admin_url: str = PG_ADMIN_URL, prefix: str = "dispatch_bench") -> Iterator[str]:
    """A migrated PostgreSQL database of its own, dropped afterwards (tests use it too)."""
    from sqlalchemy import text

    from dispatch.db import make_engine, upgrade

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name, admin_url)
    try:
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(settings: Settings, recipients: int) -> tuple[int, int]:
    """The sample issue published and one confirmed list of `recipients` subscribers."""
    from dispatch.db import make_engine
    from dispatch.dev.bench.population import seed_list

    engine = make_engine(settings.resolved_database_url)
    try:
        issue_id, list_id = seed_list(engine, recipients)
    finally:
        engine.dispose()
    assert issue_id is not None
    return issue_id, list_id


def _env_for(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in {
        "DATABASE_URL": settings.database_url,
        "BROKER_URL": settings.broker_url,
        "REDIS_URL": settings.redis_url,
        "REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "CELERY_QUEUE": settings.celery_queue,
        "SMTP_URL": settings.smtp_url,
        "SECRET_KEY": settings.secret_key,
        "PUBLIC_BASE_URL": settings.public_base_url,
        "DATA_DIR": str(settings.data_dir),
        "BATCH_SIZE": str(settings.batch_size),
        "CHUNK_SIZE": str(settings.chunk_size),
        "LEASE_SECONDS": str(settings.lease_seconds),
        "FROM_ADDRESS": settings.from_address,
        "DKIM_SELECTOR": settings.dkim_selector,
        "DKIM_DOMAIN": settings.dkim_domain,
        "DKIM_KEY_FILE": settings.dkim_key_file,
    }.items():
        env["DISPATCH_" + key] = value
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH", "")])
    )
    return env


def vm_hwm_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM) in MB, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """A live process's user + system CPU seconds so far, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class WorkerPool:
    """The Celery worker processes of the measurement, watched like a supervisor would.

    A worker that dies (e.g. the shared Redis server was restarted under it) is started again,
    at most `max_restarts` times in all, and the restart is reported; peak memory and CPU are
    sampled while the workers live, so a restarted worker's peak is not lost.
    """

    max_restarts = 3

    def __init__(self, settings: Settings, count: int, log_dir: Path):
        self.settings = settings
        self.env = _env_for(settings)
        self.log_dir = log_dir
        self.names = [f"bench{i + 1}-{uuid.uuid4().hex[:6]}@localhost" for i in range(count)]
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.peak_mb: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._cpu_done: dict[str, float] = {}
        self._cpu_at_start: dict[str, float] = {}  # what booting (imports, Celery) used
        self.restarts = 0

    def start(self, index: int) -> None:
        log_file = open(self.log_dir / f"worker{index + 1}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[index] = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "-P",
                "solo",
                "-Q",
                self.settings.celery_queue,
                "-n",
                self.names[index],
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()

    def start_all(self) -> None:
        for i in range(len(self.procs)):
            self.start(i)

    def log_tail(self, index: int, lines: int = 15) -> str:
        path = self.log_dir / f"worker{index + 1}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def sample(self) -> None:
        """Record peak memory and CPU; restart a dead worker (or raise when too many died)."""
        for i, proc in enumerate(self.procs):
            key = f"worker {i + 1}"
            if proc is None:
                continue
            if proc.poll() is None:
                mb = vm_hwm_mb(proc.pid)
                if mb:
                    self.peak_mb[key] = max(self.peak_mb.get(key, 0.0), mb)
                used = cpu_seconds(proc.pid)
                if used is not None:
                    used -= self._cpu_at_start.get(key, 0.0)
                    self.cpu[key] = self._cpu_done.get(key, 0.0) + used
                continue
            self._cpu_done[key] = self.cpu.get(key, 0.0)
            self._cpu_at_start.pop(key, None)  # a restarted worker's boot counts (it is rare)
            if self.restarts >= self.max_restarts:
                raise click.ClickException(
                    f"{key} died {self.restarts + 1} times:\n{self.log_tail(i)}"
                )
            self.restarts += 1
            click.echo(
                f"{key} exited ({proc.returncode}); restarting it / 工作进程退出，重新启动",
                err=True,
            )
            self.start(i)

    def start_measuring(self) -> None:
        """CPU counts from here: the workers' boot (about a second each of imports and Celery
        start-up) is not part of any message's cost (until 2026-12-01 it was: 0.13 ms of the
        0.40 ms per message reported at 20,000 recipients)."""
        self.sample()
        self._cpu_at_start = dict(self.cpu)
        self._cpu_done.clear()
        self.cpu = {key: 0.0 for key in self.cpu}

    def stop(self) -> None:
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def pipeline(
    settings: Settings, recipients: int, workers: int, log_dir: Path, sink: Sink | None = None
) -> dict[str, Any]:
    """Run one campaign through `workers` Celery worker processes; rate, memory, database time,
    storage, and the exactly-once check (with the sink's own count when it keeps one).

    The bench also does what `celery beat` does in production (the periodic sweep), so batches
    whose queued task was lost (a broker restart) are queued again.
    """
    from dispatch.db import make_engine
    from dispatch.dev.bench.dbstats import ActivitySampler, storage
    from dispatch.tasks import CeleryQueue, app, configure

    issue_id, list_id = seed(settings, recipients)
    set_settings(settings)
    configure(app, settings)
    pool = WorkerPool(settings, workers, log_dir)
    queue = CeleryQueue(app, settings.celery_queue)
    admin = make_engine(PG_ADMIN_URL)
    engine = make_engine(settings.database_url)
    try:
        pool.start_all()
        deadline = time.monotonic() + 90
        while len(app.control.ping(destination=pool.names, timeout=1.0)) < workers:
            pool.sample()
            if time.monotonic() > deadline:
                raise click.ClickException(f"workers did not start:\n{pool.log_tail(0)}")
        accepted_before = sink.wait_settled() if sink else None
        database = settings.database_url.rpartition("/")[2]
        pool.start_measuring()
        with ActivitySampler(admin, database) as sampler:
            measured = _run_campaign(engine, settings, pool, queue, issue_id, list_id)
        pool.sample()
        accepted = sink.wait_settled() if sink else None
        measured["sink_accepted"] = (
            accepted - accepted_before
            if accepted is not None and accepted_before is not None
            else None
        )
        measured.update(_delivered_once(engine, measured, recipients))
        measured["memory_mb"] = dict(pool.peak_mb)
        measured["cpu_seconds"] = {k: round(v, 2) for k, v in pool.cpu.items()}
        measured["worker_restarts"] = pool.restarts
        measured["db_seconds_by_statement"] = sampler.seconds_by_kind()
        measured["storage"] = storage(engine, recipients)
        return measured
    finally:
        pool.stop()
        engine.dispose()
        admin.dispose()
        _delete_redis_keys(settings.redis_key_prefix)


def _run_campaign(
    engine, settings: Settings, pool: WorkerPool, queue, issue_id: int, list_id: int
) -> dict[str, Any]:
    """Create, start and watch the campaign until it stops; seconds and timings."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.delivery import campaigns
    from dispatch.delivery.engine import sweep
    from dispatch.models import Delivery, utcnow

    with Session(engine) as session, session.begin():
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue_id, channel="email", list_ids=[list_id]
        )
        campaign_id = campaign.id
    started = time.perf_counter()
    started_at = utcnow()
    campaigns.start(engine, settings, campaign_id, queue)
    fanned_out = time.perf_counter() - started
    next_sweep = time.monotonic() + settings.sweep_seconds
    while True:
        # only the campaign row while it runs (a GROUP BY over the deliveries five times a
        # second would load the database the workers are measured against)
        with Session(engine) as session:
            status = campaigns.get(session, campaign_id).status
        if status in ("finished", "failed", "cancelled", "paused"):
            break
        pool.sample()
        if time.monotonic() > next_sweep:
            try:
                sweep(engine, settings, queue)
            except Exception as exc:  # noqa: BLE001 - broker briefly away: the next sweep retries
                click.echo(f"sweep failed: {exc}", err=True)
            next_sweep = time.monotonic() + settings.sweep_seconds
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    with Session(engine) as session:
        finished_at = campaigns.get(session, campaign_id).finished_at
        if finished_at is not None:  # the campaign's own end, not this loop's next look
            seconds = (finished_at - started_at).total_seconds()
        counts = campaigns.counts(session, campaign_id)
        first, last = session.execute(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.campaign_id == campaign_id
            )
        ).one()
    return {
        "campaign_id": campaign_id,
        "seconds": seconds,
        "fan_out_seconds": fanned_out,
        "counts": counts,
        "status": status,
        "seconds_to_first_sent": (first - started_at).total_seconds() if first else None,
        "seconds_first_to_last_sent": (
            (last - first).total_seconds() if first and last and last > first else None
        ),
    }


def _delivered_once(engine, measured: dict[str, Any], recipients: int) -> dict[str, Any]:
    """Every recipient exactly once: all rows sent, one `sent` event per row, and the sink
    accepted as many messages as there are recipients (when it counts)."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.models import Event

    with Session(engine) as session:
        events, distinct = session.execute(
            select(func.count(), func.count(func.distinct(Event.delivery_id))).where(
                Event.campaign_id == measured["campaign_id"], Event.kind == "sent"
            )
        ).one()
    counts = measured["counts"]
    sent = counts.get("sent", 0)
    others = sum(n for status, n in counts.items() if status != "sent")
    sink = measured.get("sink_accepted")
    ok = (
        sent == recipients
        and others == 0
        and events == distinct == recipients
        and (sink is None or sink == recipients)
    )
    return {"sent_events": int(events), "exactly_once": ok}


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _engine_ready() -> str | None:
    try:
        import dispatch.delivery.engine  # noqa: F401
        import dispatch.tasks  # noqa: F401
    except ImportError as exc:
        return f"the delivery engine is not installed ({exc})"
    return None


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(
            f"{value!r}: one or more positive numbers, e.g. 20000,200000 / "
            "收件人数，如 20000,200000",
            param_hint="--recipients",
        )
    return sizes


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def _ceilings(
    settings: Settings, sink: Sink, workers: int, n_raw: int, result: dict[str, Any], say
) -> None:
    """(c) smtp-source, (a) smtplib, (a') the channel's wire path: into `result`."""
    messages = sample_messages(settings, min(DISTINCT_RAW_MESSAGES, n_raw))
    size = sum(len(m) for _, m in messages) / len(messages)
    result["message_bytes"] = round(size)
    say("size", kb=size / 1024)
    _source_ceiling(sink, messages[0][1], workers, n_raw, result, say, "before")
    raw_seconds = raw_ceiling(sink.url, settings.from_address, messages, n_raw)
    result.update(raw_messages=n_raw, raw_seconds=round(raw_seconds, 2))
    result["raw_rate"] = round(n_raw / raw_seconds, 1)
    say("raw", n=n_raw, s=raw_seconds, rate=n_raw / raw_seconds)
    wire_seconds = wire_ceiling(settings, messages, n_raw)
    result["raw_wire_rate"] = round(n_raw / wire_seconds, 1)
    say("wire", n=n_raw, s=wire_seconds, rate=n_raw / wire_seconds)
    result["_message"] = messages[0][1]


def _source_ceiling(
    sink: Sink, message: bytes, sessions: int, n: int, result: dict[str, Any], say, when: str
) -> None:
    if sink.counter is None:
        result.setdefault("source_error", "smtp-sink is not installed")
        return
    try:
        seconds = smtp_source_ceiling(sink.url, message, sessions, n)
    except FileNotFoundError as exc:
        result["source_error"] = str(exc)
        say("no_source", why=str(exc))
        return
    rate = n / seconds
    result[f"source_rate_{when}"] = round(rate, 1)
    rates = [result[k] for k in ("source_rate_before", "source_rate_after") if k in result]
    result.update(
        source_messages=n,
        source_sessions=sessions,
        source_rate=round(sum(rates) / len(rates), 1),
    )
    say("source", s=sessions, n=n, sec=seconds, rate=rate)


def _ratios_to_mean_source(result: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Each run's ratio against the mean of the ceilings before and after all runs (the
    run itself printed it against the one before: the only one it had then)."""
    if result.get("source_rate"):
        for run in runs:
            run["ratio_to_source"] = round(run["rate"] / result["source_rate"], 3)


def _run_size(
    settings: Settings, recipients: int, workers: int, work: Path, sink: Sink, result, say
) -> dict[str, Any]:
    """One pipeline measurement at one size, as a `runs` entry (signed when the settings
    name a DKIM key)."""
    signed = bool(settings.dkim_key_file)
    say("run_dkim" if signed else "run", n=recipients)
    run: dict[str, Any] = {
        "recipients": recipients,
        "dkim": signed,
        "chunk_size": settings.chunk_size,
        "load_before": load_average(),
    }
    with fresh_database() as url:
        measured = pipeline(settings.replace(database_url=url), recipients, workers, work, sink)
    sent = measured["counts"].get("sent", 0)
    rate = sent / measured["seconds"]
    workers_mb = [mb for name, mb in measured["memory_mb"].items() if name.startswith("worker")]
    total_cpu = sum(v for v in measured["cpu_seconds"].values() if v)
    run.update(
        rate=round(rate, 1),
        seconds=round(measured["seconds"], 2),
        fan_out_seconds=round(measured["fan_out_seconds"], 2),
        counts=measured["counts"],
        campaign_status=measured["status"],
        exactly_once=measured["exactly_once"],
        sent_events=measured["sent_events"],
        sink_accepted=measured["sink_accepted"],
        worker_peak_mb=round(max(workers_mb), 1) if workers_mb else None,
        peak_memory_mb={k: round(v, 1) for k, v in measured["memory_mb"].items()},
        worker_cpu_seconds=measured["cpu_seconds"],
        worker_cpu_ms_per_message=round(1000 * total_cpu / max(sent, 1), 2),
        worker_restarts=measured["worker_restarts"],
        db_seconds_by_statement=measured["db_seconds_by_statement"],
        storage=measured["storage"],
        load_after=load_average(),
    )
    say("pipe", w=workers, n=sent, s=measured["seconds"], rate=rate)
    if measured["seconds_first_to_last_sent"]:
        steady = sent / measured["seconds_first_to_last_sent"]
        run["steady_rate"] = round(steady, 1)
        run["startup_seconds"] = round(measured["seconds_to_first_sent"], 2)
        say("steady", first=measured["seconds_to_first_sent"], rate=steady)
    for key, base in (("ratio_to_source", "source_rate"), ("ratio", "raw_rate")):
        run[key] = round(rate / result[base], 3) if result.get(base) else None
    run["ratio_to_wire"] = round(rate / result["raw_wire_rate"], 3)
    if run["ratio_to_source"] is not None:
        say("ratio_source", ratio=run["ratio_to_source"])
    say("ratio", ratio=run["ratio"])
    say("ratio_wire", ratio=run["ratio_to_wire"])
    say("cpu", ms=run["worker_cpu_ms_per_message"])
    say(
        "once",
        ok=run["exactly_once"],
        sent=sent,
        events=run["sent_events"],
        sink=run["sink_accepted"],
    )
    if run["worker_peak_mb"] is not None:
        say("worker_peak", mb=run["worker_peak_mb"])
    top = list(run["db_seconds_by_statement"].items())[:8]
    say("db_time", parts=", ".join(f"{k} {v:.1f}" for k, v in top) or "-")
    say("stored", **run["storage"]["bytes_per_delivery"])
    say("load", load=f"{run['load_before']} → {run['load_after']}")
    return run


def _compat_keys(result: dict[str, Any], first: dict[str, Any]) -> None:
    """The single-size keys of earlier versions, from the first size (stable for comparison)."""
    result.update(
        pipeline_rate=first["rate"],
        pipeline_seconds=first["seconds"],
        pipeline_counts=first["counts"],
        campaign_status=first["campaign_status"],
        ratio=first["ratio"],
        ratio_to_wire=first["ratio_to_wire"],
        ratio_to_source=first["ratio_to_source"],
        worker_cpu_seconds=first["worker_cpu_seconds"],
        worker_restarts=first["worker_restarts"],
        peak_memory_mb=dict(first["peak_memory_mb"]),
    )
    if "steady_rate" in first:
        result["pipeline_steady_rate"] = first["steady_rate"]
        result["pipeline_startup_seconds"] = first["startup_seconds"]


@click.command("send")
@click.option(
    "--recipients",
    "sizes",
    default="20000",
    show_default=True,
    help="Campaign sizes, comma-separated (e.g. 20000,200000) / 收件人数，可逗号分隔多个",
)
@click.option(
    "--workers", default=2, show_default=True, help="Celery worker processes / 工作进程数"
)
@click.option("--raw-only", is_flag=True, help="Measure only the ceilings / 只测上限")
@click.option(
    "--raw-messages",
    "--ceiling-messages",
    "raw_messages",
    type=int,
    default=None,
    help="Messages for each ceiling (default: the smallest size, at most 10,000) / 上限所用邮件数",
)
@click.option(
    "--providers",
    "providers_mix",
    is_flag=True,
    help="Provider isolation: others' rate while NetEase throttles vs none / 服务商限速隔离",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Messages per chunk (default: the chunk_size setting) / 每块邮件数（默认：chunk_size）",
)
@click.option(
    "--dkim",
    is_flag=True,
    help="Also run each size DKIM-signed (a generated RSA 2048 test key), printed beside the "
    "unsigned run / 每个规模另测一次 DKIM 签名的发送",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object / 输出 JSON")
def command(
    sizes: str,
    workers: int,
    raw_only: bool,
    raw_messages: int | None,
    as_json: bool,
    providers_mix: bool = False,
    chunk_size: int | None = None,
    dkim: bool = False,
) -> None:
    """Email sending: the smtp-source and smtplib ceilings vs the full Celery pipeline at one or
    more campaign sizes; with --providers, the other providers' rate while NetEase throttles /
    邮件发送基准."""
    recipients = _sizes(sizes)
    if providers_mix:
        from dispatch.dev.bench.providers import run

        run(recipients[0], workers, as_json)
        return

    def say(key: str, **kwargs: Any) -> None:
        if not as_json:
            click.echo(MESSAGES.both(key, **kwargs))

    work = Path(tempfile.mkdtemp(prefix="dispatch-bench-send-"))
    tag = uuid.uuid4().hex[:8]
    settings = bench_settings(
        data_dir=work / "var",
        secret_key="bench-secret-key",
        public_base_url="https://bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
        broker_url=REDIS_URL,
        redis_url=REDIS_URL,
        redis_key_prefix=f"dispatch-bench:{tag}:",
        celery_queue=f"dispatch-bench-{tag}",
        lease_seconds=120.0,  # a lost batch is queued again by the sweep after two minutes
    )
    if chunk_size:
        settings = settings.replace(chunk_size=chunk_size)
    result: dict[str, Any] = {
        "recipients": recipients[0],
        "sizes": recipients,
        "workers": workers,
        "chunk_size": settings.chunk_size,
        "cpus": os.cpu_count(),
        "load_before": load_average(),
    }
    say("load", load=result["load_before"])
    say("chunk", n=settings.chunk_size)
    n_raw = raw_messages or min(10_000, min(recipients))
    try:
        with running_sink() as sink:
            settings = settings.replace(smtp_url=sink.url)
            result["sink"] = sink.kind
            say("sink", sink=sink.kind)
            _ceilings(settings, sink, workers, n_raw, result, say)
            message = result.pop("_message")
            why = "--raw-only" if raw_only else _engine_ready()
            if why:
                result.update(pipeline_rate=None, ratio=None, pipeline_error=why)
                say("no_pipeline", why=why)
            else:
                signed = dkim_settings(settings, work) if dkim else None
                runs = []
                for n in recipients:
                    runs.append(_run_size(settings, n, workers, work, sink, result, say))
                    if signed is not None:
                        runs.append(_run_size(signed, n, workers, work, sink, result, say))
                result["runs"] = runs
                _source_ceiling(sink, message, workers, n_raw, result, say, "after")
                _ratios_to_mean_source(result, runs)
                plain = [r for r in runs if not r["dkim"]]
                _compat_keys(result, plain[0])
                _growth(result, plain, say)
                if signed is not None:
                    _dkim_keys(result, plain[0], runs[1], say)
            memory = result.setdefault("peak_memory_mb", {})
            if sink.pid:
                memory["smtp-sink"] = vm_hwm_mb(sink.pid)
        memory["bench process"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
        )
    except BaseException:
        click.echo(f"logs kept in {work}", err=True)
        raise
    result["load_after"] = load_average()
    shutil.rmtree(work, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))


def dkim_settings(settings: Settings, work: Path) -> Settings:
    """The settings signing with a freshly generated RSA 2048 key for the From domain (as the
    DKIM tests make theirs); the key file lives in the run's work directory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = work / "dkim-bench.pem"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)
    domain = settings.from_address.rpartition("@")[2]
    return settings.replace(dkim_selector="bench", dkim_domain=domain, dkim_key_file=str(path))


def _dkim_keys(result: dict[str, Any], plain: dict[str, Any], signed: dict[str, Any], say) -> None:
    """The first size's signed figures beside its unsigned ones."""
    result["dkim"] = {
        key: signed.get(key)
        for key in ("rate", "steady_rate", "ratio_to_source", "worker_cpu_ms_per_message")
    }
    result["dkim"]["rate_ratio_to_unsigned"] = (
        round(signed["rate"] / plain["rate"], 3) if plain["rate"] else None
    )
    say(
        "dkim_vs",
        signed=signed["rate"],
        cpu_s=signed["worker_cpu_ms_per_message"],
        plain=plain["rate"],
        cpu_p=plain["worker_cpu_ms_per_message"],
        ratio=result["dkim"]["rate_ratio_to_unsigned"] or 0,
    )


def _growth(result: dict[str, Any], runs: list[dict[str, Any]], say) -> None:
    """The rate of the largest size over the smallest (the issue's flat-rate target)."""
    if len(runs) < 2:
        result["growth_ratio"] = None
        return
    small, big = runs[0], runs[-1]
    result["growth_ratio"] = round(big["rate"] / small["rate"], 3) if small["rate"] else None
    if small.get("steady_rate") and big.get("steady_rate"):
        result["growth_ratio_steady"] = round(big["steady_rate"] / small["steady_rate"], 3)
    if result["growth_ratio"] is not None:
        say(
            "growth", big=big["recipients"], small=small["recipients"], ratio=result["growth_ratio"]
        )
