"""`dispatch events rollup`: roll old campaigns' per-recipient tracking detail into daily counts.

Beat runs the same every night (dispatch.tasks.rollup_events); the command is for a first run
after an upgrade, for cron without beat, and for rolling up chosen campaigns now.
"""

from __future__ import annotations

import click

from dispatch.cli.common import emit, json_option, settings_or_exit
from dispatch.db import make_engine


@click.group("events")
def events_group() -> None:
    """Event history at scale / 事件历史的汇总与保留."""


@events_group.command("rollup")
@click.option(
    "--campaign",
    "campaign_ids",
    type=click.IntRange(1, 2**31 - 1),
    multiple=True,
    help="roll up this campaign now, whatever its age (repeatable) / 立即汇总此活动",
)
@json_option
def rollup_cmd(campaign_ids: tuple[int, ...], as_json: bool) -> None:
    """Roll up campaigns past events_retention_days / 汇总超过保留期的活动明细."""
    from dispatch.rollup import roll_up

    settings = settings_or_exit()
    engine = make_engine(settings.resolved_database_url)
    results = roll_up(engine, settings, campaign_ids=campaign_ids or None)
    engine.dispose()
    data = {
        "retention_days": settings.events_retention_days,
        "campaigns": [r.as_dict() for r in results],
    }

    def human(d: dict) -> None:
        if not d["campaigns"]:
            click.echo("没有需要汇总的活动 / no campaign to roll up")
        for r in d["campaigns"]:
            click.echo(
                f"campaign {r['campaign_id']}: {r['daily_rows']} daily rows, "
                f"{r['events_removed']} events and {r['hit_rows_removed']} hit rows removed / "
                f"活动 {r['campaign_id']} 已汇总"
            )

    emit(data, as_json, human)


def register(main: click.Group) -> None:
    main.add_command(events_group)
