"""The Celery settings the delivery guarantees rest on (a regression here loses or repeats mail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dispatch.config import load_settings
from dispatch.tasks import DELIVER_BATCH, SWEEP, app, broker_url_for, celery_config


def test_reliability_settings_with_redis():
    settings = load_settings(env={}).replace(
        broker_url="redis://127.0.0.1:6379/0",
        redis_key_prefix="t1:",
        celery_queue="q1",
        lease_seconds=600,
        sweep_seconds=15,
    )
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["task_default_queue"] == "q1"
    options = conf["broker_transport_options"]
    assert options["global_keyprefix"] == "t1:"
    assert options["visibility_timeout"] >= 3 * settings.lease_seconds  # longer than any batch
    beat = conf["beat_schedule"]["dispatch-sweep"]
    assert beat["task"] == SWEEP and beat["schedule"].total_seconds() == 15


def test_reliability_settings_with_rabbitmq():
    """RabbitMQ: the same acks_late/prefetch guarantees and none of the Redis-only options (no
    visibility timeout: unacked messages return when a consumer's connection closes); the rate
    limiter's Redis is a separate setting."""
    settings = load_settings(env={}).replace(
        broker_url="amqp://guest:guest@127.0.0.1:5672/dispatch",
        redis_url="redis://127.0.0.1:6379/1",
        redis_key_prefix="t1:",
        celery_queue="q1",
    )
    conf = celery_config(settings)
    assert conf["broker_url"] == "amqp://guest:guest@127.0.0.1:5672/dispatch"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_transport_options"] == {}  # no confirm_publish: celery#9259 hangs
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False


def test_embedded_broker_needs_no_server(tmp_path: Path):
    settings = load_settings(env={}).replace(data_dir=tmp_path / "var")
    assert (
        broker_url_for(settings) == f"sqla+sqlite:///{(tmp_path / 'var' / 'broker.db').resolve()}"
    )
    assert celery_config(settings)["broker_transport_options"] == {}


def test_tasks_are_registered_by_name():
    assert {DELIVER_BATCH, SWEEP, "dispatch.start_campaign"} <= set(app.tasks)
    assert app.tasks[DELIVER_BATCH].acks_late


def test_a_changed_broker_gets_a_fresh_connection_pool(tmp_path: Path):
    from celery import Celery

    from dispatch.tasks import configure

    first = load_settings(env={}).replace(data_dir=tmp_path / "a")
    second = first.replace(data_dir=tmp_path / "b")
    app = configure(Celery("pool-test", set_as_current=False), first)
    old_pool, old_producers = app.pool, app.amqp.producer_pool
    assert "/a/" in old_pool.connection.as_uri()
    configure(app, second)
    assert app.pool is not old_pool and app.amqp.producer_pool is not old_producers
    assert "/b/" in app.pool.connection.as_uri()
    assert app.amqp.producer_pool.connections is app.pool


def test_a_worker_imports_the_send_path_at_boot_not_at_its_first_batch():
    """The first campaign's start paid about 0.6 s of imports in every worker; the CLI and
    the web app, which import dispatch.tasks too, stay without them until a worker boots."""
    code = (
        "import sys, dispatch.tasks as t\n"
        "before = [m for m in t.SEND_PATH_MODULES if m in sys.modules]\n"
        "from celery.signals import worker_init\n"
        "worker_init.send(sender=None)\n"
        "after = [m for m in t.SEND_PATH_MODULES if m in sys.modules]\n"
        "print(len(before), len(after), len(t.SEND_PATH_MODULES))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before, after, total = map(int, done.stdout.split())
    assert before < total and after == total
