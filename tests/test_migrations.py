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
