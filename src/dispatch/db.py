"""Engine, sessions and migrations: one place that knows how to reach the database.

Why migrations run from code: on the embedded SQLite default every command brings the schema
up to date itself, so a newcomer never has to run `dispatch db upgrade` first.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from alembic.config import Config
from sqlalchemy import Connection, CursorResult, Engine, Result, String, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from dispatch.config import Settings, get_settings
from dispatch.log import get_logger
from dispatch.paths import PACKAGE_DIR
from dispatch.sqlite_writes import WriterQueuedConnection

MIGRATIONS_DIR = PACKAGE_DIR / "migrations"
log = get_logger(__name__)


def make_engine(url: str, **kwargs) -> Engine:
    """Create an engine; SQLite gets WAL, foreign keys, a busy timeout for several processes and
    one queued writer at a time within this one (dispatch.sqlite_writes)."""
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30, "factory": WriterQueuedConnection})
        engine = create_engine(url, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction for Alembic.

    On SQLite, foreign keys are off meanwhile: Alembic's batch mode rebuilds a table (copy,
    DROP, rename), and with foreign keys on, that DROP deletes every row that refers to it
    through ON DELETE CASCADE (rebuilding `lists` emptied `subscriptions`). References are
    checked before the transaction commits, and foreign keys are on again afterwards."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # outside any transaction, or SQLite ignores it
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left broken references: {broken[:5]}")
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision` on this engine's database (one log line if any ran)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with _migrating(engine) as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    if before != after:
        log.info("db.migrated", from_revision=before, to_revision=after)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


@lru_cache(maxsize=8)
def _engine_for(url: str, auto_upgrade: bool) -> Engine:
    engine = make_engine(url)
    if auto_upgrade:
        with _migration_lock(url):
            upgrade(engine)
    return engine


@contextmanager
def _migration_lock(url: str) -> Iterator[None]:
    """One process at a time migrates an embedded SQLite file: `dispatch worker &` and the
    next command start together on a fresh data dir, and both would create the tables."""
    import fcntl

    path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        yield
        return
    lock = Path(path + ".migrate-lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def get_engine(settings: Settings | None = None) -> Engine:
    """The process's engine for these settings (embedded SQLite is migrated on first use)."""
    settings = settings or get_settings()
    url = settings.resolved_database_url
    return _engine_for(url, settings.is_embedded_db)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine | None = None) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error (nothing half-written)."""
    with committing(Session(bind=engine or get_engine(), expire_on_commit=False)) as session:
        yield session


@contextmanager
def committing(session: Session) -> Iterator[Session]:
    """Commit `session` when the block succeeds, roll back on any error, always close it."""
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def affected(result: Result[Any]) -> int:
    """Rows an UPDATE/DELETE matched (Session.execute is typed as returning a plain Result)."""
    return cast(CursorResult[Any], result).rowcount or 0


ANALYZED_TABLES = frozenset({"deliveries", "subscribers", "subscriptions", "suppressions"})


def analyze(engine: Engine, *tables: str) -> None:
    """Refresh the planner's statistics of `tables` after a bulk load (PostgreSQL's advice
    after bulk loading: autovacuum may not have run yet, or may be off). Its own short
    transaction; a no-op on other databases; never fails the caller (statistics only help)."""
    names = [t for t in tables if t in ANALYZED_TABLES]
    if not names or engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    try:
        with engine.begin() as conn:
            conn.execute(text(f"ANALYZE {', '.join(names)}"))
    except Exception as exc:  # noqa: BLE001 - a lock or a permission: plans stay as they were
        log.warning("db.analyze_failed", tables=names, error=f"{type(exc).__name__}: {exc}")


_STALE = """
SELECT c.relname FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.relname = ANY(:names) AND c.relnamespace = to_regnamespace(current_schema())::oid
  AND (c.reltuples < 0 OR s.n_mod_since_analyze > 50 + 0.1 * c.reltuples)
"""


def analyze_if_stale(engine: Engine, *tables: str) -> list[str]:
    """ANALYZE those of `tables` never analysed or changed by more than a tenth since
    (autovacuum's own rule, for servers where it is off or has not run yet); the ones done."""
    names = [t for t in tables if t in ANALYZED_TABLES]
    if not names or engine.dialect.name != "postgresql":
        return []
    from sqlalchemy import text

    try:
        with engine.connect() as conn:
            stale = list(conn.execute(text(_STALE), {"names": names}).scalars())
    except Exception as exc:  # noqa: BLE001 - statistics only help
        log.warning("db.analyze_failed", tables=names, error=f"{type(exc).__name__}: {exc}")
        return []
    if stale:
        analyze(engine, *stale)
    return stale


def among_ids(session: Session, column: Any, ids: Sequence[int]) -> Any:
    """`column IN (ids)`; on PostgreSQL `column = ANY('{…}'::bigint[])` with the array as one
    literal (dispatch.pg_arrays).

    Why: an IN list is rendered anew for every call, one bound parameter per id (a batch's
    200 people: about a millisecond of a send worker's CPU per batch), while the ANY form is
    one cached statement; both use the primary-key index.
    """
    if session.get_bind().dialect.name != "postgresql":
        return column.in_(list(ids))
    from sqlalchemy import BigInteger, any_, bindparam
    from sqlalchemy import cast as sql_cast
    from sqlalchemy.dialects.postgresql import ARRAY

    from dispatch import pg_arrays

    literal = bindparam(None, pg_arrays.ints(ids), type_=String())
    return column == any_(sql_cast(literal, ARRAY(BigInteger)))
