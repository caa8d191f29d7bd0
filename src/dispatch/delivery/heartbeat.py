"""Is a worker (or beat) running? Each such process records a heartbeat; commands read it.

Why: a campaign queued with no worker running sat at 0 % forever and nothing said why.
Workers and beat write their row every `heartbeat_seconds` (dispatch.tasks wires this to
Celery's worker_ready / worker_process_init / beat_init signals); `send`, `campaigns watch`
and the campaign page ask `missing_process_message`, which answers from those timestamps,
never from a guess. A task-running process's row is named like its claims (`worker_name`),
so delivery.recovery can return a dead worker's claims without waiting for their lease.
"""

from __future__ import annotations

import os
import socket
import threading
from datetime import datetime

from sqlalchemy import Engine, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.db import affected
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.models import Campaign, utcnow
from dispatch.models.heartbeat import ProcessHeartbeat
from dispatch.vocabulary import CampaignStatus, ProcessKind

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "worker_never": (
            "还没有看到任何 worker：请用 `dispatch worker` 启动一个",
            "no worker has been seen yet: start one with `dispatch worker`",
        ),
        "worker_gone": (
            "已有 {seconds} 秒没有看到 worker：请用 `dispatch worker` 启动一个",
            "no worker has been seen for {seconds} s: start one with `dispatch worker`",
        ),
        "beat_never": (
            "活动 #{id} 已到定时时间，但还没有看到 beat：请用 `dispatch worker --beat` 启动",
            "campaign #{id} is due but no beat has been seen yet: start it with "
            "`dispatch worker --beat`",
        ),
        "beat_gone": (
            "活动 #{id} 已到定时时间，但已有 {seconds} 秒没有看到 beat：请用 `dispatch worker "
            "--beat` 启动",
            "campaign #{id} is due but no beat has been seen for {seconds} s: start it with "
            "`dispatch worker --beat`",
        ),
    }
)


def process_name(kind: str) -> str:
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


def worker_name(nodename: str | None, pid: int | None = None) -> str:
    """The name of a task-running process: `node:pid`, cut like claim tokens' holder part.

    Why the same string: a claim token is `worker_name:random` (tasks.deliver_batch), so the
    recovery finds a claim's heartbeat row by name and releases it when the row goes stale.
    """
    return f"{nodename or socket.gethostname()}:{pid or os.getpid()}"[:60]


def record(
    engine: Engine, kind: str, name: str, now: datetime | None = None, *, fresh: bool = False
) -> None:
    """Write this process's heartbeat (insert the first time, update afterwards). `fresh` (a
    process's first beat) also resets started_at: a new process under an old name (a pid
    reused after a restart) thereby disowns the claims the old one left."""
    now = now or utcnow()
    values: dict = {"seen_at": now, "kind": str(kind)}
    if fresh:
        values["started_at"] = now
    with Session(engine) as session, session.begin():
        updated = affected(
            session.execute(
                update(ProcessHeartbeat).where(ProcessHeartbeat.name == name).values(**values)
            )
        )
        if not updated:
            try:
                with session.begin_nested():
                    session.add(
                        ProcessHeartbeat(name=name, kind=str(kind), started_at=now, seen_at=now)
                    )
            except IntegrityError:  # the same name raced us: its row is fresh enough
                pass


def seconds_since_seen(session: Session, kind: str, now: datetime | None = None) -> float | None:
    """Seconds since any process of `kind` was last seen; None if none ever was."""
    last = session.scalar(
        select(func.max(ProcessHeartbeat.seen_at)).where(ProcessHeartbeat.kind == str(kind))
    )
    if last is None:
        return None
    return max(0.0, ((now or utcnow()) - last).total_seconds())


def stale_after(settings: Settings) -> float:
    """A process counts as running if seen within three heartbeats (at least 30 s)."""
    return max(3 * settings.heartbeat_seconds, 30.0)


def missing_process_message(
    session: Session,
    settings: Settings,
    campaign: Campaign | None = None,
    locale: str | None = None,
) -> str | None:
    """The bilingual warning for a campaign (or in general) when the process it waits for
    has not been seen recently; None when all is well. Running or paused campaigns wait for a
    worker; a scheduled one past its time waits for beat. Both languages unless `locale`."""
    now = utcnow()
    kind = ProcessKind.WORKER
    if campaign is not None:
        if campaign.status == CampaignStatus.SCHEDULED:
            due = campaign.scheduled_at
            if due is None or due > now:
                return None
            kind = ProcessKind.BEAT
        elif campaign.status != CampaignStatus.RUNNING:
            return None
    age = seconds_since_seen(session, kind, now)
    if age is not None and age <= stale_after(settings):
        return None
    key = f"{kind}_never" if age is None else f"{kind}_gone"
    values = {"seconds": int(age or 0), "id": campaign.id if campaign is not None else ""}
    return MESSAGES.get(key, locale, **values) if locale else MESSAGES.both(key, **values)


class HeartbeatThread:
    """Records `kind`'s heartbeat every `settings.heartbeat_seconds` until stopped, under
    `name` (default: kind@host:pid; task-running workers pass `worker_name(...)`)."""

    def __init__(self, engine: Engine, settings: Settings, kind: str, name: str | None = None):
        self.engine, self.kind = engine, str(kind)
        self.interval = settings.heartbeat_seconds
        self.name = name or process_name(self.kind)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"dispatch-heartbeat-{self.kind}", daemon=True
        )

    def start(self) -> HeartbeatThread:
        self._thread.start()
        return self

    def _run(self) -> None:
        fresh = True
        while True:
            try:
                record(self.engine, self.kind, self.name, fresh=fresh)
                fresh = False
            except SQLAlchemyError as exc:  # the database is away: the next beat tries again
                log.warning("heartbeat.failed", kind=self.kind, error=type(exc).__name__)
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
