"""`dispatch render SOURCE --out DIR` and `dispatch issues publish|list|show`.

Why render needs no database: an editor previews an issue from its folder before publishing;
publishing stores the validated source (nothing is stored when anything is invalid).
"""

from __future__ import annotations

from pathlib import Path

import click

from dispatch import audit
from dispatch.cli.common import emit, fail, json_option, settings_or_exit
from dispatch.content.parse import IssueSourceError, parse_issue
from dispatch.content.store import get_issue, list_issues, publish_issue
from dispatch.db import get_engine, session_scope
from dispatch.i18n import Catalog
from dispatch.render.artifacts import render_artifacts, write_artifacts
from dispatch.render.email import GMAIL_CLIP_BYTES
from dispatch.render.wechat import WechatRenderError

MESSAGES = Catalog(
    {
        "invalid": ("简报源文件有 {n} 处问题", "the issue source has {n} problem(s)"),
        "wrote": ("已写入 {path}（{size} 字节）", "wrote {path} ({size} bytes)"),
        "clip": (
            "email.html 超过 Gmail 的 102,400 字节截断上限",
            "email.html is over Gmail's 102,400-byte clipping limit",
        ),
        "published": (
            "已发布简报 {slug}（id {id}，{n} 篇文章）",
            "published issue {slug} (id {id}, {n} articles)",
        ),
        "no_issues": ("还没有已存储的简报", "no issue stored yet"),
        "not_found": ("找不到简报 {key}", "no issue {key}"),
    }
)


def _parse_or_exit(source: str):
    try:
        return parse_issue(source)
    except IssueSourceError as exc:
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        fail(MESSAGES.both("invalid", n=len(exc.problems)))
        raise  # unreachable


@click.command("render")
@click.argument("source", type=click.Path(path_type=str))
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for email.html, email.txt, wechat.json / 输出目录",
)
def render_cmd(source: str, out_dir: Path) -> None:
    """Render SOURCE (issue.md or its folder) to preview files / 渲染简报预览文件."""
    settings = settings_or_exit()
    doc = _parse_or_exit(source)
    try:
        artifacts = render_artifacts(doc, settings)
    except WechatRenderError as exc:
        fail(str(exc))
        return
    written = write_artifacts(out_dir, artifacts)
    for name, path in written.items():
        click.echo(MESSAGES.both("wrote", path=path, size=f"{len(artifacts[name]):,}"))
    if len(artifacts["email.html"]) > GMAIL_CLIP_BYTES:
        click.echo("warning: " + MESSAGES.both("clip"), err=True)


@click.group("issues")
def issues_group() -> None:
    """Stored issues / 简报."""


@issues_group.command("publish")
@click.argument("source", type=click.Path(path_type=str))
@json_option
def publish_cmd(source: str, as_json: bool) -> None:
    """Validate SOURCE and store it as published (upsert by slug) / 校验并发布简报."""
    settings = settings_or_exit()
    doc = _parse_or_exit(source)
    with session_scope(get_engine(settings)) as session:
        issue = publish_issue(session, doc, settings=settings, actor=audit.CLI)
        data = {
            "id": issue.id,
            "slug": issue.slug,
            "revision": issue.revision,
            "warning": issue.publish_note,
            "articles": len(doc.articles),
            "content_hash": issue.content_hash,
        }
    if data["warning"] and not as_json:
        click.echo(f"warning: {data['warning']}", err=True)
    emit(
        data,
        as_json,
        lambda d: click.echo(
            MESSAGES.both("published", slug=d["slug"], id=d["id"], n=d["articles"])
        ),
    )


@issues_group.command("list")
@json_option
def list_cmd(as_json: bool) -> None:
    """List stored issues / 列出简报."""
    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        rows = [
            {
                "id": i.id,
                "slug": i.slug,
                "title": i.title,
                "number": i.number,
                "period_from": i.period_from,
                "period_to": i.period_to,
                "status": i.status,
                "articles": i.summary.get("article_count", 0),
            }
            for i in list_issues(session)
        ]

    def human(items: list[dict]) -> None:
        if not items:
            click.echo(MESSAGES.both("no_issues"))
        for r in items:
            click.echo(
                f"{r['id']:>4}  {r['slug']:<10} {r['status']:<10} {r['title']} #{r['number']}"
                f"  {r['period_from']}..{r['period_to']}  ({r['articles']})"
            )

    emit(rows, as_json, human)


@issues_group.command("show")
@click.argument("key")
@json_option
def show_cmd(key: str, as_json: bool) -> None:
    """Show one stored issue's outline (by slug or id) / 查看简报目录."""
    settings = settings_or_exit()
    with session_scope(get_engine(settings)) as session:
        issue = get_issue(session, key)
        if issue is None:
            fail(MESSAGES.both("not_found", key=key))
            return
        data = {
            "id": issue.id,
            "slug": issue.slug,
            "title": issue.title,
            "status": issue.status,
            "content_hash": issue.content_hash,
            "source_path": issue.source_path,
            "summary": issue.summary,
        }

    def human(d: dict) -> None:
        click.echo(f"{d['title']} ({d['slug']}, id {d['id']}, {d['status']})")
        for section in d["summary"].get("sections", []):
            click.echo(f"  {section['title']}")
            for a in section["articles"]:
                click.echo(f"    {a['anchor']:>4} {a['title']}")

    emit(data, as_json, human)


def register(main: click.Group) -> None:
    """Add `render` and the `issues` group to the main command."""
    main.add_command(render_cmd)
    main.add_command(issues_group)


__all__ = ["register", "render_cmd", "issues_group"]
