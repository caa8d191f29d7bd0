"""`dispatch wechat publish|preview|status|followers sync|fake-server`: the Official Account by
hand.

Why these four: an editor publishes (and checks) the draft before a campaign, previews it on
their own phone, watches a campaign's chunks, and anyone can run the fake API locally to try
the whole flow without an account.
"""

from __future__ import annotations

import time

import click
from sqlalchemy import select

from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "not_found": ("找不到简报 {ref}", "no issue {ref}"),
        "draft": (
            "草稿 media_id {media_id}（{n} 篇文章，本次上传 {uploads} 个文件{reused}）",
            "draft media_id {media_id} ({n} articles, {uploads} uploads this time{reused})",
        ),
        "reused": ("，沿用已有草稿", ", existing draft reused"),
        "published": ("已发布：{url}", "published: {url}"),
        "preview_sent": (
            "已向 {openid} 发送预览，msg_id {msg_id}",
            "preview sent to {openid}, msg_id {msg_id}",
        ),
        "no_chunks": (
            "活动 {campaign} 还没有微信群发记录",
            "campaign {campaign} has no WeChat mass sends yet",
        ),
        "fake_running": (
            "模拟微信 API 运行中：{url}\n  app id {app_id}  app secret {secret}\n  按 Ctrl-C 停止",
            "fake WeChat API running at {url}\n  app id {app_id}  app secret {secret}\n  press "
            "Ctrl-C to stop",
        ),
        "error": ("微信接口错误 {code}：{text}", "WeChat API error {code}: {text}"),
        "preview_target": (
            "请给出 --openid 或 --wxname 之一",
            "give exactly one of --openid or --wxname",
        ),
        "account": (
            "公众号类型 {kind}，已认证：{verified}",
            "account type {kind}, verified: {verified}",
        ),
        "modes": ("可用群发方式：{modes}", "send modes it allows: {modes}"),
        "totals": (
            "微信计划 {total}，过滤后 {filtered}，成功 {sent}，失败 {errors}"
            "（阅读 分享 收藏 标题）",
            "WeChat total {total}, after filtering {filtered}, sent {sent}, errors {errors} "
            "(readers sharers favourites title)",
        ),
    }
)


def _issue_or_exit(session, key: str):
    from dispatch.content.store import get_issue

    issue = get_issue(session, key)
    if issue is None:
        fail(MESSAGES.both("not_found", ref=key))
    return issue


def _wechat_errors(fn):
    """Turn WeChat and publishing failures into one clear error line."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from dispatch.wechat.errors import WechatError, error_from

        try:
            return fn(*args, **kwargs)
        except WechatError as err:
            fail(MESSAGES.both("error", code=err.errcode, text=err.errmsg))
        except ValueError as exc:
            fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - wechatpy / transport errors
            if type(exc).__module__.startswith(("wechatpy", "requests")):
                err = error_from(exc)
                fail(MESSAGES.both("error", code=err.errcode, text=err.errmsg))
            raise

    return wrapper


@click.group("wechat")
def wechat_group() -> None:
    """WeChat Official Account: publish, preview, status, fake API / 微信公众号."""


@wechat_group.command("publish")
@click.argument("issue")
@click.option(
    "--free-publish", is_flag=True, help="Also free-publish (not pushed to followers) / 同时发布"
)
@json_option
@_wechat_errors
def publish_cmd(issue: str, free_publish: bool, as_json: bool) -> None:
    """Upload images, create the draft of ISSUE (slug or id), optionally free-publish / 创建草稿."""
    from dispatch.db import get_engine, session_scope
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.publish import publish

    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        row = _issue_or_exit(session, issue)
        result = publish(session, WechatClient(settings), settings, row, free=free_publish)
    data = {
        "issue": row.slug,
        "draft_media_id": result.draft_media_id,
        "articles": result.article_count,
        "uploads": result.uploaded_images,
        "reused": result.reused,
        "publish_id": result.publish_id,
        "article_url": result.article_url,
    }

    def human(d):
        click.echo(
            MESSAGES.both(
                "draft",
                media_id=d["draft_media_id"],
                n=d["articles"],
                uploads=d["uploads"],
                reused=MESSAGES.messages["reused"][1] if d["reused"] else "",
            )
        )
        if d["article_url"]:
            click.echo(MESSAGES.both("published", url=d["article_url"]))

    emit(data, as_json, human)


@wechat_group.command("preview")
@click.argument("issue")
@click.option(
    "--openid", default=None, help="The follower who receives the preview / 接收预览的 OpenID"
)
@click.option(
    "--wxname", default=None, help="Or a WeChat ID (微信号) that follows the account / 微信号"
)
@json_option
@_wechat_errors
def preview_cmd(issue: str, openid: str | None, wxname: str | None, as_json: bool) -> None:
    """Send ISSUE's draft as a preview to one follower, by openid or WeChat ID / 预览."""
    from dispatch.db import get_engine, session_scope
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.publish import ensure_draft

    if bool(openid) == bool(wxname):
        fail(MESSAGES.both("preview_target"))
    settings = settings_or_exit()
    client = WechatClient(settings)
    with session_scope(get_engine(settings)) as session:
        row = _issue_or_exit(session, issue)
        draft = ensure_draft(session, client, settings, row, check=True)
    answer = client.mass_preview(openid, draft.draft_media_id, wxname=wxname)
    target = openid or wxname
    data = {
        "openid": openid,
        "wxname": wxname,
        "draft_media_id": draft.draft_media_id,
        "msg_id": answer.get("msg_id"),
    }
    emit(
        data,
        as_json,
        lambda d: click.echo(MESSAGES.both("preview_sent", openid=target, msg_id=d["msg_id"])),
    )


@wechat_group.command("account")
@json_option
def account_cmd(as_json: bool) -> None:
    """What the configured account may send, and its limits / 公众号类型与限制."""
    from dispatch.wechat.account import allowed_modes, limits

    settings = settings_or_exit()
    data = {
        "account_type": settings.wechat_account_type,
        "verified": settings.wechat_verified,
        "modes": list(allowed_modes(settings)),
        "limits": limits(settings),
        "token_source": settings.wechat_token_url or settings.wechat_token_endpoint,
    }

    def human(d):
        click.echo(MESSAGES.both("account", kind=d["account_type"], verified=d["verified"]))
        click.echo(MESSAGES.both("modes", modes=", ".join(d["modes"]) or "-"))
        for line in d["limits"]:
            click.echo(line)

    emit(data, as_json, human)


@wechat_group.command("tags")
@json_option
@_wechat_errors
def tags_cmd(as_json: bool) -> None:
    """The account's follower tags (tags/get), for --wechat-mode tag / 标签."""
    from dispatch.db import get_engine, session_scope
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.followers import sync_tags

    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        from dispatch.models.wechat import WechatTag

        client = WechatClient(settings)
        sync_tags(session, client)
        rows = session.scalars(
            select(WechatTag).where(WechatTag.account == client.account).order_by(WechatTag.tag_id)
        ).all()
        data = [{"tag_id": t.tag_id, "name": t.name, "count": t.count} for t in rows]
    emit(
        data,
        as_json,
        lambda d: [click.echo(f"{t['tag_id']:>6}  {t['count']:>8}  {t['name']}") for t in d],
    )


@wechat_group.command("stats")
@click.argument("campaign", type=int)
@click.option("--pull/--no-pull", default=True, help="Fetch WeChat's article figures first / 拉取")
@json_option
@_wechat_errors
def stats_cmd(campaign: int, pull: bool, as_json: bool) -> None:
    """WeChat's numbers for CAMPAIGN: mass-send counts and article reads / 群发与阅读数据."""
    from dispatch.db import get_engine, session_scope
    from dispatch.wechat.stats import campaign_report, pull_article_stats

    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        if pull:
            from dispatch.wechat.client import WechatClient

            pull_article_stats(session, WechatClient(settings), campaign)
        data = campaign_report(session, campaign)

    def human(d):
        t = d["totals"]
        click.echo(
            MESSAGES.both(
                "totals",
                total=t["total"],
                filtered=t["filtered"],
                sent=t["sent"],
                errors=t["errors"],
            )
        )
        for a in d["articles"]:
            click.echo(f"{a['read']:>7} {a['share']:>6} {a['fav']:>6}  {a['title']}")

    emit(data, as_json, human)


@wechat_group.command("status")
@click.argument("campaign", type=int)
@click.option(
    "--poll", is_flag=True, help="Ask mass/get for chunks with no finish event yet / 主动查询"
)
@json_option
@_wechat_errors
def status_cmd(campaign: int, poll: bool, as_json: bool) -> None:
    """The mass-send chunks of CAMPAIGN and what WeChat reported / 群发状态."""
    from dispatch.db import get_engine, session_scope
    from dispatch.models.wechat import WechatMassChunk

    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        if poll:
            from dispatch.wechat.client import WechatClient
            from dispatch.wechat.mass import poll_mass_status

            poll_mass_status(session, WechatClient(settings), campaign)
        chunks = session.scalars(
            select(WechatMassChunk)
            .where(WechatMassChunk.campaign_id == campaign)
            .order_by(WechatMassChunk.batch_no, WechatMassChunk.id)
        ).all()
        data = [
            {
                "batch_no": c.batch_no,
                "clientmsgid": c.clientmsgid,
                "mode": c.mode,
                "status": c.status,
                "msg_id": c.msg_id,
                "recipients": c.recipient_count,
                "attempts": c.attempts,
                "total": c.total_count,
                "filtered": c.filter_count,
                "sent": c.sent_count,
                "errors": c.error_count,
                "errcode": c.errcode,
                "errmsg": c.errmsg,
            }
            for c in chunks
        ]

    def human(rows):
        if not rows:
            click.echo(MESSAGES.both("no_chunks", campaign=campaign))
            return
        click.echo("batch  status    msg_id        recipients  total  filtered  sent  errors  code")
        for r in rows:
            click.echo(
                f"{r['batch_no']:>5}  {r['status']:<8}  {r['msg_id'] or '-':<12}  "
                f"{r['recipients']:>10}  "
                f"{_n(r['total']):>5}  {_n(r['filtered']):>8}  {_n(r['sent']):>4}  "
                f"{_n(r['errors']):>6}  "
                f"{r['errcode'] or ''} {r['errmsg'] or ''}"
            )

    emit(data, as_json, human)


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


@wechat_group.group("followers")
def followers_group() -> None:
    """Followers of the Official Account / 公众号关注者."""


@followers_group.command("sync")
@click.option(
    "--list",
    "list_slug",
    default=None,
    help="The list followers go to (default: setting wechat_sync_list) / 目标列表",
)
@json_option
@_wechat_errors
def followers_sync_cmd(list_slug: str | None, as_json: bool) -> None:
    """Page through user/get + user/info/batchget into a list; resumes if interrupted /
    同步关注者."""
    from dispatch.db import get_engine
    from dispatch.wechat.client import WechatClient
    from dispatch.wechat.followers import MESSAGES as SYNC
    from dispatch.wechat.followers import sync_followers

    settings = settings_or_exit()
    client = WechatClient(settings)
    engine = get_engine(settings)
    if as_json:
        report = sync_followers(engine, client, settings, list_slug=list_slug)
        emit(report.as_dict(), True, lambda d: None)
        return
    bar = None
    shown = 0

    def progress(r) -> None:
        nonlocal bar, shown
        if bar is None:
            if r.resumed:
                click.echo(SYNC.both("resumed", pages=r.pages - 1), err=True)
            bar = click.progressbar(length=max(r.total, 1), label="关注者 / followers", file=None)
            bar.__enter__()
        bar.update(r.seen - shown)
        shown = r.seen

    try:
        report = sync_followers(engine, client, settings, list_slug=list_slug, progress=progress)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    click.echo(
        SYNC.both(
            "done",
            seen=report.seen,
            created=report.created,
            updated=report.updated,
            unfollowed=report.unfollowed,
        )
    )


@wechat_group.command("fake-server")
@click.option(
    "--port",
    default=None,
    type=int,
    help="Default: the port of setting wechat_api_base_url if it is local, else 8765 / 端口",
)
@click.option(
    "--callback-url", default=None, help="Post MASSSENDJOBFINISH events here / 事件回调地址"
)
@click.option("--token-expires-in", default=7200, show_default=True, type=int)
def fake_server_cmd(port: int | None, callback_url: str | None, token_expires_in: int) -> None:
    """Run the fake WeChat API on 127.0.0.1 for local trials / 运行模拟微信 API."""
    from urllib.parse import urlsplit

    from dispatch.dev.wechat_fake import FakeWechatServer

    settings = settings_or_exit()
    if port is None:  # listen where DISPATCH_WECHAT_API_BASE_URL points, so both agree
        configured = urlsplit(settings.wechat_api_base_url or "")
        local = configured.hostname in ("127.0.0.1", "localhost")
        port = configured.port if local and configured.port else 8765
    server = FakeWechatServer(port=port)
    state = server.state
    state.token_expires_in = token_expires_in
    if settings.wechat_app_id:
        state.app_id = settings.wechat_app_id
    if settings.wechat_app_secret:
        state.app_secret = settings.wechat_app_secret
    if callback_url:
        state.callback_url, state.auto_emit = callback_url, True
        state.callback_token = settings.wechat_token
        state.callback_aes_key = settings.wechat_aes_key
    server.start()
    click.echo(
        MESSAGES.both(
            "fake_running", url=server.base_url, app_id=state.app_id, secret=state.app_secret
        )
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


def register(main: click.Group) -> None:
    """Add `dispatch wechat …` to the main group."""
    main.add_command(wechat_group)
