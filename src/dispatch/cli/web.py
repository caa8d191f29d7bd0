"""`dispatch web` (serve the HTTP app with uvicorn) and `dispatch users …` (admin logins and
API tokens). `dispatch users create --role admin` makes the first administrator."""

from __future__ import annotations

import os
import sys
from urllib.parse import urlsplit

import click
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.config import Settings, served_url, set_settings
from dispatch.db import get_engine, make_engine, upgrade
from dispatch.i18n import Catalog
from dispatch.models.web import USER_ROLES, User
from dispatch.vocabulary import AuditAction, AuditTarget

MESSAGES = Catalog(
    {
        "no_user": ("用户 {email} 不存在", "no user {email}"),
        "no_terminal": (
            "没有终端可以输入密码：请用 --password-stdin 从标准输入传入，例如 "
            "printf '%s\\n' \"$PASSWORD\" | dispatch users create --email … --password-stdin",
            "no terminal to ask for the password: pass it on standard input with "
            "--password-stdin, e.g. printf '%s\\n' \"$PASSWORD\" | dispatch users create "
            "--email … --password-stdin",
        ),
        "public_url": (
            "链接与预览图片使用 {url}",
            "links and preview images use {url}",
        ),
        "url_elsewhere": (
            "设置 public_base_url（{configured}）与本服务监听的地址（{served}）端口不同："
            "邮件中的链接和预览图片会指向那里",
            "setting public_base_url ({configured}) differs from where this server listens "
            "({served}): links in emails and preview images point there",
        ),
        "workers_elsewhere": (
            "worker 按 web_port {port} 生成邮件链接；请为它们也设置 DISPATCH_WEB_PORT={served_port}"
            "（或 DISPATCH_PUBLIC_BASE_URL）",
            "workers build email links from web_port {port}: set DISPATCH_WEB_PORT={served_port} "
            "(or DISPATCH_PUBLIC_BASE_URL) for them too",
        ),
        "empty_password": (
            "标准输入中没有密码（--password-stdin 读取第一行）",
            "no password on standard input (--password-stdin reads its first line)",
        ),
    }
)


@click.command("web")
@click.option(
    "--host", default=None, help="Interface to bind (default: setting web_host) / 监听地址"
)
@click.option("--port", type=int, default=None, help="Port (default: setting web_port) / 端口")
@click.option(
    "--workers", type=int, default=1, show_default=True, help="uvicorn worker processes / 进程数"
)
def web_cmd(host: str | None, port: int | None, workers: int) -> None:
    """Serve the web app: tracking, unsubscribe, archive, admin / 启动网页服务."""
    import uvicorn

    from dispatch.log import configure_logging

    configure_logging("INFO")  # one JSON object per line, uvicorn's own lines included
    settings = public_url_for(settings_or_exit(), host, port)
    engine = get_engine(settings)
    if not settings.is_embedded_db:
        upgrade(engine)
    if workers > 1:
        uvicorn.run(
            "dispatch.web.asgi:app",
            host=host or settings.web_host,
            port=port or settings.web_port,
            workers=workers,
            log_level="warning",
            access_log=False,
            proxy_headers=True,
            log_config=None,
        )
        return
    from dispatch.web.app import create_app

    uvicorn.run(
        create_app(settings),
        host=host or settings.web_host,
        port=port or settings.web_port,
        log_level="info",
        access_log=False,
        proxy_headers=True,
        log_config=None,
    )


def public_url_for(settings: Settings, host: str | None, port: int | None) -> Settings:
    """The settings this server runs with: an unconfigured public URL follows the host and
    port actually served; a configured one that points at another port of this machine is
    kept, with a warning (behind a proxy, a public name is expected and not warned about)."""
    served_host, served_port = host or settings.web_host, port or settings.web_port
    served = served_url(served_host, served_port)
    if settings.public_base_url_derived:
        if served_port != settings.web_port:
            click.echo(
                "warning: "
                + MESSAGES.both(
                    "workers_elsewhere", port=settings.web_port, served_port=served_port
                ),
                err=True,
            )
        settings = settings.replace(
            public_base_url=served, web_host=served_host, web_port=served_port
        )
        os.environ["DISPATCH_PUBLIC_BASE_URL"] = served  # uvicorn's worker processes too
        set_settings(settings)
    else:
        configured = urlsplit(settings.public_base_url)
        local = {"127.0.0.1", "localhost", "::1", served_host}
        default_port = 443 if configured.scheme == "https" else 80
        if configured.hostname in local and (configured.port or default_port) != served_port:
            click.echo(
                "warning: "
                + MESSAGES.both(
                    "url_elsewhere", configured=settings.public_base_url, served=served
                ),
                err=True,
            )
    click.echo(MESSAGES.both("public_url", url=settings.public_base_url), err=True)
    return settings


@click.group("users")
def users_group() -> None:
    """Admin users and API tokens / 管理用户与 API 令牌."""


def _session() -> Session:
    settings = settings_or_exit()
    engine = (
        get_engine(settings)
        if settings.is_embedded_db
        else make_engine(settings.resolved_database_url)
    )
    return Session(engine, expire_on_commit=False)


def _read_password(from_stdin: bool) -> str:
    """The new user's password: the first line of stdin with --password-stdin, else asked for
    twice on the terminal. Without a terminal (a script, CI, a container) asking would abort
    ("Password: Aborted!"), so that case says how to pass it instead."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail(MESSAGES.both("empty_password"))
        return password
    if not sys.stdin.isatty():
        fail(MESSAGES.both("no_terminal"))
    return click.prompt("Password / 密码", hide_input=True, confirmation_prompt=True)


@users_group.command("create")
@click.option("--email", required=True, help="Login email / 登录邮箱")
@click.option("--role", type=click.Choice(USER_ROLES), default="editor", show_default=True)
@click.option("--locale", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input / 从标准输入读取密码",
)
@json_option
def users_create(email: str, role: str, locale: str, password_stdin: bool, as_json: bool) -> None:
    """Create a user (the first should be an admin) / 创建用户."""
    from dispatch.web.users import UserError, create_user

    password = _read_password(password_stdin)
    with _session() as session:
        try:
            user = create_user(session, email, password, role, locale)
            after = {"email": user.email, "role": user.role}
            audit.record(
                session,
                audit.CLI,
                AuditAction.CREATE_USER,
                AuditTarget.USER,
                user.email,
                after=after,
            )
            session.commit()
        except UserError as exc:
            fail(str(exc))
        emit(
            {"id": user.id, "email": user.email, "role": user.role},
            as_json,
            lambda d: click.echo(f"created {d['role']} {d['email']} (id {d['id']}) / 已创建"),
        )


@users_group.command("token")
@click.option("--email", required=True, help="The user the token acts as / 令牌所属用户")
@click.option("--name", default="", help="A label for the token / 令牌名称")
@json_option
def users_token(email: str, name: str, as_json: bool) -> None:
    """Create an API token (printed once) / 创建 API 令牌（只显示一次）."""
    from dispatch.web.users import create_api_token, normalise_email

    with _session() as session:
        user = session.scalar(select(User).where(User.email == normalise_email(email)))
        if user is None:
            fail(MESSAGES.both("no_user", email=email))
        token = create_api_token(session, user, name)
        after = {"user": user.email, "name": name}
        audit.record(session, audit.CLI, AuditAction.CREATE_TOKEN, AuditTarget.TOKEN, after=after)
        session.commit()
    emit(
        {"email": user.email, "role": user.role, "token": token},
        as_json,
        lambda d: click.echo(d["token"]),
    )


@users_group.command("list")
@json_option
def users_list(as_json: bool) -> None:
    """List users / 列出用户."""
    with _session() as session:
        rows = [
            {
                "id": u.id,
                "email": u.email,
                "role": u.role,
                "locale": u.locale,
                "created_at": u.created_at,
            }
            for u in session.scalars(select(User).order_by(User.id))
        ]
    emit(
        rows,
        as_json,
        lambda rs: [click.echo(f"{r['id']:>4}  {r['role']:<6}  {r['email']}") for r in rs],
    )


@users_group.command("failures")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1))
@json_option
def users_failures(limit: int, as_json: bool) -> None:
    """最近失败的登录与 API 令牌 / Recent failed log-ins and API tokens (newest first)."""
    from dispatch.models.security import AuthAttempt

    with _session() as session:
        rows = [
            {
                "at": a.occurred_at,
                "kind": a.kind,
                "account": a.account,
                "client": a.client,
            }
            for a in session.scalars(
                select(AuthAttempt)
                .where(AuthAttempt.ok.is_(False))
                .order_by(AuthAttempt.id.desc())
                .limit(limit)
            )
        ]
    emit(
        rows,
        as_json,
        lambda rs: [
            click.echo(
                f"{r['at']:%Y-%m-%d %H:%M:%S}  {r['kind']:<8}  {r['client']:<15}  "
                f"{r['account'] or '-'}"
            )
            for r in rs
        ],
    )


def register(main: click.Group) -> None:
    main.add_command(web_cmd)
    main.add_command(users_group)
