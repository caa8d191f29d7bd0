"""Shared fixtures: every database test runs on SQLite and on PostgreSQL; Redis is real.

PostgreSQL and Redis are not optional: when they are unreachable the fixtures raise, so the
suite fails instead of skipping (CI must prove the real services work). Each test session gets
its own PostgreSQL database and Redis key prefix so parallel runs never collide.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis as redis_lib
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from dispatch.config import Settings, load_settings, set_settings
from dispatch.db import make_engine, upgrade
from dispatch.models import Base

# Sending tests (and the CLI and servers they start) send an issue at once, unreviewed; the
# review rule's own tests (tests/test_editorial_*.py) turn it on explicitly.
os.environ.setdefault("DISPATCH_REVIEW_REQUIRED", "false")
PG_ADMIN_URL = os.environ.get("DISPATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("DISPATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ARTIFACTS_DIR = Path(__file__).resolve().parents[1] / "test-artifacts"
RUN_ID = uuid.uuid4().hex[:10]


def _pg_url_for(dbname: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture(autouse=True)
def _fresh_process_settings() -> Iterator[None]:
    """No test inherits the process-wide settings another one cached (a CLI call caches them
    through get_settings()); a test that wants settings takes the `settings` fixture."""
    set_settings(None)
    yield
    set_settings(None)


@pytest.fixture(autouse=True)
def _no_heartbeat_outlives_its_test() -> Iterator[None]:
    """An in-process Celery worker (celery.contrib.testing) starts heartbeat threads that keep
    writing `worker` heartbeats into the shared test database after it stops; a later test that
    expects no worker seen would find one. Stop them with the test that started them."""
    yield
    from dispatch import tasks

    tasks._stop_heartbeats()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dispatch_test_{RUN_ID}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the suite fails, never skips, without PostgreSQL
        raise RuntimeError(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc}") from exc
    yield _pg_url_for(name)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> str:
    """The URL of a migrated database, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'dispatch.db'}"
    else:
        url = request.getfixturevalue("pg_database_url")
    upgrade(make_engine(url))
    return url


@pytest.fixture(scope="session")
def _engines() -> Iterator[dict[str, Engine]]:
    cache: dict[str, Engine] = {}
    yield cache
    for engine in cache.values():
        engine.dispose()


@pytest.fixture
def engine(database_url: str, _engines: dict[str, Engine]) -> Iterator[Engine]:
    """A migrated engine on each backend; every table is emptied after the test."""
    eng = _engines.get(database_url)
    if eng is None:
        eng = _engines[database_url] = make_engine(database_url)
    yield eng
    with eng.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(bind=engine, expire_on_commit=False) as s:
        yield s


@pytest.fixture
def redis_url() -> str:
    client = redis_lib.Redis.from_url(REDIS_TEST_URL)
    try:
        client.ping()
    except redis_lib.RedisError as exc:
        raise RuntimeError(f"Redis unreachable at {REDIS_TEST_URL}: {exc}") from exc
    finally:
        client.close()
    return REDIS_TEST_URL


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix unique to this test, so tests sharing the Redis server never collide."""
    return f"dispatch-test:{RUN_ID}:{uuid.uuid4().hex[:8]}:"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Iterator[Settings]:
    """Settings for a test: its own data dir, the backend's database, a fixed signing key."""
    s = load_settings(env={}).replace(
        data_dir=tmp_path / "var",
        database_url=database_url,
        secret_key="test-secret-key-not-for-production",
        public_base_url="https://bulletin.example.org",
        provider_mx_lookup=False,  # no DNS beyond loopback: tests that need MX turn it on
        review_required=False,  # sending tests send at once; tests/test_editorial_* turn it on
    )
    set_settings(s)
    yield s
    set_settings(None)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests keep screenshots and reports for a person to look at."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


@pytest.fixture
def fake():
    """A fake WeChat API on loopback (dispatch.dev.wechat_fake), one per test."""
    from dispatch.dev.wechat_fake import FakeWechatServer

    with FakeWechatServer() as server:
        yield server


@pytest.fixture
def wechat_settings(settings, fake, redis_url, redis_prefix):
    """Settings whose WeChat client talks to `fake`, sharing tokens through the test's Redis
    prefix."""
    return fake.settings_for(settings).replace(redis_url=redis_url, redis_key_prefix=redis_prefix)
