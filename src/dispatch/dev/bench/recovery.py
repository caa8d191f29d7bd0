"""`dispatch bench recovery`: time from a fault to the next message delivered, before/after.

Two faults, each on a fresh PostgreSQL database with two solo `celery worker` processes and
`celery beat` over a private redis-server (broker and rate limiter; or RabbitMQ as the broker
in a vhost of its own with `--broker rabbitmq`), sending the sample issue into Postfix's
smtp-sink:

- `worker`: one worker is SIGKILLed mid-batch. Measured: seconds from the kill until the first
  of the rows it had claimed is delivered by another worker.
- `queue`: the broker loses every queued batch (the private Redis restarted empty; on RabbitMQ
  the vhost's queue purged). Measured: seconds from the loss until the first row that was
  waiting in the lost queue (pending, claimed by nobody) is delivered.

Each runs in two modes: `lease` (recovery_seconds = 0: only the lease and the sweep's
re-queue of expired marks, the behaviour before issue 17 item 6) and `recovery` (heartbeats
and the lost-queue check). Times come from the rows' sent_at, not from this process's clock
loop. Keys of --json: broker, recipients, lease_seconds, sweep_seconds, heartbeat_seconds,
recovery_seconds, load (os.getloadavg at the start), runs: [{mode, fault, fault_to_next_s,
fault_to_release_s (worker fault: until the killed worker's claims are claimable again, the
figure that a queue backlog ahead of them does not blur), watched_rows, campaign_s, status,
sent, expected, attempts_over_1}].
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from dispatch.config import Settings
from dispatch.dev.bench import bench_settings
from dispatch.dev.bench.send import fresh_database, running_sink, seed
from dispatch.paths import PROJECT_ROOT

FAULTS = ("worker", "queue")
MODES = ("lease", "recovery")


@contextmanager
def private_redis(folder: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


class PrivateRedis:
    """A redis-server on a free loopback port, keeping nothing on disk: killing it loses the
    queue, as a restart without persistence would (never the machine's shared Redis)."""

    def __init__(self, folder: Path):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        import redis

        binary = shutil.which("redis-server")
        if not binary:
            raise click.ClickException("redis-server is not installed")
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise click.ClickException(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def rabbitmq_vhost(tag: str) -> Iterator[str]:
    """A vhost of this run's own on the machine's RabbitMQ (needs rabbitmqctl, i.e. root)."""
    name = f"dispatch-bench-{tag}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)

    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        ctl("delete_vhost", name)


@dataclass
class Stack:
    """Two solo workers and beat for one measurement; started and stopped as a unit."""

    settings: Settings
    log_dir: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        for key, value in {
            "DATABASE_URL": s.database_url,
            "BROKER_URL": s.broker_url,
            "REDIS_URL": s.redis_url,
            "CELERY_QUEUE": s.celery_queue,
            "SMTP_URL": s.smtp_url,
            "SECRET_KEY": s.secret_key,
            "PUBLIC_BASE_URL": s.public_base_url,
            "DATA_DIR": str(s.data_dir),
            "BATCH_SIZE": str(s.batch_size),
            "LEASE_SECONDS": str(s.lease_seconds),
            "SWEEP_SECONDS": str(s.sweep_seconds),
            "HEARTBEAT_SECONDS": str(s.heartbeat_seconds),
            "RECOVERY_SECONDS": str(s.recovery_seconds),
        }.items():
            env["DISPATCH_" + key] = value
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")])
        )
        return env

    def _run(self, name: str, args: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker", *args],
            cwd=PROJECT_ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

    def start(self) -> None:
        for name in ("w1", "w2"):
            self._run(
                name,
                ["worker", "-P", "solo", "-Q", self.settings.celery_queue, "-n", f"{name}@bench"]
                + ["-l", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            )
        schedule = str(self.log_dir / "beat-schedule")
        self._run("beat", ["beat", "-l", "WARNING", "-s", schedule, "--pidfile="])

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sent_count(engine, campaign_id: int) -> int:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.models import Delivery

    with Session(engine) as session:
        return int(
            session.scalar(
                select(func.count()).where(
                    Delivery.campaign_id == campaign_id, Delivery.status == "sent"
                )
            )
            or 0
        )


def _watched_ids(engine, campaign_id: int, fault: str) -> list[int]:
    """The rows whose next delivery measures the fault: the killed worker's claims, or the
    rows waiting in the queue (claimed by nobody) when it was lost."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from dispatch.models import Delivery

    D = Delivery
    cond = (
        (D.status == "sending") & D.claimed_by.like("w1@%")
        if fault == "worker"
        else D.status.in_(("pending", "deferred"))
    )
    with Session(engine) as session:
        return list(session.scalars(select(D.id).where(D.campaign_id == campaign_id, cond)))


def _first_sent_after(engine, ids: list[int], since: datetime) -> float | None:
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.models import Delivery

    if not ids:
        return None
    with Session(engine) as session:
        first = session.scalar(select(func.min(Delivery.sent_at)).where(Delivery.id.in_(ids)))
    return None if first is None else round((first - since).total_seconds(), 2)


def measure(
    settings: Settings, fault: str, recipients: int, work: Path, server: PrivateRedis
) -> dict[str, Any]:
    """One campaign, one fault at a quarter of the way; the figures of that run."""
    from sqlalchemy import func, select
    from sqlalchemy.orm import Session

    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.models import Delivery, utcnow
    from dispatch.tasks import CeleryQueue, configure

    issue_id, list_id = seed(settings, recipients)
    from celery import Celery

    app = configure(
        Celery(f"bench-recovery-{uuid.uuid4().hex[:6]}", set_as_current=False), settings
    )
    stack = Stack(settings, work)
    engine = make_engine(settings.database_url)
    try:
        stack.start()
        time.sleep(3.0)  # workers connect and beat starts
        with Session(engine) as session, session.begin():
            campaign, _ = campaigns.create_or_get(
                session, issue_id=issue_id, channel="email", list_ids=[list_id]
            )
            campaign_id = campaign.id
        started = time.monotonic()
        campaigns.start(engine, settings, campaign_id, CeleryQueue(app, settings.celery_queue))
        deadline = time.monotonic() + 300
        while _sent_count(engine, campaign_id) < recipients // 4:
            if time.monotonic() > deadline:
                raise click.ClickException(f"no progress; logs in {work}")
            time.sleep(0.05)
        if fault == "worker":  # kill w1 while it holds claims (not while it renders or waits)
            while not _watched_ids(engine, campaign_id, fault) and time.monotonic() < deadline:
                time.sleep(0.01)
        at_fault = utcnow()
        if fault == "worker":
            os.kill(stack.procs["w1"].pid, signal.SIGKILL)
            stack.procs["w1"].wait(10)
        else:
            lose_queue(settings, app, server)
        ids = _watched_ids(engine, campaign_id, fault)
        if fault == "queue":
            time.sleep(0.5)
            server.start()  # back, empty
        timeout = settings.lease_seconds * 2 + 300
        fault_clock, released_s = time.monotonic(), None
        while True:
            with Session(engine) as session:
                status = campaigns.get(session, campaign_id).status
                if fault == "worker" and released_s is None and ids:
                    held = session.scalar(
                        select(func.count()).where(
                            Delivery.id.in_(ids),
                            Delivery.claimed_by.like("w1@%"),
                            Delivery.status == "sending",
                        )
                    )
                    if not held:  # the killed worker's claims are claimable again
                        released_s = round(time.monotonic() - fault_clock, 2)
            if status != "running" or time.monotonic() - started > timeout:
                break
            time.sleep(0.2)
        campaign_s = round(time.monotonic() - started, 2)
        with Session(engine) as session:
            retried = session.scalar(
                select(func.count()).where(
                    Delivery.campaign_id == campaign_id, Delivery.attempts > 1
                )
            )
        return {
            "fault": fault,
            "fault_to_next_s": _first_sent_after(engine, ids, at_fault),
            "fault_to_release_s": released_s,
            "watched_rows": len(ids),
            "campaign_s": campaign_s,
            "status": status,
            "sent": _sent_count(engine, campaign_id),
            "expected": recipients,
            "attempts_over_1": int(retried or 0),
        }
    finally:
        stack.stop()
        engine.dispose()
        app.close()


def lose_queue(settings: Settings, app, server: PrivateRedis) -> None:
    """Redis broker: kill the private redis-server (it keeps nothing). RabbitMQ: kill the
    rate limiter's private Redis and purge this run's own vhost's queue."""
    server.kill()
    if settings.broker_url.startswith("amqp"):
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(settings.celery_queue)


def run(
    broker: str, recipients: int, lease_seconds: float, modes: list[str], faults: list[str]
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dispatch-bench-recovery-"))
    tag = uuid.uuid4().hex[:8]
    result: dict[str, Any] = {
        "broker": broker,
        "recipients": recipients,
        "lease_seconds": lease_seconds,
        "load": [round(x, 2) for x in os.getloadavg()],
        "runs": [],
    }
    base = bench_settings(
        data_dir=work / "var",
        secret_key="bench-secret-key",
        public_base_url="https://bulletin.example.org",
        celery_queue=f"dispatch-bench-recovery-{tag}",
        lease_seconds=lease_seconds,
        sweep_seconds=5.0,
        batch_size=100,
    )
    result.update(
        sweep_seconds=base.sweep_seconds,
        heartbeat_seconds=base.heartbeat_seconds,
        recovery_seconds=base.recovery_seconds,
    )
    with private_redis(work) as server, running_sink() as sink:
        with _broker_url(broker, server, tag) as broker_url:
            for mode in modes:
                for fault in faults:
                    settings = base.replace(
                        smtp_url=sink.url,
                        broker_url=broker_url,
                        redis_url=server.url,
                        recovery_seconds=base.recovery_seconds if mode == "recovery" else 0.0,
                    )
                    with fresh_database() as url:
                        figures = measure(
                            settings.replace(database_url=url), fault, recipients, work, server
                        )
                    result["runs"].append({"mode": mode, **figures})
    shutil.rmtree(work, ignore_errors=True)
    return result


@contextmanager
def _broker_url(broker: str, server: PrivateRedis, tag: str) -> Iterator[str]:
    if broker == "rabbitmq":
        with rabbitmq_vhost(tag) as url:
            yield url
    else:
        yield server.url


@click.command("recovery")
@click.option("--broker", type=click.Choice(["redis", "rabbitmq"]), default="redis")
@click.option("--recipients", type=int, default=2000, show_default=True)
@click.option(
    "--lease-seconds",
    type=float,
    default=60.0,
    show_default=True,
    help="The lease of the measured runs (the service's default is 600) / 租约秒数",
)
@click.option("--modes", default=",".join(MODES), show_default=True)
@click.option("--faults", default=",".join(FAULTS), show_default=True)
@click.option("--json", "as_json", is_flag=True)
def command(
    broker: str, recipients: int, lease_seconds: float, modes: str, faults: str, as_json: bool
) -> None:
    """Time from a fault (worker SIGKILL, lost queue) to the next message delivered, with
    leases only and with the heartbeat/lost-queue recovery / 故障恢复基准."""
    chosen_modes = [m for m in modes.split(",") if m in MODES]
    chosen_faults = [f for f in faults.split(",") if f in FAULTS]
    result = run(broker, recipients, lease_seconds, chosen_modes, chosen_faults)
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    click.echo(
        f"broker {broker}, {recipients} recipients, lease {lease_seconds:g} s, sweep "
        f"{result['sweep_seconds']:g} s, heartbeat {result['heartbeat_seconds']:g} s, "
        f"recovery every {result['recovery_seconds']:g} s; load {result['load']}"
    )
    for r in result["runs"]:
        click.echo(
            f"{r['mode']:>8} {r['fault']:>6}: fault → next delivered {r['fault_to_next_s']} s, "
            f"→ claims released {r['fault_to_release_s']} s "
            f"({r['watched_rows']} rows waiting); campaign {r['campaign_s']} s, "
            f"sent {r['sent']}/{r['expected']} ({r['status']})"
        )
