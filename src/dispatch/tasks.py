"""Thin Celery tasks over dispatch.delivery: ids in, state in the database, nothing else.

Broker: settings.broker_url, Redis (redis://…) or RabbitMQ (amqp://…) in production. Empty
means the embedded broker, a SQLite file under data_dir through kombu's SQLAlchemy transport,
so `dispatch demo` and a single-machine setup need no server. The rate limiter and the WeChat
token cache use settings.redis_url whatever the broker. Reliability settings: acks_late with
reject_on_worker_lost (a task whose worker dies goes back to the queue), prefetch 1 (a worker
holds at most one unstarted batch), and a Redis visibility timeout far longer than any
batch. RabbitMQ needs no option of its own: no visibility timeout (a dead worker's
unacked message returns when its connection closes); publisher confirms are left off
(celery#9259: with confirm_publish a publish can hang for good, and beat then sends no more
sweeps); a message lost before the broker stored it is found by delivery.recovery.
Tasks are idempotent: a redelivered deliver_batch claims only rows still due.
"""

from __future__ import annotations

import socket
from datetime import timedelta

from amqp.exceptions import NotFound
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
PREPARE_CAMPAIGN = "dispatch.prepare_campaign"
START_CAMPAIGN = "dispatch.start_campaign"
SWEEP = "dispatch.sweep"
POLL_BOUNCES = "dispatch.poll_bounces"
WECHAT_SYNC = "dispatch.wechat_sync_followers"
ROLLUP_EVENTS = "dispatch.rollup_events"
REPORT_ROLLUP = "dispatch.report_rollup"
REPORT_ROLLUP_SECONDS = 60.0  # how stale a big campaign's report tallies may get
RECOUNT_TALLIES = "dispatch.recount_tallies"
RECOUNT_SECONDS = 60.0  # how long a late change may leave a closed campaign's figures stale


def broker_url_for(settings: Settings) -> str:
    if settings.broker_url:
        return settings.broker_url
    path = (settings.data_dir / "broker.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqla+sqlite:///{path}"


def is_amqp(broker_url: str) -> bool:
    """RabbitMQ (or another AMQP 0-9-1 broker) rather than Redis or the embedded broker."""
    return broker_url.startswith(("amqp://", "amqps://", "pyamqp://"))


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
        # a running batch finishes and records its results when the broker connection drops
        # (RabbitMQ then redelivers its message; the redelivered task claims nothing twice)
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_schedule": beat_schedule(settings),
        "timezone": "UTC",
        "enable_utc": True,
    }


def beat_schedule(settings: Settings) -> dict:
    """The sweep, the report rollup and the tallies' recount always; the bounce mailbox poll
    and the daily WeChat follower sync when they are configured."""
    schedule: dict = {
        "dispatch-sweep": {"task": SWEEP, "schedule": timedelta(seconds=settings.sweep_seconds)},
        "dispatch-report-rollup": {
            "task": REPORT_ROLLUP,
            "schedule": timedelta(seconds=REPORT_ROLLUP_SECONDS),
        },
        # closed campaigns' figures made stale by late bounces, unsubscribes, complaints:
        # counted here, not by the next administrator who opens the page (dispatch.tallies)
        "dispatch-recount-tallies": {
            "task": RECOUNT_TALLIES,
            "schedule": timedelta(seconds=RECOUNT_SECONDS),
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


_node: dict[str, str] = {}  # this worker's node name (w1@host), for its heartbeat rows


@worker_init.connect
def _check_sending_settings(sender=None, **_kwargs) -> None:
    """A worker with a bad relay setting or provider table refuses to start, saying which
    setting (or file:line) is wrong, instead of failing every batch later."""
    from dispatch.delivery.relays import check_sending_settings

    _node["name"] = getattr(sender, "hostname", None) or socket.gethostname()

    try:
        check_sending_settings(get_settings())
    except ValueError as exc:  # ConfigError, ProviderTableError
        log.error("worker.bad_settings", error=str(exc))
        raise SystemExit(f"dispatch: {exc}") from None


# what a worker's first batch imported (the engine, premailer and the renderer, both channels):
# 0.6 s of CPU, paid by the first campaign's start in every worker process; now at boot
SEND_PATH_MODULES = (
    "dispatch.delivery.engine",
    "dispatch.delivery.routing",
    "dispatch.channels.smtp",
    "dispatch.channels.wechat",
    "dispatch.render.email",
    "dispatch.content.store",
    "dispatch.subscribers.service",
)


@worker_init.connect
def _preload_send_path(**_kwargs) -> None:
    """Import the send path before the first task (a prefork pool's children inherit it)."""
    import importlib

    for name in SEND_PATH_MODULES:
        importlib.import_module(name)


_heartbeats: list = []  # this process's HeartbeatThread and RecoveryThread, to stop


def _start_heartbeat(kind: str, name: str | None = None) -> None:
    from dispatch.db import get_engine
    from dispatch.delivery.heartbeat import HeartbeatThread

    settings = get_settings()
    _heartbeats.append(HeartbeatThread(get_engine(settings), settings, kind, name).start())


def _worker_name() -> str:
    from dispatch.delivery.heartbeat import worker_name

    return worker_name(_node.get("name"))


@worker_process_init.connect
def _fresh_engines_after_fork(**_kwargs) -> None:
    """A forked pool child must not reuse the parent's database connections; it runs tasks,
    so it beats under its own name (its claims carry its pid)."""
    from dispatch import db
    from dispatch.vocabulary import ProcessKind

    db._engine_for.cache_clear()  # each child builds its own engine and pool on first use
    _heartbeats.clear()  # the parent's threads did not survive the fork
    _start_heartbeat(ProcessKind.WORKER, _worker_name())


@worker_ready.connect
def _worker_heartbeat(**_kwargs) -> None:
    """A running worker says so every few seconds (`dispatch send` warns when none does);
    named like the claims its tasks make when it runs them itself (solo or threads pool)."""
    from dispatch.vocabulary import ProcessKind

    _start_heartbeat(ProcessKind.WORKER, _worker_name())


@beat_init.connect
@beat_embedded_init.connect
def _beat_heartbeat(**_kwargs) -> None:
    """Beat too (a scheduled campaign past its time with no beat says so), and beat runs the
    recovery every few seconds: dead workers' claims, batches the broker lost."""
    from dispatch.db import get_engine
    from dispatch.delivery.recovery import RecoveryThread
    from dispatch.vocabulary import ProcessKind

    _start_heartbeat(ProcessKind.BEAT)
    settings = get_settings()
    _heartbeats.append(RecoveryThread(get_engine(settings), settings, CeleryQueue()).start())


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

    def prepare(self, campaign_id: int) -> None:
        """One prepare_campaign task: the idle worker that takes it renders the campaign
        while the fan-out runs (delivery.prepare); queued before the batches, so taken first."""
        self.app.send_task(PREPARE_CAMPAIGN, args=(campaign_id,), queue=self.queue)

    def waiting(self) -> int:
        """Tasks in the broker's queue that no worker has taken (Redis: the list's length;
        RabbitMQ: the queue's ready messages). A queue the broker does not know holds none."""
        with self.app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1)
            if not is_amqp(self.app.conf.broker_url):  # kombu's virtual queues: just count
                return int(conn.default_channel.queue_declare(self.queue)[1])
            try:  # passive: never (re)declare RabbitMQ's queue with other arguments
                return int(conn.default_channel.queue_declare(self.queue, passive=True)[1])
            except NotFound:
                return 0


def _deps():
    from dispatch.db import get_engine

    settings = get_settings()
    return get_engine(settings), settings


@app.task(name=DELIVER_BATCH, bind=True, acks_late=True, ignore_result=True)
def deliver_batch(self, campaign_id: int, batch_no: int) -> dict:
    from dispatch.delivery.engine import deliver_batch as run
    from dispatch.delivery.heartbeat import worker_name

    engine, settings = _deps()
    worker = worker_name(self.request.hostname)  # node:pid, the name of this process's heartbeat
    try:
        report = run(engine, settings, int(campaign_id), int(batch_no), worker=worker)
    except Exception:
        from dispatch.delivery.recovery import release_failed_run

        # the rows this run claimed return now (re-queued by the next recovery round), not
        # after a lease: this process lives on and its heartbeat would keep them claimed
        try:
            release_failed_run(engine, settings, worker, int(campaign_id), int(batch_no))
        except Exception as exc:  # noqa: BLE001 - the database too is away: the lease remains
            log.warning("task.release_failed", campaign_id=campaign_id, error=str(exc))
        raise
    return {"claimed": report.claimed, **report.outcomes}


# acked when taken (not late): a worker lost mid-render hands it to nobody, the batches
# render anyway; a solo worker still takes nothing else until it is done
@app.task(name=PREPARE_CAMPAIGN, acks_late=False, ignore_result=True)
def prepare_campaign(campaign_id: int) -> bool:
    """Render the campaign in this worker before its batches arrive (delivery.prepare).
    Never raises: a campaign that cannot be prepared is reported by its batches."""
    from dispatch.delivery.prepare import prepare_campaign as run

    engine, settings = _deps()
    return run(engine, settings, int(campaign_id))


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


@app.task(name=RECOUNT_TALLIES, ignore_result=True)
def recount_tallies() -> dict:
    """Beat: count again the stored campaign figures a late change made stale."""
    from dispatch.tallies import recount_stale

    engine, settings = _deps()
    return recount_stale(engine, settings)


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
