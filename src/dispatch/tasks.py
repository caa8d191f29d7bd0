"""Thin Celery tasks over dispatch.delivery: ids in, state in the database, nothing else.

Broker: settings.broker_url (redis://… in production). Empty means the embedded broker, a
SQLite file under data_dir through kombu's SQLAlchemy transport, so `dispatch demo` and a
single-machine setup need no server. Reliability settings: acks_late with
reject_on_worker_lost (a task whose worker dies goes back to the queue), prefetch 1 (a worker
holds at most one unstarted batch), and a Redis visibility timeout far longer than any batch.
Tasks are idempotent: a redelivered deliver_batch claims only rows still due.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta

from celery import Celery
from celery.schedules import crontab
from celery.signals import (
    beat_embedded_init,
    beat_init,
    setup_logging,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from dispatch.config import Settings, get_settings
from dispatch.log import configure_logging, get_logger

log = get_logger(__name__)


@setup_logging.connect
def _structured_worker_logs(loglevel=None, **_kwargs) -> None:
    """Workers and beat log the same one-JSON-object-per-line events as the rest of dispatch."""
    configure_logging(loglevel or "INFO")


DELIVER_BATCH = "dispatch.deliver_batch"
START_CAMPAIGN = "dispatch.start_campaign"
SWEEP = "dispatch.sweep"
POLL_BOUNCES = "dispatch.poll_bounces"
WECHAT_SYNC = "dispatch.wechat_sync_followers"
ROLLUP_EVENTS = "dispatch.rollup_events"
REPORT_ROLLUP = "dispatch.report_rollup"
REPORT_ROLLUP_SECONDS = 60.0  # how stale a big campaign's report tallies may get


def broker_url_for(settings: Settings) -> str:
    if settings.broker_url:
        return settings.broker_url
    path = (settings.data_dir / "broker.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqla+sqlite:///{path}"


def celery_config(settings: Settings) -> dict:
    """Everything the app needs from settings (also applied again by `configure`)."""
    broker = broker_url_for(settings)
    transport_options: dict = {}
    if broker.startswith(("redis://", "rediss://")):
        # longer than the longest batch (a batch renews its lease per chunk, so lease × 3 and
        # at least an hour is ample); the SQLAlchemy transport takes no such option
        transport_options["visibility_timeout"] = max(3600, int(settings.lease_seconds * 3))
        if settings.redis_key_prefix:
            transport_options["global_keyprefix"] = settings.redis_key_prefix
    return {
        "broker_url": broker,
        "task_default_queue": settings.celery_queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_serializer": "json",
        "task_ignore_result": True,
        "result_backend": None,
        "broker_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
        "enable_utc": True,
    }


def beat_schedule(settings: Settings) -> dict:
    """The sweep and the report rollup always; the bounce mailbox poll and the daily WeChat
    follower sync when they are configured."""
    schedule: dict = {
        "dispatch-sweep": {"task": SWEEP, "schedule": timedelta(seconds=settings.sweep_seconds)},
        "dispatch-report-rollup": {
            "task": REPORT_ROLLUP,
            "schedule": timedelta(seconds=REPORT_ROLLUP_SECONDS),
        },
    }
    if settings.bounce_mailbox_url:
        schedule["dispatch-poll-bounces"] = {
            "task": POLL_BOUNCES,
            "schedule": timedelta(seconds=max(settings.bounce_poll_seconds, 10.0)),
        }
    if settings.wechat_app_id and settings.wechat_app_secret:
        schedule["dispatch-wechat-followers"] = {
            "task": WECHAT_SYNC,
            "schedule": crontab(minute=17, hour=settings.wechat_sync_hour),
        }
    if settings.events_retention_days > 0:  # old campaigns' tracking detail → daily counts
        schedule["dispatch-rollup-events"] = {
            "task": ROLLUP_EVENTS,
            "schedule": crontab(minute=41, hour=4),
        }
    return schedule


def configure(app: Celery, settings: Settings) -> Celery:
    """Apply settings; a changed broker drops the app's pooled connections to the old one."""
    config = celery_config(settings)
    if app.configured and app.conf.broker_url != config["broker_url"]:
        # the pooled connections and producers belong to the old broker; drop them through
        # Celery's public API (close() forgets the pool, amqp is a resettable cached property)
        app.pool.force_close_all()
        app.close()
        del app.amqp
    app.conf.update(config)
    return app


app = configure(Celery("dispatch"), get_settings())


@worker_init.connect
def _check_sending_settings(**_kwargs) -> None:
    """A worker with a bad relay setting or provider table refuses to start, saying which
    setting (or file:line) is wrong, instead of failing every batch later."""
    from dispatch.delivery.relays import check_sending_settings

    try:
        check_sending_settings(get_settings())
    except ValueError as exc:  # ConfigError, ProviderTableError
        log.error("worker.bad_settings", error=str(exc))
        raise SystemExit(f"dispatch: {exc}") from None


@worker_process_init.connect
def _fresh_engines_after_fork(**_kwargs) -> None:
    """A forked pool child must not reuse the parent's database connections."""
    from dispatch import db

    db._engine_for.cache_clear()  # each child builds its own engine and pool on first use


_heartbeats: list = []


def _start_heartbeat(kind: str) -> None:
    from dispatch.db import get_engine
    from dispatch.delivery.heartbeat import HeartbeatThread

    settings = get_settings()
    _heartbeats.append(HeartbeatThread(get_engine(settings), settings, kind).start())


@worker_ready.connect
def _worker_heartbeat(**_kwargs) -> None:
    """A running worker says so every few seconds (`dispatch send` warns when none does)."""
    from dispatch.vocabulary import ProcessKind

    _start_heartbeat(ProcessKind.WORKER)


@beat_init.connect
@beat_embedded_init.connect
def _beat_heartbeat(**_kwargs) -> None:
    """Beat too: a scheduled campaign past its time with no beat says so."""
    from dispatch.vocabulary import ProcessKind

    _start_heartbeat(ProcessKind.BEAT)


@worker_shutdown.connect
def _stop_heartbeats(**_kwargs) -> None:
    while _heartbeats:
        _heartbeats.pop().stop()


class CeleryQueue:
    """BatchQueue over Celery: deliver_batch(campaign_id, batch_no), ids only."""

    def __init__(self, celery_app: Celery | None = None, queue: str | None = None):
        self.app = celery_app or app
        self.queue = queue or self.app.conf.task_default_queue

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        self.app.send_task(DELIVER_BATCH, args=(campaign_id, batch_no), queue=self.queue)


def _deps():
    from dispatch.db import get_engine

    settings = get_settings()
    return get_engine(settings), settings


@app.task(name=DELIVER_BATCH, bind=True, acks_late=True, ignore_result=True)
def deliver_batch(self, campaign_id: int, batch_no: int) -> dict:
    from dispatch.delivery.engine import deliver_batch as run

    engine, settings = _deps()
    worker = f"{self.request.hostname or socket.gethostname()}:{os.getpid()}"
    report = run(engine, settings, int(campaign_id), int(batch_no), worker=worker)
    return {"claimed": report.claimed, **report.outcomes}


@app.task(name=START_CAMPAIGN, acks_late=True, ignore_result=True)
def start_campaign(campaign_id: int) -> None:
    from dispatch.delivery import campaigns

    engine, settings = _deps()
    try:
        campaigns.start(engine, settings, int(campaign_id), CeleryQueue())
    except campaigns.InvalidTransition as exc:  # already started: a redelivered task
        log.info("task.start_skipped", campaign_id=campaign_id, reason=str(exc))


@app.task(name=SWEEP, ignore_result=True)
def sweep() -> dict:
    from dispatch.delivery.engine import sweep as run

    engine, settings = _deps()
    report = run(engine, settings, CeleryQueue())
    return {
        "started": report.started,
        "expired": len(report.expired),
        "enqueued": len(report.enqueued),
    }


@app.task(name=REPORT_ROLLUP, ignore_result=True)
def report_rollup() -> dict:
    """Beat: add recent campaigns' new events to their report tallies (dispatch.reports)."""
    from sqlalchemy.orm import Session

    from dispatch.reports.rollup import refresh_recent

    engine, _settings = _deps()
    with Session(engine) as session:
        return {str(k): v for k, v in refresh_recent(session).items()}


@app.task(name=POLL_BOUNCES, ignore_result=True)
def poll_bounces() -> dict:
    """Beat: read the bounce mailbox once (each message processed once, then moved/deleted)."""
    from dispatch.bounces.mailbox import poll_mailbox

    engine, settings = _deps()
    if not settings.bounce_mailbox_url:
        return {"skipped": "bounce_mailbox_url is not set"}
    return poll_mailbox(engine, settings).as_dict()


@app.task(name=WECHAT_SYNC, ignore_result=True)
def wechat_sync_followers() -> dict:
    """Daily: the account's followers into settings.wechat_sync_list (resumes a broken run),
    then WeChat's article figures for the week's sends."""
    from sqlalchemy.orm import Session

    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.followers import sync_followers
    from dispatch.wechat.stats import pull_article_stats

    engine, settings = _deps()
    client = WechatClient(settings)
    report = sync_followers(engine, client, settings)
    log.info("wechat.followers.synced", **report.as_dict())
    with Session(engine) as session, session.begin():  # the week's article figures too
        pulled = pull_article_stats(session, client)
    return {**report.as_dict(), "article_stats": pulled}


@app.task(name=ROLLUP_EVENTS, ignore_result=True)
def rollup_events() -> dict:
    """Daily: campaigns past events_retention_days have their tracking detail rolled up."""
    from dispatch.rollup import roll_up

    engine, settings = _deps()
    results = roll_up(engine, settings)
    return {"campaigns": [r.campaign_id for r in results]}
