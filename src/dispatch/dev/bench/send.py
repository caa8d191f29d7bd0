"""`dispatch bench send`: the email pipeline's rate against the raw SMTP ceiling, in one run.

(a) raw ceiling: the same messages (the sample issue, personalised and tracked) sent by a bare
    smtplib loop over one connection, MAIL/RCPT/DATA per message, nothing else;
(b) pipeline: a real campaign on a fresh PostgreSQL database, fanned out and delivered by
    Celery worker processes over the Redis broker (a unique key prefix and queue), with every
    Delivery row claimed, sent and recorded with its event.

Both go to a fast local sink: Postfix's `smtp-sink` when installed, else the aiosmtpd outbox
in counting mode (slower, and it shares this process's CPU; the output says which). Peak
memory is each process's VmHWM (read from /proc before it exits) and ru_maxrss.
"""

from __future__ import annotations

import json
import os
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

from dispatch.config import Settings, load_settings, set_settings
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
        "ratio": (
            "流程 / 裸上限 = {ratio:.0%}（目标 ≥ 60%）",
            "pipeline / raw = {ratio:.0%} (target ≥ 60%)",
        ),
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
        "cpu": ("工作进程 CPU：每封 {ms:.1f} 毫秒", "worker CPU: {ms:.1f} ms per message"),
        "no_pipeline": ("未测流程：{why}", "pipeline not measured: {why}"),
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


@contextmanager
def running_sink() -> Iterator[Sink]:
    """smtp-sink (Postfix) if installed, else the aiosmtpd outbox counting and discarding."""
    binary = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if Path("/usr/sbin/smtp-sink").exists() else None
    )
    if binary:
        port = free_port()
        args = [binary]
        if os.geteuid() == 0:
            args += ["-u", "nobody"]
        proc = subprocess.Popen(
            [*args, f"127.0.0.1:{port}", "1024"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            _wait_for_port(port, proc)
            yield Sink(f"Postfix smtp-sink ({binary})", f"smtp://127.0.0.1:{port}", proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
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


def wire_ceiling(settings: Settings, messages: list[tuple[str, bytes]], total: int) -> float:
    """Seconds for `total` messages over one connection through the channel's own wire path
    (PIPELINING when offered, no regex dot-stuffing, TCP_NODELAY) with nothing else around it:
    the stricter ceiling, which isolates what the pipeline itself costs."""
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
            code, _ = conn.transaction(settings.from_address, rcpt, data, Progress())
            if code != 250:
                raise click.ClickException(f"the sink refused message {i}: {code}")
        return time.perf_counter() - started
    finally:
        channel.close()


# --------------------------------------------------------------------------------------------
# (b) the pipeline
# --------------------------------------------------------------------------------------------


def _pg_url(dbname: str) -> str:
    return PG_ADMIN_URL.rpartition("/")[0] + "/" + dbname


@contextmanager
def fresh_database() -> Iterator[str]:
    from sqlalchemy import text

    from dispatch.db import make_engine, upgrade

    name = f"dispatch_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = _pg_url(name)
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
    from sqlalchemy import insert, select
    from sqlalchemy.orm import Session

    from dispatch.content.store import publish_source
    from dispatch.db import make_engine
    from dispatch.models import utcnow
    from dispatch.models.subscriber import MailingList, Subscriber, Subscription

    engine = make_engine(settings.resolved_database_url)
    now = utcnow()
    with Session(engine) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE)
        mailing_list = MailingList(
            slug="bench", name="Bench", description="", optin="single", created_at=now
        )
        session.add(mailing_list)
        session.flush()
        issue_id, list_id = issue.id, mailing_list.id
        chunk = 5000
        for start in range(1, recipients + 1, chunk):
            rows = [
                {
                    "email": f"reader{i}@example.net",
                    "name": f"读者{i}",
                    "locale": "zh-CN",
                    "attributes": {},
                    "status": "active",
                    "created_at": now,
                }
                for i in range(start, min(start + chunk, recipients + 1))
            ]
            session.execute(insert(Subscriber.__table__), rows)
        ids = session.scalars(select(Subscriber.id)).all()
        for start in range(0, len(ids), chunk):
            session.execute(
                insert(Subscription.__table__),
                [
                    {
                        "subscriber_id": i,
                        "list_id": list_id,
                        "status": "confirmed",
                        "created_at": now,
                        "confirmed_at": now,
                    }
                    for i in ids[start : start + chunk]
                ],
            )
    engine.dispose()
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
        "LEASE_SECONDS": str(settings.lease_seconds),
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
                    self.cpu[key] = self._cpu_done.get(key, 0.0) + used
                continue
            self._cpu_done[key] = self.cpu.get(key, 0.0)
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


def pipeline(settings: Settings, recipients: int, workers: int, log_dir: Path) -> dict[str, Any]:
    """Run one campaign through `workers` Celery worker processes; rate and memory.

    The bench also does what `celery beat` does in production (the periodic sweep), so batches
    whose queued task was lost (a broker restart) are queued again.
    """
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.delivery.engine import sweep
    from dispatch.models import Delivery, utcnow
    from dispatch.tasks import CeleryQueue, app, configure

    issue_id, list_id = seed(settings, recipients)
    set_settings(settings)
    configure(app, settings)
    pool = WorkerPool(settings, workers, log_dir)
    queue = CeleryQueue(app, settings.celery_queue)
    try:
        pool.start_all()
        deadline = time.monotonic() + 90
        while len(app.control.ping(destination=pool.names, timeout=1.0)) < workers:
            pool.sample()
            if time.monotonic() > deadline:
                raise click.ClickException(f"workers did not start:\n{pool.log_tail(0)}")
        engine = make_engine(settings.database_url)
        with Session(engine) as session, session.begin():
            campaign, _ = campaigns.create_or_get(
                session, issue_id=issue_id, channel="email", list_ids=[list_id]
            )
            campaign_id = campaign.id
        started = time.perf_counter()
        started_at = utcnow()
        campaigns.start(engine, settings, campaign_id, queue)
        next_sweep = time.monotonic() + settings.sweep_seconds
        while True:
            # only the campaign row while it runs (a GROUP BY over 100,000 deliveries five times
            # a second would load the database the workers are measured against)
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
        pool.sample()
        with Session(engine) as session:
            counts = campaigns.counts(session, campaign_id)
        with Session(engine) as session:
            first, last = session.execute(
                select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                    Delivery.campaign_id == campaign_id
                )
            ).one()
        engine.dispose()
        until_first = (first - started_at).total_seconds() if first else None
        steady = (last - first).total_seconds() if first and last and last > first else None
        return {
            "seconds": seconds,
            "counts": counts,
            "status": status,
            "memory_mb": dict(pool.peak_mb),
            "cpu_seconds": {k: round(v, 2) for k, v in pool.cpu.items()},
            "worker_restarts": pool.restarts,
            "seconds_to_first_sent": until_first,
            "seconds_first_to_last_sent": steady,
        }
    finally:
        pool.stop()
        _delete_redis_keys(settings.redis_key_prefix)


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


@click.command("send")
@click.option(
    "--recipients", default=20_000, show_default=True, help="Messages per measurement / 收件人数"
)
@click.option(
    "--workers", default=2, show_default=True, help="Celery worker processes / 工作进程数"
)
@click.option("--raw-only", is_flag=True, help="Measure only the raw ceiling / 只测裸上限")
@click.option(
    "--raw-messages",
    type=int,
    default=None,
    help="Messages for the raw ceilings (default: --recipients) / 裸上限所用邮件数",
)
@click.option(
    "--providers",
    "providers_mix",
    is_flag=True,
    help="Provider isolation: others' rate while NetEase throttles vs none / 服务商限速隔离",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object / 输出 JSON")
def command(
    recipients: int,
    workers: int,
    raw_only: bool,
    raw_messages: int | None,
    as_json: bool,
    providers_mix: bool = False,
) -> None:
    """Email sending: raw SMTP ceiling vs the full Celery pipeline; with --providers, the
    other providers' rate while NetEase throttles / 邮件发送基准."""
    if providers_mix:
        from dispatch.dev.bench.providers import run

        run(recipients, workers, as_json)
        return
    lines: list[str] = []

    def say(key: str, **kwargs: Any) -> None:
        line = MESSAGES.both(key, **kwargs)
        lines.append(line)
        if not as_json:
            click.echo(line)

    work = Path(tempfile.mkdtemp(prefix="dispatch-bench-send-"))
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(env={}).replace(
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
    result: dict[str, Any] = {"recipients": recipients, "workers": workers}
    try:
        with running_sink() as sink:
            settings = settings.replace(smtp_url=sink.url)
            result["sink"] = sink.kind
            say("sink", sink=sink.kind)
            messages = sample_messages(settings, min(DISTINCT_RAW_MESSAGES, recipients))
            size = sum(len(m) for _, m in messages) / len(messages)
            result["message_bytes"] = round(size)
            say("size", kb=size / 1024)
            n_raw = raw_messages or recipients
            raw_seconds = raw_ceiling(sink.url, settings.from_address, messages, n_raw)
            raw_rate = n_raw / raw_seconds
            result["raw_messages"] = n_raw
            result["raw_rate"] = round(raw_rate, 1)
            result["raw_seconds"] = round(raw_seconds, 2)
            say("raw", n=n_raw, s=raw_seconds, rate=raw_rate)
            wire_seconds = wire_ceiling(settings, messages, n_raw)
            del messages
            wire_rate = n_raw / wire_seconds
            result["raw_wire_rate"] = round(wire_rate, 1)
            say("wire", n=n_raw, s=wire_seconds, rate=wire_rate)
            why = "--raw-only" if raw_only else _engine_ready()
            if why:
                result.update(pipeline_rate=None, ratio=None, pipeline_error=why)
                say("no_pipeline", why=why)
            else:
                with fresh_database() as url:
                    measured = pipeline(
                        settings.replace(database_url=url), recipients, workers, work
                    )
                sent = measured["counts"].get("sent", 0)
                rate = sent / measured["seconds"]
                result.update(
                    pipeline_rate=round(rate, 1),
                    pipeline_seconds=round(measured["seconds"], 2),
                    pipeline_counts=measured["counts"],
                    campaign_status=measured["status"],
                    ratio=round(rate / raw_rate, 3),
                    ratio_to_wire=round(rate / wire_rate, 3),
                )
                say("pipe", w=workers, n=sent, s=measured["seconds"], rate=rate)
                if measured["seconds_first_to_last_sent"]:
                    steady_rate = sent / measured["seconds_first_to_last_sent"]
                    result["pipeline_steady_rate"] = round(steady_rate, 1)
                    result["pipeline_startup_seconds"] = round(measured["seconds_to_first_sent"], 2)
                    say("steady", first=measured["seconds_to_first_sent"], rate=steady_rate)
                say("ratio", ratio=rate / raw_rate)
                say("ratio_wire", ratio=rate / wire_rate)
                result["worker_cpu_seconds"] = measured["cpu_seconds"]
                result["worker_restarts"] = measured["worker_restarts"]
                total_cpu = sum(v for v in measured["cpu_seconds"].values() if v)
                say("cpu", ms=1000 * total_cpu / max(sent, 1))
                memory = dict(measured["memory_mb"])
                result["peak_memory_mb"] = memory
            memory = result.setdefault("peak_memory_mb", {})
            if sink.pid:
                memory["smtp-sink"] = vm_hwm_mb(sink.pid)
        memory["bench process"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        memory["children ru_maxrss (max)"] = (
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        )
        for proc, mb in memory.items():
            if mb is not None:
                memory[proc] = round(mb, 1)
                say("mem", proc=proc, mb=mb)
    except BaseException:
        click.echo(f"logs kept in {work}", err=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
