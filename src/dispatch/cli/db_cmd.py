"""`dispatch db upgrade|downgrade`: apply the Alembic migrations to the configured database."""

from __future__ import annotations

import click

from dispatch.cli.common import settings_or_exit
from dispatch.db import downgrade, make_engine, upgrade


@click.group("db")
def db_group() -> None:
    """Database schema / 数据库结构."""


@db_group.command("upgrade")
@click.argument("revision", default="head")
def upgrade_cmd(revision: str) -> None:
    """Apply migrations up to REVISION (default head) / 升级数据库结构."""
    settings = settings_or_exit()
    engine = make_engine(settings.resolved_database_url)
    upgrade(engine, revision)
    click.echo(f"database at {engine.url.render_as_string(hide_password=True)} is at {revision}")


@db_group.command("downgrade")
@click.argument("revision")
def downgrade_cmd(revision: str) -> None:
    """Revert migrations down to REVISION / 回退数据库结构."""
    settings = settings_or_exit()
    engine = make_engine(settings.resolved_database_url)
    downgrade(engine, revision)
    click.echo(f"database downgraded to {revision}")


def register(main: click.Group) -> None:
    main.add_command(db_group)
