"""`dispatch lists create|show|list|delete`: mailing lists from the command line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.db import get_engine, session_scope
from dispatch.i18n import Catalog
from dispatch.models.subscriber import MailingList
from dispatch.subscribers import audit_rows, service
from dispatch.subscribers.views import list_view

MESSAGES = Catalog(
    {
        "created": ("已创建列表 {slug}（{optin} opt-in）", "created list {slug} ({optin} opt-in)"),
        "ad_marker_on": (
            "列表 {slug}：邮件主题前加“(AD)”（网易要求营销邮件带此标记）",
            'list {slug}: subjects start with "(AD)" (NetEase\'s marker for marketing mail)',
        ),
        "ad_marker_off": (
            "列表 {slug}：邮件主题不加“(AD)”（会员简报不是广告）",
            'list {slug}: no "(AD)" before subjects (a member bulletin is not advertising)',
        ),
        "deleted": ("已删除列表 {slug}", "deleted list {slug}"),
        "none": ("还没有列表", "no lists yet"),
        "confirm_delete": (
            "删除列表 {slug} 及其全部订阅关系？",
            "Delete list {slug} and all its subscriptions?",
        ),
        "db": ("数据库错误：{error}", "database error: {error}"),
    }
)


@contextmanager
def cli_session() -> Iterator[Session]:
    """A committed-on-success session; subscriber-rule and database errors become one line."""
    settings = settings_or_exit()
    try:
        with session_scope(get_engine(settings)) as session:
            yield session
    except service.SubscriberError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(MESSAGES.both("db", error=str(exc).strip().splitlines()[0]))


def list_info(session: Session, mailing_list: MailingList) -> dict[str, Any]:
    return list_view(session, mailing_list, with_recipients=True)


@click.group("lists")
def lists_group() -> None:
    """订阅列表 / Mailing lists."""


@lists_group.command("create")
@click.argument("slug")
@click.option("--name", default="", help="Display name / 显示名称")
@click.option("--description", default="", help="Description / 说明")
@click.option(
    "--optin",
    type=click.Choice(["single", "double"]),
    default="single",
    show_default=True,
    help="Double opt-in sends a confirmation email / 双重确认会发送确认邮件",
)
@click.option(
    "--ad-marker/--no-ad-marker",
    default=False,
    show_default=True,
    help='Start subjects with "(AD)" (marketing mail to NetEase) / 主题前加“(AD)”',
)
@json_option
def create_cmd(
    slug: str, name: str, description: str, optin: str, ad_marker: bool, as_json: bool
) -> None:
    """创建列表 SLUG / Create list SLUG."""
    with cli_session() as session:
        mailing_list = service.create_list(
            session, slug, name, description=description, optin=optin
        )
        mailing_list.ad_marker = ad_marker
        audit_rows.created_list(session, audit.CLI, mailing_list)
        data = list_info(session, mailing_list)
    emit(
        data,
        as_json,
        lambda d: click.echo(MESSAGES.both("created", slug=d["slug"], optin=d["optin"])),
    )


def _print_list(data: dict[str, Any]) -> None:
    click.echo(f"{data['slug']}  {data['name']}  (id {data['id']}, {data['optin']} opt-in)")
    if data["description"]:
        click.echo(f"  {data['description']}")
    members = ", ".join(f"{k} {v}" for k, v in data["members"].items())
    recipients = ", ".join(f"{k} {v}" for k, v in data["recipients"].items())
    click.echo(f"  订阅 / members: {members}")
    click.echo(f"  可投递 / recipients: {recipients}")


@lists_group.command("set")
@click.argument("slug")
@click.option(
    "--ad-marker/--no-ad-marker",
    default=None,
    help='Start subjects with "(AD)" (marketing mail to NetEase) / 主题前加“(AD)”',
)
@json_option
def set_cmd(slug: str, ad_marker: bool | None, as_json: bool) -> None:
    """修改列表设置 / Change a list's settings."""
    with cli_session() as session:
        mailing_list = service.get_list(session, slug)
        before = audit_rows.list_fields(mailing_list)
        if ad_marker is not None:
            mailing_list.ad_marker = ad_marker
        audit_rows.changed_list(session, audit.CLI, mailing_list, before)
        data = list_info(session, mailing_list)
    key = "ad_marker_on" if data["ad_marker"] else "ad_marker_off"
    emit(data, as_json, lambda d: click.echo(MESSAGES.both(key, slug=d["slug"])))


@lists_group.command("show")
@click.argument("slug")
@json_option
def show_cmd(slug: str, as_json: bool) -> None:
    """查看列表及人数 / Show a list with member and recipient counts."""
    with cli_session() as session:
        data = list_info(session, service.get_list(session, slug))
    emit(data, as_json, _print_list)


@lists_group.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """全部列表 / All lists."""
    with cli_session() as session:
        data = [list_info(session, m) for m in service.all_lists(session)]

    def human(rows: list[dict[str, Any]]) -> None:
        if not rows:
            click.echo(MESSAGES.both("none"))
        for row in rows:
            _print_list(row)

    emit(data, as_json, human)


@lists_group.command("delete")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Do not ask / 不再确认")
@json_option
def delete_cmd(slug: str, yes: bool, as_json: bool) -> None:
    """删除列表 / Delete a list.

    订阅关系一并删除，订阅者保留。 / Its subscriptions go too; subscribers stay.
    """
    if not yes and not click.confirm(MESSAGES.both("confirm_delete", slug=slug), default=False):
        fail(MESSAGES.both("confirm_delete", slug=slug) + " → no")
    with cli_session() as session:
        audit_rows.deleting_list(session, audit.CLI, service.get_list(session, slug))
        service.delete_list(session, slug)
    emit({"deleted": slug}, as_json, lambda d: click.echo(MESSAGES.both("deleted", slug=slug)))


def register(main: click.Group) -> None:
    main.add_command(lists_group)
