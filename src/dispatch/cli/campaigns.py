"""`dispatch send`, `dispatch campaigns …` and `dispatch worker`: campaigns from the terminal.

The commands only call dispatch.delivery.campaigns (the same service the web API uses) and
put batch ids on the queue; the workers do the sending.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.config import ConfigError
from dispatch.db import get_engine
from dispatch.delivery import campaigns as service
from dispatch.i18n import Catalog
from dispatch.models.delivery import CHANNEL_KINDS
from dispatch.vocabulary import CAMPAIGN_FINAL, AuditAction, AuditTarget, CampaignStatus, Channel

MESSAGES = Catalog(
    {
        "both_no_test": (
            "测试发送只能选一个渠道（--channel email 或 wechat）",
            "a test send goes to one channel (--channel email or wechat)",
        ),
        "no_issue": (
            "找不到期刊 {ref!r}（既不是已存储的 slug，也不是源文件夹）",
            "no issue {ref!r} (neither a stored slug nor a source folder)",
        ),
        "need_lists": (
            "请用 --lists 指定列表，或用 --test 指定测试地址",
            "give --lists, or --test addresses for a test send",
        ),
        "created": (
            "活动 #{id} 已创建：{total} 位收件人，{batches} 个批次，已排队",
            "campaign #{id} created: {total} recipients in {batches} batches, queued",
        ),
        "scheduled": ("活动 #{id} 已定时于 {at}", "campaign #{id} scheduled for {at}"),
        "exists": (
            "相同的发送已存在：活动 #{id}（状态 {status}），不会重复发送；"
            "要发给之后加入列表的人，加上 --include-new",
            "the same send exists already: campaign #{id} (status {status}); nothing more is "
            "sent. To reach people added to its lists since, add --include-new",
        ),
        "included": (
            "活动 #{id}：新加入列表的 {added} 人已排队（{batches} 个批次），已收到的人不会重复收到",
            "campaign #{id}: {added} people added to its lists since are queued ({batches} "
            "batches); nobody already reached gets it twice",
        ),
        "none_new": (
            "活动 #{id}：没有尚未送达的新成员，没有发送任何内容",
            "campaign #{id}: nobody new to reach; nothing sent",
        ),
        "rejected": (
            "不发送给 {address}：{reason}",
            "not sent to {address}: {reason}",
        ),
        "test_created": (
            "测试发送 #{id}：{total} 个地址，已排队",
            "test send #{id}: {total} addresses, queued",
        ),
        "worker_hint": (
            "由 worker 投递：dispatch worker（或 celery -A worker worker）",
            "workers deliver it: dispatch worker (or celery -A worker worker)",
        ),
        "bad_time": (
            "时间 {value!r} 无效：请用 ISO 8601，例如 2026-03-01T09:00+08:00",
            "invalid time {value!r}: use ISO 8601, e.g. 2026-03-01T09:00+08:00",
        ),
        "paused": ("活动 #{id} 已暂停", "campaign #{id} paused"),
        "resumed": (
            "活动 #{id} 已恢复：{batches} 个批次重新排队",
            "campaign #{id} resumed: {batches} batches queued",
        ),
        "cancelled": ("活动 #{id} 已取消", "campaign #{id} cancelled"),
        "none": ("还没有活动", "no campaigns yet"),
        "db": ("数据库错误：{error}", "database error: {error}"),
        "no_celery": ("找不到 celery 命令", "the celery command is not installed"),
    }
)


STATUS_WORDS = Catalog(
    {
        "draft": ("草稿", "draft"),
        "scheduled": ("已定时", "scheduled"),
        "running": ("发送中", "running"),
        "paused": ("已暂停", "paused"),
        "finished": ("已完成", "finished"),
        "cancelled": ("已取消", "cancelled"),
        "failed": ("失败", "failed"),
    }
)


def status_word(status: str) -> str:
    """A campaign status in both languages ("发送中 / running"); unknown ones as they are."""
    return STATUS_WORDS.both(status) if status in STATUS_WORDS.messages else status


@contextmanager
def _session() -> Iterator[Session]:
    settings = settings_or_exit()
    from dispatch.subscribers.service import SubscriberError

    try:
        with Session(get_engine(settings), expire_on_commit=False) as session, session.begin():
            yield session
    except (service.CampaignError, SubscriberError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(MESSAGES.both("db", error=str(exc).strip().splitlines()[0]))


def _queue():
    from dispatch.tasks import CeleryQueue, app, configure

    configure(app, settings_or_exit())
    return CeleryQueue(app)


def _run(action, *args):
    """Call a service function that manages its own transactions, errors as one line."""
    try:
        return action(*args)
    except service.CampaignError as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(MESSAGES.both("db", error=str(exc).strip().splitlines()[0]))


def parse_time(value: str) -> datetime:
    """ISO 8601; a time without zone is this machine's local time."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError:
        raise click.BadParameter(MESSAGES.both("bad_time", value=value)) from None
    if at.tzinfo is None:
        at = at.astimezone()
    return at


def resolve_issue(session: Session, ref: str) -> int:
    """A stored issue's slug or id, or a source folder (published now)."""
    from dispatch.content.store import get_issue, publish_source

    issue = get_issue(session, ref)
    if issue is None and Path(ref).exists():
        from dispatch.content.parse import IssueSourceError

        try:
            issue = publish_source(session, ref, actor=audit.CLI)
        except IssueSourceError as exc:
            fail(str(exc))
        if issue.publish_note:
            click.echo(f"warning: {issue.publish_note}", err=True)
    if issue is None:
        fail(MESSAGES.both("no_issue", ref=ref))
    return issue.id


def _progress(campaign_id: int) -> dict[str, Any]:
    with _session() as session:
        return service.progress(session, campaign_id)


def _what(d: dict[str, Any]) -> str:
    """What a campaign sends: the issue, or an import's confirmation emails."""
    if d.get("kind") == "confirmation":
        return "确认邮件 / confirmation emails"
    return f"{d['issue_slug']} «{d['issue_title']}»"


def _print_progress(d: dict[str, Any]) -> None:
    c = d["counts"]
    test = " [test]" if d["is_test"] else ""
    lists = ", ".join(d["list_slugs"]) or "-"
    click.echo(
        f"#{d['id']}{test}  {_what(d)}  {d['channel']}  "
        f"lists / 列表: {lists}  {status_word(d['status'])}"
    )
    if d["paused_reason"]:
        click.echo(f"  reason / 原因: {d['paused_reason']}")
    if d.get("waiting_reason") and d["status"] == "running":
        click.echo(f"  waiting / 等待: {d['waiting_reason']}")
    for p in d.get("providers") or []:
        throttle = p.get("throttle") or {}
        state = throttle.get("state", "normal")
        if state == "backoff":
            state += f" {throttle.get('seconds_left')} s: {throttle.get('reason', '')[:80]}"
        elif state == "recovering":
            state += f" {throttle.get('speed', 1):.0%}"
        click.echo(
            f"  {p['provider']:<10} sent {p['sent']}  deferred {p['deferred']}  "
            f"bounced {p['bounced']}  open {p['open']}  [{state}]"
        )
    click.echo(
        f"  total {d['total']}  sent {c['sent']}  pending {c['pending']}  sending {c['sending']}  "
        f"deferred {c['deferred']}  failed {c['failed']}  bounced {c['bounced']}  skipped "
        f"{c['skipped']}  "
        f"rate {d['rate_per_second']}/s"
    )
    after = d.get("after_send")
    if after:
        n, r = after["counts"], after["rates"]
        click.echo(
            f"  after the send / 发送后: hard bounces 硬退信 {n['hard']} ({r['hard']:.2%})  "
            f"soft bounces 软退信 {n['soft']} ({r['soft']:.2%})  "
            f"complaints 投诉 {n['complaint']} ({r['complaint']:.2%})"
        )
    if d.get("reach"):
        r = d["reach"]
        ids = ", ".join(f"#{i}" for i in r["campaign_ids"])
        click.echo(
            f"  send on both channels / 双渠道发送 ({ids}): people / 人数 {r['people']}  "
            f"messages / 消息 {r['messages']}"
        )


def _wechat_options(
    mode: str | None, tag: int | None, stop_on_reprint: bool, comments: str | None
) -> dict:
    """The campaign options dispatch.wechat.account reads (checked against the account type)."""
    out: dict = {}
    if mode:
        out["wechat_mode"] = mode
    if tag is not None:
        out["wechat_tag_id"] = tag
    if stop_on_reprint:
        out["wechat_ignore_reprint"] = False
    if comments:
        out["wechat_open_comment"] = comments != "off"
        out["wechat_fans_only_comment"] = comments == "fans"
    return out


@click.command("send")
@click.argument("issue")
@click.option(
    "--lists", "lists_", default="", help="List slugs, comma separated / 列表（逗号分隔）"
)
@click.option(
    "--channel",
    type=click.Choice([*CHANNEL_KINDS, "both"]),
    default=Channel.EMAIL.value,
    show_default=True,
    help="both: one campaign per channel, each person once on their preferred channel / "
    "两个渠道：每人只按其偏好渠道收到一次",
)
@click.option("--at", "at", default=None, help="Start later (ISO 8601) / 定时发送")
@click.option("--in-group", "group", default="", hidden=True)
@click.option(
    "--test",
    "test_addresses",
    multiple=True,
    help="Test send to this address only (repeatable) / 测试发送",
)
@click.option("--no-tracking", is_flag=True, help="No open/click tracking / 不跟踪打开与点击")
@click.option(
    "--include-new",
    is_flag=True,
    help="Same send again: reach only people added to its lists since / 补发给之后加入列表的人",
)
@click.option(
    "--rate-per-second", type=float, default=0.0, help="This campaign's limit / 本活动每秒上限"
)
@click.option(
    "--rate-per-hour", type=float, default=0.0, help="This campaign's limit / 本活动每小时上限"
)
@click.option(
    "--window",
    default="",
    help="Send only between these hours, e.g. 08:00-21:00 (send_timezone) / 发送时段",
)
@click.option(
    "--spread-hours",
    type=float,
    default=0.0,
    help="Spread the send evenly over N hours / 在 N 小时内均匀发送",
)
@click.option(
    "--wechat-mode",
    type=click.Choice(["openids", "all", "tag"]),
    default=None,
    help="WeChat: openid lists (service accounts), all followers (shown in history) or one tag "
    "/ 微信群发方式",
)
@click.option("--wechat-tag", type=int, default=None, help="WeChat tag id for --wechat-mode tag")
@click.option(
    "--wechat-stop-on-reprint",
    is_flag=True,
    help="WeChat: stop the send if the originality check finds a reprint (default: go on as a "
    "reprint) / 转载时停止群发",
)
@click.option(
    "--wechat-comments",
    type=click.Choice(["off", "fans", "all"]),
    default=None,
    help="WeChat article comments: off, followers only, everyone / 留言设置",
)
@json_option
def send_cmd(
    issue: str,
    lists_: str,
    channel: str,
    at: str | None,
    test_addresses: tuple[str, ...],
    no_tracking: bool,
    include_new: bool,
    rate_per_second: float,
    rate_per_hour: float,
    as_json: bool,
    window: str = "",
    spread_hours: float = 0.0,
    group: str = "",
    wechat_mode: str | None = None,
    wechat_tag: int | None = None,
    wechat_stop_on_reprint: bool = False,
    wechat_comments: str | None = None,
) -> None:
    """Send ISSUE (stored slug or source folder) to lists / 发送期刊到列表."""
    if channel == "both":
        if test_addresses:
            fail(MESSAGES.both("both_no_test"))
        ctx = click.get_current_context()
        for one in CHANNEL_KINDS:
            ctx.invoke(
                send_cmd,
                issue=issue,
                lists_=lists_,
                channel=one,
                at=at,
                test_addresses=(),
                no_tracking=no_tracking,
                rate_per_second=rate_per_second,
                rate_per_hour=rate_per_hour,
                as_json=as_json,
                window=window,
                spread_hours=spread_hours,
                group=",".join(CHANNEL_KINDS),
            )
        return
    settings = settings_or_exit()
    slugs = [s.strip() for s in lists_.split(",") if s.strip()]
    if not slugs and not test_addresses:
        fail(MESSAGES.both("need_lists"))
    if channel == Channel.WECHAT:  # before anything is stored: a send that cannot happen
        from dispatch.wechat.client import WechatSettingsMissing, check_wechat_settings

        try:
            check_wechat_settings(settings)
        except WechatSettingsMissing as exc:
            fail(str(exc))
    when = parse_time(at) if at else None
    if when is not None and when <= datetime.now(UTC):  # already due: start now
        when = None
    options = {
        k: v
        for k, v in (("rate_per_second", rate_per_second), ("rate_per_hour", rate_per_hour))
        if v
    }
    from dispatch.delivery.windows import WindowError, check_spread, parse_window

    try:  # sending window and spreading (dispatch.delivery.windows), checked before anything
        if parse_window(window, settings.send_timezone) is not None:
            options["window"] = window.strip()
        if check_spread(spread_hours):
            options["spread_hours"] = spread_hours
    except WindowError as exc:
        fail(str(exc))
    if group:  # one campaign of a send on several channels: each person once (see recipients)
        options["channels"] = group.split(",")
    if channel == Channel.WECHAT:
        options.update(
            _wechat_options(wechat_mode, wechat_tag, wechat_stop_on_reprint, wechat_comments)
        )
        if not as_json and not test_addresses:
            from dispatch.wechat.account import limits

            for line in limits(settings):  # the account's limits, before anything is sent
                click.echo(f"note: {line}", err=True)
    warnings: list[str] = []  # deliverability.preflight: domain check and list hygiene
    with _session() as session:
        issue_id = resolve_issue(session, issue)
        if test_addresses:
            campaign = service.create_test_send(
                session,
                issue_id=issue_id,
                channel=channel,
                addresses=test_addresses,
                tracking=not no_tracking,
                options=options,
            )
            created = True
            after = {"addresses": list(test_addresses), "channel": channel}
            audit.record(
                session,
                audit.CLI,
                AuditAction.TEST_SEND,
                AuditTarget.CAMPAIGN,
                campaign.id,
                after=after,
            )
            for bad in (campaign.options or {}).get("rejected_addresses") or []:
                warnings.append(MESSAGES.both("rejected", **bad))
                if not as_json:
                    click.echo(f"warning: {warnings[-1]}", err=True)
        else:
            from dispatch.editorial.guard import check_sendable
            from dispatch.subscribers.service import get_lists

            check_sendable(session, settings, issue_id)  # approved, before anything is stored
            list_ids = [m.id for m in get_lists(session, slugs)]
            from dispatch.deliverability.preflight import preflight

            check = preflight(session, settings, channel=channel, list_ids=list_ids)
            warnings = check.warnings
            if not as_json:  # --json carries them in its output
                for warning in warnings:
                    click.echo(f"warning: {warning}", err=True)
            if check.refused:
                fail(check.refused)
            campaign, created = service.create_or_get(
                session,
                issue_id=issue_id,
                channel=channel,
                list_ids=list_ids,
                tracking=not no_tracking,
                options=options,
            )
        campaign_id, status = campaign.id, campaign.status
        if status == CampaignStatus.DRAFT and when is not None:  # new, or a draft made before
            service.schedule(session, campaign_id, when, settings=settings)
            after = {"status": CampaignStatus.SCHEDULED.value, "scheduled_at": when, **options}
            audit.record(
                session,
                audit.CLI,
                AuditAction.SCHEDULE,
                AuditTarget.CAMPAIGN,
                campaign_id,
                before={"status": status},
                after=after,
            )
    if not created and status != CampaignStatus.DRAFT and include_new:
        added, new_batches = _run(
            service.include_new, get_engine(settings), settings, campaign_id, _queue()
        )
        _audit_send(campaign_id, {"include_new": added})
        data = {**_progress(campaign_id), "added": added, "batches": len(new_batches)}
        data["created"] = False

        def told(d: dict) -> None:
            if d["added"]:
                click.echo(
                    MESSAGES.both("included", id=d["id"], added=d["added"], batches=d["batches"])
                )
            else:
                click.echo(MESSAGES.both("none_new", id=d["id"]))

        emit(data, as_json, told)
        return
    if not created and status != CampaignStatus.DRAFT:
        data = {"id": campaign_id, "status": status, "created": False}
        emit(
            data,
            as_json,
            lambda d: click.echo(MESSAGES.both("exists", id=d["id"], status=d["status"])),
        )
        return
    if when is not None:
        data = {
            "id": campaign_id,
            "status": CampaignStatus.SCHEDULED.value,
            "scheduled_at": when,
            "created": created,
            "warnings": warnings,
        }
        emit(
            data,
            as_json,
            lambda d: click.echo(
                MESSAGES.both("scheduled", id=d["id"], at=d["scheduled_at"].isoformat())
            ),
        )
        return
    batches = _run(service.start, get_engine(settings), settings, campaign_id, _queue())
    if not test_addresses:  # the test send's row was written with its campaign
        _audit_send(campaign_id, {"lists": slugs, "channel": channel})
    data = {
        **_progress(campaign_id),
        "batches": len(batches),
        "created": True,
        "warnings": warnings,
    }
    key = "test_created" if test_addresses else "created"

    from dispatch.delivery.heartbeat import missing_process_message

    with _session() as session:
        data["worker_warning"] = missing_process_message(session, settings)

    def human(d: dict) -> None:
        click.echo(MESSAGES.both(key, id=d["id"], total=d["total"], batches=d["batches"]))
        if d["worker_warning"]:
            click.echo(f"warning: {d['worker_warning']}", err=True)
        else:
            click.echo(MESSAGES.both("worker_hint"))

    emit(data, as_json, human)


def _audit_send(campaign_id: int, after: dict[str, Any]) -> None:
    """The `send` row, once the start committed (the delivery engine commits its own
    transaction, as the admin's Send button does: dispatch.web.audit_actor)."""
    with _session() as session:
        after = {**after, "status": service.get(session, campaign_id).status}
        audit.record(
            session, audit.CLI, AuditAction.SEND, AuditTarget.CAMPAIGN, campaign_id, after=after
        )


@click.group("campaigns")
def campaigns_group() -> None:
    """Campaigns: list, show, pause, resume, cancel, watch / 投递活动."""


@campaigns_group.command("list")
@click.option("--limit", type=int, default=50, show_default=True)
@json_option
def list_cmd(limit: int, as_json: bool) -> None:
    """Recent campaigns / 最近的活动."""
    with _session() as session:
        items = [service.progress(session, c.id) for c in service.list_campaigns(session, limit)]

    def human(rows: list[dict]) -> None:
        if not rows:
            click.echo(MESSAGES.both("none"))
        for d in rows:
            c = d["counts"]
            test = " [test]" if d["is_test"] else ""
            lists = ",".join(d["list_slugs"]) or "-"
            click.echo(
                f"#{d['id']}{test}  {d['issue_slug'] or _what(d)}  {d['channel']}  {lists}  "
                f"{status_word(d['status'])}  "
                f"{c['sent']}/{d['total']} sent, {c['failed'] + c['bounced']} failed/bounced"
            )

    emit(items, as_json, human)


@campaigns_group.command("show")
@click.argument("campaign_id", type=int)
@json_option
def show_cmd(campaign_id: int, as_json: bool) -> None:
    """One campaign's progress / 活动进度."""
    emit(_progress(campaign_id), as_json, _print_progress)


@campaigns_group.command("retry-failed")
@click.argument("campaign_id", type=int)
@json_option
def retry_failed_cmd(campaign_id: int, as_json: bool) -> None:
    """重试已完成活动中失败和延迟的收件人（已送达者不重发） / Retry a finished campaign's failed
    and deferred recipients (never anyone already delivered)."""
    settings = settings_or_exit()
    result = _run(service.retry_failed, get_engine(settings), settings, campaign_id, _queue())
    _audit_send(campaign_id, {"retry_failed": result["retried"], "skipped": result["skipped"]})
    emit(
        result,
        as_json,
        lambda d: click.echo(
            f"campaign #{campaign_id}: retrying 重试 {d['retried']}, "
            f"skipped (suppressed) 跳过（已屏蔽） {d['skipped']}"
        ),
    )


@campaigns_group.command("pause")
@click.argument("campaign_id", type=int)
@click.option("--reason", default="paused by operator / 操作员暂停")
@json_option
def pause_cmd(campaign_id: int, reason: str, as_json: bool) -> None:
    """Pause: workers stop at their next chunk / 暂停."""
    with _session() as session:
        service.pause(session, campaign_id, reason)
        after = {"reason": reason}
        audit.record(
            session, audit.CLI, AuditAction.PAUSE, AuditTarget.CAMPAIGN, campaign_id, after=after
        )
    emit(
        {"id": campaign_id, "status": CampaignStatus.PAUSED.value},
        as_json,
        lambda d: click.echo(MESSAGES.both("paused", id=d["id"])),
    )


@campaigns_group.command("resume")
@click.argument("campaign_id", type=int)
@json_option
def resume_cmd(campaign_id: int, as_json: bool) -> None:
    """Resume a paused campaign / 恢复."""
    settings = settings_or_exit()
    batches = _run(service.resume, get_engine(settings), settings, campaign_id, _queue())
    with _session() as session:
        audit.record(session, audit.CLI, AuditAction.RESUME, AuditTarget.CAMPAIGN, campaign_id)
    emit(
        {"id": campaign_id, "status": CampaignStatus.RUNNING.value, "batches": len(batches)},
        as_json,
        lambda d: click.echo(MESSAGES.both("resumed", id=d["id"], batches=d["batches"])),
    )


@campaigns_group.command("cancel")
@click.argument("campaign_id", type=int)
@json_option
def cancel_cmd(campaign_id: int, as_json: bool) -> None:
    """Cancel for good; unsent rows stay unsent / 取消."""
    with _session() as session:
        service.cancel(session, campaign_id)
        audit.record(session, audit.CLI, AuditAction.CANCEL, AuditTarget.CAMPAIGN, campaign_id)
    emit(
        {"id": campaign_id, "status": CampaignStatus.CANCELLED.value},
        as_json,
        lambda d: click.echo(MESSAGES.both("cancelled", id=d["id"])),
    )


TERMINAL = CAMPAIGN_FINAL


def _progress_and_warning(campaign_id: int) -> tuple[dict[str, Any], str | None]:
    """Progress, and the "no worker / no beat seen" warning when the campaign waits for one."""
    from dispatch.delivery.heartbeat import missing_process_message

    settings = settings_or_exit()
    with _session() as session:
        d = service.progress(session, campaign_id)
        warning = missing_process_message(session, settings, service.get(session, campaign_id))
    return d, warning


def _plain_line(d: dict[str, Any]) -> str:
    c = d["counts"]
    return (
        f"#{d['id']} {status_word(d['status'])}  {d['done']}/{d['total']}  sent {c['sent']} · "
        f"deferred {c['deferred']} · failed {c['failed']} · bounced {c['bounced']} · "
        f"{d['rate_per_second']}/s"
    )


WARN_EVERY = 30.0  # seconds between repeats of the same warning
PLAIN_EVERY = 10.0  # piped output: a line at least this often, and at every change


def watch(
    campaign_id: int,
    interval: float = 1.0,
    timeout: float | None = None,
    show: bool = True,
    plain: bool | None = None,
) -> dict[str, Any]:
    """Progress until the campaign ends or pauses (or `timeout` passes): a live bar on a
    terminal; piped (plain=None and stdout not a TTY), one line per change on stdout, so a log
    or `| tee` shows it. Says when no worker (or, for a due schedule, no beat) is running."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    if plain is None:
        plain = not sys.stdout.isatty()
    d, warning = _progress_and_warning(campaign_id)
    started = time.monotonic()
    state = {"warned": None, "warned_at": 0.0}

    def warn(text: str | None, echo) -> None:
        now = time.monotonic()
        if text and (text != state["warned"] or now - state["warned_at"] > WARN_EVERY):
            echo(f"warning: {text}")
            state["warned"], state["warned_at"] = text, now
        if not text:
            state["warned"] = None

    def finished(d: dict[str, Any]) -> bool:
        # a draft was never started (or its start was refused): nothing will move, say so now
        stopped = (*TERMINAL, CampaignStatus.PAUSED, CampaignStatus.DRAFT)
        if d["status"] in stopped:
            return True
        return timeout is not None and time.monotonic() - started > timeout

    if plain:
        last_line, last_at = "", 0.0
        while True:
            line = _plain_line(d)
            if show and (line != last_line or time.monotonic() - last_at > PLAIN_EVERY):
                click.echo(line)
                last_line, last_at = line, time.monotonic()
            if show:
                warn(warning, lambda text: click.echo(text, err=True))
            if finished(d):
                return d
            time.sleep(interval)
            d, warning = _progress_and_warning(campaign_id)

    columns = (
        TextColumn("#{task.fields[id]} {task.fields[status]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn(
            "sent {task.fields[sent]} · deferred {task.fields[deferred]} · failed "
            "{task.fields[failed]} · "
            "bounced {task.fields[bounced]} · {task.fields[rate]}/s"
        ),
        TimeElapsedColumn(),
    )
    console = Console(stderr=True, quiet=not show)
    with Progress(*columns, transient=False, console=console) as bar:
        task = bar.add_task(
            "campaign",
            total=max(d["total"], 1),
            id=campaign_id,
            status=d["status"],
            sent=0,
            deferred=0,
            failed=0,
            bounced=0,
            rate=0,
        )
        while True:
            c = d["counts"]
            bar.update(
                task,
                total=max(d["total"], 1),
                completed=d["done"],
                status=d["status"],
                sent=c["sent"],
                deferred=c["deferred"],
                failed=c["failed"],
                bounced=c["bounced"],
                rate=d["rate_per_second"],
            )
            warn(warning, lambda text: bar.console.print(text, markup=False, highlight=False))
            if finished(d):
                break
            time.sleep(interval)
            d, warning = _progress_and_warning(campaign_id)
    return d


@campaigns_group.command("watch")
@click.argument("campaign_id", type=int)
@click.option("--interval", type=float, default=1.0, show_default=True)
@click.option(
    "--timeout", type=float, default=None, help="Stop watching after this many seconds / 超时秒数"
)
@json_option
def watch_cmd(campaign_id: int, interval: float, timeout: float | None, as_json: bool) -> None:
    """Live progress until the campaign ends or pauses / 实时进度."""
    d = watch(campaign_id, interval, timeout=timeout, show=not as_json)
    emit(d, as_json, _print_progress)


@click.command(
    "worker", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.option(
    "--beat", is_flag=True, help="Also run the periodic sweep (celery beat) / 同时运行定时清扫"
)
@click.option("--concurrency", "-c", type=int, default=None)
@click.pass_context
def worker_cmd(ctx: click.Context, beat: bool, concurrency: int | None) -> None:
    """Run a Celery worker (celery -A dispatch.tasks worker) / 运行投递 worker."""
    settings = settings_or_exit()
    celery = shutil.which("celery") or str(Path(sys.executable).with_name("celery"))
    if not Path(celery).exists():
        fail(MESSAGES.both("no_celery"))
    from dispatch.delivery.providers import ProviderTableError
    from dispatch.delivery.relays import check_sending_settings

    try:  # a bad relay or provider table stops here, with the setting or file:line named
        check_sending_settings(settings)
    except (ConfigError, ProviderTableError) as exc:
        fail(str(exc))
    if settings.is_embedded_db:  # migrate once here, not racing in every pool child
        get_engine(settings)
    args = [celery, "-A", "dispatch.tasks", "worker", "-Q", settings.celery_queue, "-l", "INFO"]
    if beat:
        args += ["-B", "-s", str((settings.data_dir / "celerybeat-schedule").resolve())]
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if concurrency:
        args += ["-c", str(concurrency)]
    args += list(ctx.args)
    os.execv(celery, args)


def register(main: click.Group) -> None:
    """Add this module's commands to the main group."""
    main.add_command(send_cmd)
    main.add_command(campaigns_group)
    main.add_command(worker_cmd)
