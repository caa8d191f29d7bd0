from sqlalchemy import inspect

from dispatch.db import downgrade, make_engine, upgrade
from dispatch.models import Base


def test_migrations_match_models(database_url):
    """Every model table exists after upgrade (the migrations and models agree)."""
    engine = make_engine(database_url)
    tables = set(inspect(engine).get_table_names())
    assert {t.name for t in Base.metadata.sorted_tables} <= tables


def test_downgrade_and_upgrade_round_trip(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert "issues" in inspect(engine).get_table_names()


def test_sqlite_upgrade_keeps_rows_that_reference_a_batch_altered_table(tmp_path):
    """Batch mode recreates `lists` on SQLite; with foreign keys on, dropping the old table
    used to cascade and empty `subscriptions` (db._migrating turns them off meanwhile)."""
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0005")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO lists (id, slug, name, description, optin, created_at) "
                "VALUES (1, 'news', 'News', '', 'single', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO subscribers (id, email, name, locale, attributes, status, created_at) "
                "VALUES (1, 'a@example.org', '', 'zh-CN', '{}', 'active', '2026-01-01 00:00:00')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO subscriptions (subscriber_id, list_id, status, created_at) "
                "VALUES (1, 1, 'confirmed', '2026-01-01 00:00:00')"
            )
        )
    upgrade(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM subscriptions")).scalar() == 1
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_exactly_one_head():
    """Two engineers adding a migration each must not leave two heads (re-point one)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from dispatch.db import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1
