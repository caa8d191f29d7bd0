"""`dispatch bounces …`: serve (SMTP/LMTP intake), ingest (files), poll (the mailbox), show."""

from __future__ import annotations

import json
import mailbox
import signal
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import click
from sqlalchemy.orm import Session

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.db import get_engine
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "no_path": ("找不到 {path}", "no such file or folder: {path}"),
        "not_mail": ("{path} 不是 .eml/.mbox 文件", "{path} is not an .eml or .mbox file"),
        "serving": (
            "退信接收服务监听 {proto}://{host}:{port}（退信域 {domain}），Ctrl-C 停止",
            "bounce intake listening on {proto}://{host}:{port} (bounce domain {domain}); Ctrl-C "
            "stops",
        ),
        "no_bounce_address": (
            "未设置 bounce_address：将接收任意收件人",
            "bounce_address is not set: any recipient is accepted",
        ),
        "no_mailbox": ("未设置 bounce_mailbox_url", "bounce_mailbox_url is not set"),
        "no_bounce": ("退信 #{id} 不存在", "no bounce #{id}"),
        "summary": (
            "{n} 封：{kinds}；未匹配投递 {unmatched}",
            "{n} messages: {kinds}; no matching delivery {unmatched}",
        ),
    }
)

KIND_WORDS = {
    "hard": "硬退信 / hard",
    "soft": "软退信 / soft",
    "complaint": "投诉 / complaint",
    "auto_reply": "自动回复 / auto-reply",
    "unknown": "未识别 / unknown",
}


@click.group("bounces")
def bounces_group() -> None:
    """发送后的退信与投诉 / Bounces and complaints that arrive after the send."""


def _messages(paths: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    """(label, raw bytes) of every message in .eml files, .mbox files and folders of them."""
    for name in paths:
        path = Path(name)
        if not path.exists():
            fail(MESSAGES.both("no_path", path=name))
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if file.suffix.lower() == ".mbox" or file.name.lower() == "mbox":
                box = mailbox.mbox(str(file), create=False)
                try:
                    for index, key in enumerate(box.iterkeys()):
                        yield f"{file}#{index + 1}", box.get_bytes(key)
                finally:
                    box.close()
            elif file.suffix.lower() in (".eml", ".msg", ".txt") or path == file:
                yield str(file), file.read_bytes()


@bounces_group.command("ingest")
@click.argument("paths", nargs=-1, required=True)
@click.option("--dry-run", is_flag=True, help="Parse only, record nothing / 只解析，不记录")
@json_option
def ingest_cmd(paths: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """读取 .eml / .mbox 文件或文件夹中的退信 / Process bounce files (.eml, .mbox, folders).

    --json 每封一行 JSON / one JSON object per message.
    """
    from dispatch.bounces.record import process_message

    settings = settings_or_exit()
    engine = get_engine(settings)
    kinds: dict[str, int] = {}
    unmatched = 0
    total = 0
    for label, raw in _messages(paths):
        with Session(bind=engine) as session:
            recorded = process_message(session, settings, raw, source="file", dry_run=dry_run)
            if not dry_run:
                session.commit()
        total += 1
        kinds[recorded.kind] = kinds.get(recorded.kind, 0) + 1
        unmatched += recorded.delivery_id is None
        row = {"file": label, **recorded.as_dict()}
        if as_json:
            click.echo(json.dumps(row, ensure_ascii=False))
        else:
            click.echo(
                f"{label}: {KIND_WORDS[recorded.kind]}  {recorded.recipient or '-'}  "
                f"{recorded.status or '-'}  delivery {recorded.delivery_id or '-'}"
                + (f"  ({recorded.reason})" if recorded.reason else "")
            )
    if not as_json:
        click.echo(
            MESSAGES.both(
                "summary",
                n=total,
                kinds=", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "-",
                unmatched=unmatched,
            )
        )


@bounces_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Listen address / 监听地址")
@click.option("--port", default=2525, show_default=True, type=int, help="Port / 端口")
@click.option("--lmtp", is_flag=True, help="Speak LMTP instead of SMTP / 使用 LMTP")
def serve_cmd(host: str, port: int, lmtp: bool) -> None:
    """本地 MTA 投递退信域邮件的 SMTP/LMTP 入口 / SMTP (or LMTP) endpoint for the bounce domain."""
    from dispatch.bounces.intake import BounceIntake
    from dispatch.log import configure_logging

    configure_logging()
    settings = settings_or_exit()
    intake = BounceIntake(settings, get_engine(settings), host, port, lmtp=lmtp).start()
    domain = settings.bounce_address.rpartition("@")[2]
    if not domain:
        click.echo(MESSAGES.both("no_bounce_address"), err=True)
    click.echo(
        MESSAGES.both(
            "serving", proto="lmtp" if lmtp else "smtp", host=host, port=port, domain=domain or "*"
        ),
        err=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        intake.stop()


@bounces_group.command("poll")
@json_option
def poll_cmd(as_json: bool) -> None:
    """立即读取一次退信邮箱 / Read the bounce mailbox once now (beat does it on a schedule)."""
    from dispatch.bounces.mailbox import MailboxError, poll_mailbox

    settings = settings_or_exit()
    if not settings.bounce_mailbox_url:
        fail(MESSAGES.both("no_mailbox"))
    try:
        report = poll_mailbox(get_engine(settings), settings)
    except (MailboxError, OSError) as exc:
        fail(str(exc))
    emit(report.as_dict(), as_json)


@bounces_group.command("show")
@click.argument("bounce_id", type=int)
@click.option("--raw", "show_raw", is_flag=True, help="Print the raw message / 输出原始邮件")
@json_option
def show_cmd(bounce_id: int, show_raw: bool, as_json: bool) -> None:
    """一封退信的解析结果（及原文） / One bounce as parsed (and its raw message)."""
    from dispatch.models.bounce import BounceMessage

    settings = settings_or_exit()
    with Session(bind=get_engine(settings)) as session:
        row = session.get(BounceMessage, bounce_id)
        if row is None:
            fail(MESSAGES.both("no_bounce", id=bounce_id))
        assert row is not None
        raw = zlib.decompress(row.raw).decode("utf-8", "replace") if row.raw else ""
        data = {
            c: getattr(row, c)
            for c in (
                "id",
                "source",
                "received_at",
                "kind",
                "recipient",
                "status",
                "diagnostic",
                "reporting_mta",
                "original_message_id",
                "campaign_id",
                "delivery_id",
                "subscriber_id",
                "action",
                "reason",
                "raw_size",
                "raw_truncated",
            )
        }
    if show_raw:
        data["raw"] = raw
    emit(data, as_json)


def register(main: click.Group) -> None:
    main.add_command(bounces_group)
