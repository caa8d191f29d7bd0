"""`dispatch demo`: the whole delivery path end to end on a bare machine.

Embedded default: SQLite and the broker file under <data_dir>/demo, an in-process Celery
worker, and a local SMTP sink writing each message as an .eml file under <data_dir>/demo/outbox.
With DISPATCH_DATABASE_URL / DISPATCH_BROKER_URL / DISPATCH_SMTP_URL set, the very same steps
run against PostgreSQL, Redis and a real relay.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.config import Settings, set_settings
from dispatch.i18n import Catalog
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.vocabulary import CAMPAIGN_FINAL, CampaignStatus, Channel, SuppressionReason

MESSAGES = Catalog(
    {
        "start": ("演示目录：{dir}", "demo folder: {dir}"),
        "published": ("已发布期刊 {slug}", "published issue {slug}"),
        "people": (
            "示例订阅者：{total} 人，分属 2 个列表（1 人同时在两个列表，1 人已屏蔽）",
            "sample subscribers: {total} on 2 lists (1 on both, 1 suppressed)",
        ),
        "smtp_sink": (
            "本地 SMTP 接收器：{url}，邮件写入 {dir}",
            "local SMTP sink: {url}, messages written to {dir}",
        ),
        "smtp_relay": ("SMTP 中继：{url}", "SMTP relay: {url}"),
        "worker": (
            "进程内 Celery worker 已启动（broker：{broker}）",
            "in-process Celery worker started (broker: {broker})",
        ),
        "exists": (
            "活动 #{id} 已存在（状态 {status}），不会重复发送；用 --fresh 重新开始",
            "campaign #{id} exists already (status {status}), nothing is sent twice; use --fresh "
            "to start over",
        ),
        "summary": (
            "活动 #{id}：{status}；已发送 {sent}，跳过 {skipped}，失败 {failed}，退回 {bounced}，"
            "共 {total}",
            "campaign #{id}: {status}; sent {sent}, skipped {skipped}, failed {failed}, bounced "
            "{bounced}, of {total}",
        ),
        "outbox": (
            "邮件（.eml）位于：{dir}（{count} 封）",
            "messages (.eml) are in: {dir} ({count} files)",
        ),
        "timeout": ("演示在 {seconds} 秒内未完成", "the demo did not finish within {seconds} s"),
        "see_it": (
            "在浏览器中查看结果（演示数据在自己的目录，与之后的命令分开）：",
            "See the results in the browser (the demo keeps its data in its own folder, apart "
            "from later commands):",
        ),
        "login": (
            "然后打开 {url} ，用 {email} / {password} 登录（演示管理员）",
            "then open {url} and log in as {email} / {password} (the demo's admin)",
        ),
        "wechat_later": (
            "微信步骤：未安装微信模块，已跳过",
            "WeChat step: the WeChat module is missing, skipped",
        ),
        "wechat_failed": ("微信步骤失败：{error}", "WeChat step failed: {error}"),
        "wechat_done": (
            "微信：活动 #{campaign}（{status}），群发给 {sent} 位关注者，模拟接口 {url}",
            "WeChat: campaign #{campaign} ({status}), mass-sent to {sent} followers via the fake "
            "API at {url}",
        ),
        "wechat_ids": (
            "微信草稿 media_id：{draft}（{articles} 篇图文）；群发 msg_id：{msg_ids}",
            "WeChat draft media_id: {draft} ({articles} articles); mass-send msg_id: {msg_ids}",
        ),
    }
)

READERS = 30
PARTNERS = 8
WECHAT_FOLLOWERS = 5  # readers who also follow the Official Account (have an openid)


def demo_settings(base: Settings, fresh: bool) -> Settings:
    """The demo's own data dir; wiped first with --fresh (only when the database is embedded)."""
    folder = (base.data_dir / "demo").resolve()
    if fresh and not base.database_url and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # the demo sends the sample issue at once: nobody is there to review it (review_required
    # stays on for `dispatch web` over the demo's data, where a new send needs an approval)
    return base.replace(data_dir=folder, review_required=False)


def sample_people(session: Session) -> tuple[list[int], int]:
    """Two lists, a few dozen people, one on both lists, one suppressed. Idempotent."""
    from dispatch.subscribers import service as subscribers

    def get_or_create_list(slug: str, name: str):
        try:
            return subscribers.get_list(session, slug)
        except subscribers.SubscriberError:
            return subscribers.create_list(session, slug, name)

    readers = get_or_create_list("demo-readers", "示例读者 / Demo readers")
    partners = get_or_create_list("demo-partners", "合作单位 / Demo partners")
    people = [(f"reader{i:02d}@example.org", f"读者{i:02d}", readers) for i in range(READERS)]
    followers = {
        f"reader{i:02d}@example.org": f"oDEMO-reader-{i:02d}" for i in range(WECHAT_FOLLOWERS)
    }
    people += [
        (f"partner{i:02d}@example.com", f"Partner {i:02d}", partners) for i in range(PARTNERS)
    ]
    people.append(("reader00@example.org", "读者00", partners))  # on both lists: gets one message
    for email, name, mailing_list in people:
        sub = subscribers.find_subscriber(session, email=email) or subscribers.add_subscriber(
            session,
            email=email,
            openid=followers.get(email),
            name=name,
            locale="en" if email.startswith("partner") else "zh-CN",
        )
        if not subscribers.is_suppressed(session, email=email):
            subscribers.subscribe(session, sub, mailing_list, send_confirmation=False)
    subscribers.suppress(
        session, email="reader07@example.org", reason=SuppressionReason.BOUNCED, source="demo"
    )
    return sorted([readers.id, partners.id]), READERS + PARTNERS


def wechat_step(settings: Settings, issue_id: int, list_ids: list[int]) -> dict[str, Any] | None:
    """The WeChat part (dispatch.dev.wechat_demo): the issue to a fake WeChat API on loopback and
    mass-sent to the followers among the sample people; None when that module is missing."""
    try:
        from dispatch.dev.wechat_demo import demo_step
    except ImportError:
        return None
    return demo_step(settings, issue_id, list_ids)


def run_demo(
    base: Settings, *, fresh: bool = True, timeout: float = 300.0, echo=click.echo
) -> dict[str, Any]:
    from celery.contrib.testing.worker import start_worker

    from dispatch.content.store import publish_source
    from dispatch.db import get_engine, upgrade
    from dispatch.delivery import campaigns
    from dispatch.delivery.engine import sweep
    from dispatch.outbox import LocalOutbox
    from dispatch.tasks import CeleryQueue, app, broker_url_for, configure

    settings = demo_settings(base, fresh)
    echo(MESSAGES.both("start", dir=settings.data_dir))
    sink = None
    outbox_dir = settings.data_dir / "outbox"
    if not settings.smtp_url:
        sink = LocalOutbox(outbox_dir).start()
        settings = settings.replace(smtp_url=sink.url)
        echo(MESSAGES.both("smtp_sink", url=sink.url, dir=outbox_dir))
    else:
        from dispatch.log import scrub

        echo(MESSAGES.both("smtp_relay", url=scrub(settings.smtp_url)))
    set_settings(settings)
    engine = get_engine(settings)
    if not settings.is_embedded_db:
        upgrade(engine)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        echo(MESSAGES.both("published", slug=issue.slug))
        list_ids, people = sample_people(session)
        echo(MESSAGES.both("people", total=people))
        campaign, created = campaigns.create_or_get(
            session, issue_id=issue.id, channel=Channel.EMAIL, list_ids=list_ids
        )
    configure(app, settings)
    queue = CeleryQueue(app)
    stop = threading.Event()
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"
        ):
            echo(MESSAGES.both("worker", broker=broker_url_for(settings).split("@")[-1]))

            def beat() -> None:  # the periodic sweep, in-process (celery beat's job in production)
                while not stop.wait(2.0):
                    try:
                        sweep(engine, settings, queue)
                    except Exception:  # noqa: BLE001 - next round tries again
                        pass

            threading.Thread(target=beat, daemon=True).start()
            if created or campaign.status == CampaignStatus.DRAFT:
                campaigns.start(engine, settings, campaign.id, queue)
            else:
                echo(MESSAGES.both("exists", id=campaign.id, status=campaign.status))
            deadline = time.monotonic() + timeout
            while True:
                with Session(engine) as session:
                    progress = campaigns.progress(session, campaign.id)
                if progress["status"] in (*CAMPAIGN_FINAL, CampaignStatus.PAUSED):
                    break
                if time.monotonic() > deadline:
                    fail(MESSAGES.both("timeout", seconds=int(timeout)))
                time.sleep(0.5)
            stop.set()
        try:  # the WeChat part never spoils the email result above
            wechat = wechat_step(settings, issue.id, list_ids)
        except Exception as exc:  # noqa: BLE001
            wechat = {"error": f"{type(exc).__name__}: {exc}"}
        if wechat is None:
            echo(MESSAGES.both("wechat_later"))
        elif "error" in wechat:
            echo(MESSAGES.both("wechat_failed", error=wechat["error"]))
        else:
            echo(
                MESSAGES.both(
                    "wechat_done",
                    campaign=wechat.get("campaign_id"),
                    status=wechat.get("campaign_status"),
                    sent=(wechat.get("deliveries") or {}).get("sent", 0),
                    url=wechat.get("fake_api"),
                )
            )
            echo(
                MESSAGES.both(
                    "wechat_ids",
                    draft=wechat.get("draft_media_id"),
                    articles=wechat.get("articles"),
                    msg_ids=", ".join(str(m) for m in wechat.get("msg_ids") or []) or "-",
                )
            )
    finally:
        stop.set()
        if sink is not None:
            sink.stop()
    files = sorted(Path(outbox_dir).glob("*.eml")) if sink is not None else []
    web = demo_web_login(engine, settings, progress["id"])
    return {
        "data_dir": str(settings.data_dir),
        "database": "sqlite" if settings.is_embedded_db else "external",
        "campaign": progress,
        "outbox": str(outbox_dir) if sink is not None else None,
        "outbox_files": len(files),
        "wechat": wechat,
        "web": web,
    }


DEMO_ADMIN = "admin@demo.example.org"


def demo_web_login(engine, settings: Settings, campaign_id: int) -> dict[str, str]:
    """The one command that shows the demo's results in the web admin, and a login for it:
    the demo's admin gets a fresh random password each run (only its hash is stored)."""
    import secrets
    import shlex

    from sqlalchemy import select

    from dispatch.models.web import User
    from dispatch.web.users import create_user, hash_password

    password = secrets.token_urlsafe(12)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = session.scalar(select(User).where(User.email == DEMO_ADMIN))
        if user is None:
            create_user(session, DEMO_ADMIN, password, "admin", "zh-CN")
        else:
            user.password_hash = hash_password(password)
    command = ""
    if settings.is_embedded_db:
        command = f"DISPATCH_DATA_DIR={shlex.quote(str(settings.data_dir))} "
    command += "dispatch web"
    url = f"{settings.public_base_url.rstrip('/')}/admin/campaigns/{campaign_id}"
    return {"command": command, "url": url, "email": DEMO_ADMIN, "password": password}


@click.command("demo")
@click.option(
    "--fresh/--keep",
    default=True,
    show_default=True,
    help="Start from an empty demo folder (embedded SQLite only) / 从空目录开始",
)
@click.option("--timeout", type=float, default=300.0, show_default=True)
@json_option
def demo_cmd(fresh: bool, timeout: float, as_json: bool) -> None:
    """Run the whole delivery end to end on this machine / 在本机完整演示一次投递."""
    base = settings_or_exit()
    result = run_demo(
        base, fresh=fresh, timeout=timeout, echo=(lambda *_a, **_k: None) if as_json else click.echo
    )

    def human(d: dict) -> None:
        p = d["campaign"]
        c = p["counts"]
        click.echo(
            MESSAGES.both(
                "summary",
                id=p["id"],
                status=p["status"],
                sent=c["sent"],
                skipped=c["skipped"],
                failed=c["failed"],
                bounced=c["bounced"],
                total=p["total"],
            )
        )
        if d["outbox"]:
            click.echo(MESSAGES.both("outbox", dir=d["outbox"], count=d["outbox_files"]))
        web = d["web"]
        click.echo("")
        click.echo(MESSAGES.both("see_it"))
        click.echo(f"    {web['command']}")
        click.echo(
            MESSAGES.both("login", url=web["url"], email=web["email"], password=web["password"])
        )

    emit(result, as_json, human)


def register(main: click.Group) -> None:
    """Add this module's commands to the main group."""
    main.add_command(demo_cmd)
