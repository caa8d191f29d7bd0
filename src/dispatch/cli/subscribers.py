"""`dispatch subscribers …`: add, show, list, remove, import, export, suppress, unsuppress."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.cli.lists import cli_session
from dispatch.db import get_engine, session_scope
from dispatch.i18n import Catalog
from dispatch.models.subscriber import (
    SUBSCRIBER_STATUSES,
    SUBSCRIPTION_STATUSES,
    Subscriber,
    Subscription,
)
from dispatch.subscribers import audit_rows, service
from dispatch.subscribers.csv_export import count_rows, export_csv
from dispatch.subscribers.csv_import import (
    CsvImportError,
    ImportAborted,
    ImportResult,
    import_csv,
)
from dispatch.subscribers.views import subscriber_view
from dispatch.vocabulary import AuditAction, AuditTarget, EventKind

MESSAGES = Catalog(
    {
        "added": ("已添加订阅者 #{id} {address}", "added subscriber #{id} {address}"),
        "removed": ("已删除订阅者 #{id} {address}", "removed subscriber #{id} {address}"),
        "none": ("没有符合条件的订阅者", "no matching subscribers"),
        "bad_attr": (
            "属性须写成 key=value，而非 {value!r}",
            "an attribute must be key=value, not {value!r}",
        ),
        "suppressed": ("已屏蔽 {address}（{reason}）", "suppressed {address} ({reason})"),
        "unsuppressed": ("已解除屏蔽 {address}", "lifted the suppression of {address}"),
        "not_suppressed": ("{address} 不在屏蔽名单中", "{address} was not suppressed"),
        "exported": ("已导出 {n} 行到 {path}", "exported {n} rows to {path}"),
        "exporting": ("正在导出", "exporting"),
        "json_needs_out": (
            "--json 需与 --out 同用（否则 CSV 输出到标准输出）",
            "--json needs --out (without it the CSV goes to stdout)",
        ),
        "no_merges": (
            "没有合并过的重复地址",
            "no duplicate addresses were merged",
        ),
        "merge": (
            "{at}：{table} 保留 #{kept}，合并 {merged}：{addresses}",
            "{at}: {table} kept #{kept}, merged {merged}: {addresses}",
        ),
        "problem": ("第 {line} 行：{reason}", "line {line}: {reason}"),
        "more_problems": (
            "……另有 {n} 行问题（用 --json 查看全部）",
            "… {n} more problem rows (see --json)",
        ),
    }
)
PROBLEMS_SHOWN = 20


def subscriber_info(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    return subscriber_view(subscriber)


def _with_lists(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    data = subscriber_info(session, subscriber)
    data["lists"] = [
        {
            "slug": m.slug,
            "status": s.status,
            "confirmed_at": s.confirmed_at,
            "unsubscribed_at": s.unsubscribed_at,
        }
        for m, s in service.subscriptions_of(session, subscriber.id)
    ]
    data["suppressed"] = service.is_suppressed(
        session, email=subscriber.email, openid=subscriber.openid
    )
    return data


def _parse_attributes(values: tuple[str, ...]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            fail(MESSAGES.both("bad_attr", value=item))
        attributes[key.strip()] = value.strip()
    return attributes


def _address_kwargs(address: str) -> dict[str, str]:
    """An administrator types an email or an openid; '@' tells them apart."""
    return {"email": address} if "@" in address else {"openid": address}


@click.group("subscribers")
def subscribers_group() -> None:
    """订阅者、CSV 导入导出与屏蔽 / Subscribers, CSV import/export, suppression."""


@subscribers_group.command("add")
@click.argument("email", required=False, default="")
@click.option("--openid", default="", help="WeChat openid / 微信 openid")
@click.option("--name", default="", help="Name / 姓名")
@click.option("--locale", default="zh-CN", show_default=True, help="zh-CN or en / 语言")
@click.option(
    "--attr",
    "attrs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Attribute (repeatable) / 自定义属性",
)
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    metavar="SLUG",
    help="Subscribe to list (repeatable) / 订阅列表",
)
@click.option(
    "--resubscribe", is_flag=True, help="Allow an address that unsubscribed / 允许重新订阅已退订者"
)
@json_option
def add_cmd(
    email: str,
    openid: str,
    name: str,
    locale: str,
    attrs: tuple[str, ...],
    list_slugs: tuple[str, ...],
    resubscribe: bool,
    as_json: bool,
) -> None:
    """添加订阅者 / Add a subscriber.

    EMAIL 和/或 --openid，可用 --list 同时订阅列表。 / EMAIL and/or --openid; --list subscribes at
    once.
    """
    settings = settings_or_exit()
    attributes = _parse_attributes(attrs)
    with cli_session() as session:
        lists = service.get_lists(session, list_slugs)
        subscriber = service.add_subscriber(
            session,
            email=email or None,
            openid=openid or None,
            name=name,
            locale=locale,
            attributes=attributes,
        )
        for mailing_list in lists:
            service.subscribe(
                session,
                subscriber,
                mailing_list,
                settings=settings,
                source="cli",
                resubscribe=resubscribe,
            )
        audit_rows.added(session, audit.CLI, subscriber, [m.slug for m in lists])
        data = _with_lists(session, subscriber)
    emit(
        data,
        as_json,
        lambda d: click.echo(MESSAGES.both("added", id=d["id"], address=d["email"] or d["openid"])),
    )


def _print_subscriber(d: dict[str, Any]) -> None:
    click.echo(f"#{d['id']}  {d['email'] or '-'}  {d['name']}  [{d['locale']}]  {d['status']}")
    if d.get("openid"):
        click.echo(f"  openid: {d['openid']}")
    for key, value in (d.get("attributes") or {}).items():
        click.echo(f"  {key}: {value}")
    for item in d.get("lists", []):
        click.echo(f"  list {item['slug']}: {item['status']}")
    if d.get("suppressed"):
        click.echo("  已屏蔽 / suppressed")


@subscribers_group.command("show")
@click.argument("ref")
@json_option
def show_cmd(ref: str, as_json: bool) -> None:
    """查看订阅者（id、邮箱或 openid） / Show a subscriber (id, email or openid)."""
    with cli_session() as session:
        data = _with_lists(session, service.get_subscriber(session, ref))
    emit(data, as_json, _print_subscriber)


@subscribers_group.command("list")
@click.option(
    "--list", "list_slug", default=None, metavar="SLUG", help="Only members of this list / 仅此列表"
)
@click.option(
    "--status", default=None, help="Subscription status with --list, else subscriber status / 状态"
)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
@click.option("--offset", default=0, type=click.IntRange(0))
@json_option
def list_cmd(
    list_slug: str | None, status: str | None, limit: int, offset: int, as_json: bool
) -> None:
    """列出订阅者 / List subscribers."""
    allowed = SUBSCRIPTION_STATUSES if list_slug else SUBSCRIBER_STATUSES
    if status and status not in allowed:
        fail(service.MESSAGES.both("bad_status", value=status, allowed=", ".join(allowed)))
    with cli_session() as session:
        list_id = service.get_list(session, list_slug).id if list_slug else None
        rows = service.list_subscribers(
            session, list_id=list_id, status=status, limit=limit, offset=offset
        )
        data = []
        for subscriber, subscription in rows:
            item = subscriber_info(session, subscriber)
            if isinstance(subscription, Subscription):
                item["subscription"] = subscription.status
            data.append(item)

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo(MESSAGES.both("none"))
        for d in items:
            extra = f"  ({d['subscription']})" if "subscription" in d else ""
            click.echo(
                f"#{d['id']}  {d['email'] or d['openid']}  {d['name']}  [{d['locale']}]  "
                f"{d['status']}{extra}"
            )

    emit(data, as_json, human)


@subscribers_group.command("remove")
@click.argument("ref")
@json_option
def remove_cmd(ref: str, as_json: bool) -> None:
    """删除订阅者 / Delete a subscriber.

    订阅关系一并删除，屏蔽记录保留。 / Their subscriptions go too; suppressions stay.
    """
    with cli_session() as session:
        subscriber = service.get_subscriber(session, ref)
        data = {"id": subscriber.id, "email": subscriber.email, "openid": subscriber.openid}
        service.remove_subscriber(session, subscriber)
        audit_rows.deleted(session, audit.CLI, data["id"])
    emit(
        data,
        as_json,
        lambda d: click.echo(
            MESSAGES.both("removed", id=d["id"], address=d["email"] or d["openid"])
        ),
    )


@subscribers_group.command("subscribe")
@click.argument("ref")
@click.option(
    "--list",
    "list_slugs",
    multiple=True,
    required=True,
    metavar="SLUG",
    help="List (repeatable) / 列表",
)
@click.option(
    "--resubscribe", is_flag=True, help="Allow an address that unsubscribed / 允许重新订阅已退订者"
)
@json_option
def subscribe_cmd(ref: str, list_slugs: tuple[str, ...], resubscribe: bool, as_json: bool) -> None:
    """订阅列表 / Subscribe someone (id, email or openid) to lists.

    双重确认的列表会发送确认邮件。 / Double opt-in lists send a confirmation email.
    """
    settings = settings_or_exit()
    with cli_session() as session:
        subscriber = service.get_subscriber(session, ref)
        lists = service.get_lists(session, list_slugs)
        for mailing_list in lists:
            service.subscribe(
                session,
                subscriber,
                mailing_list,
                settings=settings,
                source="cli",
                resubscribe=resubscribe,
            )
        after = {"lists": [m.slug for m in lists]}
        audit.record(
            session,
            audit.CLI,
            AuditAction.SUBSCRIBE,
            AuditTarget.SUBSCRIBER,
            subscriber.id,
            after=after,
        )
        data = _with_lists(session, subscriber)
    emit(data, as_json, _print_subscriber)


@subscribers_group.command("unsubscribe")
@click.argument("ref")
@click.option(
    "--list",
    "list_slug",
    default=None,
    metavar="SLUG",
    help="Only this list; default all / 仅此列表，默认全部",
)
@json_option
def unsubscribe_cmd(ref: str, list_slug: str | None, as_json: bool) -> None:
    """退订 / Unsubscribe someone from one list or from everything."""
    with cli_session() as session:
        subscriber = service.get_subscriber(session, ref)
        list_id = service.get_list(session, list_slug).id if list_slug else None
        changed = service.unsubscribe(
            session, subscriber.id, list_id, source="cli", channel="email"
        )
        if changed:
            audit_rows.unsubscribed(session, audit.CLI, subscriber.id, list_slug)
        data = {**_with_lists(session, subscriber), "changed": changed}
    emit(data, as_json, _print_subscriber)


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--list", "list_slug", required=True, metavar="SLUG", help="Target list / 导入到此列表"
)
@click.option("--dry-run", is_flag=True, help="Check and count, write nothing / 只检查不写入")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Bring back unsubscribed and suppressed addresses / 恢复已退订和已屏蔽的地址",
)
@click.option(
    "--start-line", default=1, type=click.IntRange(1), help="Resume from this line / 从此行继续"
)
@click.option(
    "--confirmed",
    is_flag=True,
    help="Consent was collected elsewhere (needed for double opt-in lists; recorded on each "
    "subscription) / 已在别处取得同意（双重确认列表必需，逐条记录）",
)
@click.option(
    "--send-confirmations",
    is_flag=True,
    help="Double opt-in list: leave people unconfirmed and email each a confirmation "
    "(a throttled confirmation campaign the workers send) / "
    "双重确认列表：先逐一发送确认邮件（确认邮件活动，工作进程限速发送）",
)
@json_option
def import_cmd(
    file: Path,
    list_slug: str,
    dry_run: bool,
    resubscribe: bool,
    start_line: int,
    as_json: bool,
    confirmed: bool = False,
    send_confirmations: bool = False,
) -> None:
    """导入 CSV / Import subscribers from a CSV file.

    编码 UTF-8（可带 BOM）或 GB18030；必须有表头：email, name, locale, openid；lists 列可列出
    更多列表（以 ; 分隔）；其余列存为属性。
    Encoding UTF-8 (BOM or not) or GB18030; a header row is required: email, name, locale,
    openid; a lists column names more lists (slugs separated by ;); other columns are kept as
    attributes.
    """
    settings = settings_or_exit()
    engine = get_engine(settings)
    show_bar = sys.stdout.isatty() and not as_json
    try:
        if show_bar:
            from rich.progress import Progress

            total = file.read_bytes().count(b"\n") + 1
            with Progress(transient=True) as bar:
                task = bar.add_task(f"导入 / importing {file.name}", total=total)
                result = import_csv(
                    engine,
                    file,
                    list_slug,
                    dry_run=dry_run,
                    resubscribe=resubscribe,
                    start_line=start_line,
                    progress=lambda line: bar.update(task, completed=line),
                    confirmed=confirmed,
                    send_confirmations=send_confirmations,
                )
        else:
            result = import_csv(
                engine,
                file,
                list_slug,
                dry_run=dry_run,
                resubscribe=resubscribe,
                start_line=start_line,
                confirmed=confirmed,
                send_confirmations=send_confirmations,
            )
        if result.awaiting_confirmation:
            from dispatch.cli.campaigns import _queue
            from dispatch.subscribers.import_confirmations import create_confirmation_campaign

            campaign = create_confirmation_campaign(
                engine,
                settings,
                service_list_id(engine, list_slug),
                result.awaiting_confirmation,
                source=f"cli-import:{file.name}",
                queue=_queue(),
            )
            if campaign is not None:
                click.echo(
                    f"确认邮件活动 #{campaign.id}：{campaign.total} 封已排队，由工作进程限速发送 / "
                    f"confirmation campaign #{campaign.id}: {campaign.total} emails queued, "
                    "sent by the workers (throttled)",
                    err=as_json,
                )
    except (CsvImportError, SQLAlchemyError) as exc:
        fail(str(exc).strip().splitlines()[0])
        return
    except ImportAborted as exc:
        _audit_import(engine, list_slug, exc.result, exc)  # the chunks before it are stored
        if as_json:
            payload = {**exc.result.as_dict(), "error": str(exc), "resume_line": exc.resume_line}
            click.echo(json.dumps(payload, ensure_ascii=False, indent=2))
        else:
            click.echo(exc.result.summary())
        fail(str(exc))
        return

    _audit_import(engine, list_slug, result)

    def human(_: Any) -> None:
        for problem in result.problems[:PROBLEMS_SHOWN]:
            reason = problem.reason + (f": {problem.detail}" if problem.detail else "")
            click.echo(f"{file}:{problem.line}: {reason}", err=True)
        if len(result.problems) > PROBLEMS_SHOWN:
            click.echo(
                MESSAGES.both("more_problems", n=len(result.problems) - PROBLEMS_SHOWN), err=True
            )
        click.echo(result.summary())

    emit(result.as_dict(), as_json, human)


def _audit_import(
    engine: Engine, slug: str, result: ImportResult, aborted: ImportAborted | None = None
) -> None:
    """The import's audit row once its chunks committed (each in its own transaction); a dry
    run changed nothing: no row."""
    if result.dry_run:
        return
    after = result.audit_row(aborted)
    with session_scope(engine) as session:
        audit.record(session, audit.CLI, AuditAction.IMPORT, AuditTarget.LIST, slug, after=after)


@subscribers_group.command("export")
@click.option(
    "--list", "list_slug", required=True, metavar="SLUG", help="List to export / 要导出的列表"
)
@click.option(
    "--status",
    "statuses",
    multiple=True,
    type=click.Choice(SUBSCRIPTION_STATUSES),
    help="Only these subscription statuses (repeatable) / 仅这些状态",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="File (UTF-8 with BOM, for Excel); default stdout / 输出文件",
)
@click.option(
    "--all",
    "include_all",
    is_flag=True,
    help="Also unsubscribed and suppressed people / 包括已退订和已屏蔽的人",
)
@json_option
def export_cmd(
    list_slug: str,
    statuses: tuple[str, ...],
    out: Path | None,
    as_json: bool,
    include_all: bool = False,
) -> None:
    """导出列表为 CSV / Export a list as CSV.

    列与导入相同，可再导入；文件为带 BOM 的 UTF-8（Excel 可直接打开），标准输出不带 BOM。
    Same columns as the import reads; files are UTF-8 with BOM (for Excel), stdout has none.
    """
    if as_json and out is None:
        fail(MESSAGES.both("json_needs_out"))
    with cli_session() as session:
        if out is None:
            _audit_export(session, list_slug, statuses, include_all, "-")
            export_csv(session, list_slug, sys.stdout, statuses=statuses, include_all=include_all)
            return
        service.get_list(session, list_slug)  # fail before creating the file
        total = count_rows(session, list_slug, statuses=statuses, include_all=include_all)
        tmp = out.with_name(out.name + ".part")
        try:
            with (
                tmp.open("w", encoding="utf-8-sig", newline="") as f,
                click.progressbar(
                    length=total, label=MESSAGES.both("exporting"), file=sys.stderr
                ) as bar,
            ):
                n = export_csv(
                    session,
                    list_slug,
                    f,
                    statuses=statuses,
                    include_all=include_all,
                    progress=bar.update,
                )
            tmp.replace(out)
        finally:
            tmp.unlink(missing_ok=True)
        _audit_export(session, list_slug, statuses, include_all, out.name)
    emit(
        {"list": list_slug, "rows": n, "file": str(out), "statuses": list(statuses)},
        as_json,
        lambda d: click.echo(MESSAGES.both("exported", n=n, path=out), err=True),
    )


def _audit_export(
    session: Session, slug: str, statuses: tuple[str, ...], include_all: bool, file: str
) -> None:
    after = {"statuses": list(statuses), "all": include_all, "file": file}
    audit.record(session, audit.CLI, AuditAction.EXPORT, AuditTarget.LIST, slug, after=after)


@subscribers_group.command("suppress")
@click.argument("address")
@click.option(
    "--reason",
    type=click.Choice(["manual", "bounced", "complained", "blocklisted"]),
    default="manual",
    show_default=True,
    help="Why / 原因",
)
@json_option
def suppress_cmd(address: str, reason: str, as_json: bool) -> None:
    """屏蔽邮箱或 openid / Block an email or openid from every send."""
    with cli_session() as session:
        suppression = service.suppress(
            session, **_address_kwargs(address), reason=reason, source="cli"
        )
        data = {
            "email": suppression.email,
            "openid": suppression.openid,
            "reason": suppression.reason,
            "source": suppression.source,
            "created_at": suppression.created_at,
        }
        target = suppression.email or suppression.openid
        after = {"reason": suppression.reason}
        audit.record(
            session, audit.CLI, AuditAction.SUPPRESS, AuditTarget.SUPPRESSION, target, after=after
        )
    emit(
        data,
        as_json,
        lambda d: click.echo(MESSAGES.both("suppressed", address=address, reason=d["reason"])),
    )


@subscribers_group.command("unsuppress")
@click.argument("address")
@json_option
def unsuppress_cmd(address: str, as_json: bool) -> None:
    """解除屏蔽 / Lift a suppression."""
    with cli_session() as session:
        removed = service.unsuppress(session, **_address_kwargs(address))
        if removed:
            target = address.strip()
            audit.record(
                session, audit.CLI, AuditAction.UNSUPPRESS, AuditTarget.SUPPRESSION, target
            )
    emit(
        {"address": address, "removed": removed},
        as_json,
        lambda d: click.echo(
            MESSAGES.both("unsuppressed" if removed else "not_suppressed", address=address)
        ),
    )


@subscribers_group.command("merges")
@json_option
def merges_cmd(as_json: bool) -> None:
    """列出因大小写不同而合并的重复地址 / List duplicate addresses merged by canonical email."""
    from sqlalchemy import select

    from dispatch.models import Event

    with cli_session() as session:
        rows = session.scalars(
            select(Event).where(Event.kind == EventKind.MERGED).order_by(Event.id)
        )
        data = [{"at": e.occurred_at, **(e.data or {})} for e in rows]

    def human(items: list[dict[str, Any]]) -> None:
        if not items:
            click.echo(MESSAGES.both("no_merges"))
        for d in items:
            click.echo(
                MESSAGES.both(
                    "merge",
                    at=d["at"].isoformat(timespec="seconds"),
                    table=d.get("table", ""),
                    kept=d.get("kept"),
                    merged=", ".join(f"#{i}" for i in d.get("merged", [])),
                    addresses=", ".join(d.get("addresses", [])),
                )
            )

    emit(data, as_json, human)


def register(main: click.Group) -> None:
    main.add_command(subscribers_group)


def service_list_id(engine, slug: str) -> int:
    from sqlalchemy.orm import Session as _Session

    with _Session(engine) as session:
        return service.get_list(session, slug).id
