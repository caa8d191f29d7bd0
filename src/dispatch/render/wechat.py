"""Render an issue into WeChat draft articles (at most 8 per message, each within WeChat's limits).

Why grouping: the bulletin has more articles than a WeChat message may carry, and its long
policy text does not fit one WeChat article. Articles are packed per section into WeChat
articles below the content budget; an article too long for one is split into numbered parts
(1/2, 2/2). If that still makes more than 8, sections are merged, then long articles are cut
to a lead with a visible note pointing to the web archive ("阅读原文"). Nothing is silently
truncated: when even that does not fit, rendering fails with a clear error.

Images stay local paths in the content until `to_draft_articles` swaps in the URLs that
WeChat's uploadimg returned (WeChat filters external image URLs out of article content).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup, escape

from dispatch.config import Settings
from dispatch.content.model import (
    Article,
    Block,
    Emphasis,
    FootnoteRef,
    Footnotes,
    Heading,
    Image,
    IssueDoc,
    Link,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Section,
    Sidebar,
    Strong,
    Table,
    Video,
    walk_blocks,
)
from dispatch.content.parse import inlines_to_text
from dispatch.errors import DispatchError
from dispatch.i18n import Catalog
from dispatch.render.email import lead_blocks

# Limits of WeChat's draft/add API (official docs "草稿箱 / 新建草稿", summarised in
# /work/shared/WECHAT.md "WeChat limits"):
TITLE_MAX_CHARS = 32  # draft/add: title ≤ 32 characters
AUTHOR_MAX_CHARS = 16  # draft/add: author ≤ 16 characters
DIGEST_MAX_CHARS = 128  # draft/add: digest ≤ 128 characters (empty: first 54 of the body)
CONTENT_MAX_CHARS = 20_000  # draft/add: content must be under 20,000 characters ...
CONTENT_MAX_BYTES = 1024 * 1024  # ... and under 1 MB
CONTENT_SOURCE_URL_MAX_BYTES = 1024  # draft/add: content_source_url ≤ 1 KB
MAX_ARTICLES_PER_MESSAGE = 8  # a news message (draft, mass send) holds at most 8 articles
IMAGE_MAX_BYTES = 1024 * 1024  # media/uploadimg: jpg/png under 1 MB
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")  # media/uploadimg accepts jpg and png only

# Our margins: uploaded image URLs (mmbiz.qpic.cn/…, ~130 chars) are longer than some local
# paths, so every image reserves room; the rest keeps a safety gap below the hard limit.
UPLOADED_URL_ALLOWANCE = 300
CONTENT_BUDGET_CHARS = CONTENT_MAX_CHARS - 1_500
ELLIPSIS = "…"

TEXT = Catalog(
    {
        "source": ("来源", "Source"),
        "excerpt_note": (
            "以上为节选。全文较长，请点击文末“阅读原文”在网页版阅读：",
            "This is an excerpt. Tap “Read more” at the end for the full text:",
        ),
        "continued": ("（未完，见下一篇）", "(continued in the next article)"),
        "collection": ("{section}｜{title}等{n}篇", "{section}: {title} and {more} more"),
        "digest_collection": ("本篇收录：{titles}", "In this article: {titles}"),
        "issue_no": ("{year}年第{number}期", "No. {number}, {year}"),
    }
)

FORBIDDEN_TAGS = frozenset(
    {
        "script",
        "iframe",
        "form",
        "style",
        "link",
        "object",
        "embed",
        "input",
        "button",
        "frame",
        "frameset",
        "meta",
        "base",
    }
)


class WechatRenderError(DispatchError):
    """The issue cannot become a valid WeChat message; the message says what to change."""


@dataclass(frozen=True)
class WechatArticle:
    """One article of the draft, before uploads: images are local files."""

    title: str
    author: str
    digest: str
    content: str
    content_source_url: str
    thumb_image: Path
    need_open_comment: int = 0
    only_fans_can_comment: int = 0
    images: tuple[Path, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["thumb_image"] = str(self.thumb_image)
        data["images"] = [str(p) for p in self.images]
        return data


@dataclass(frozen=True)
class _Unit:
    """An article (or one part of it) as it will appear inside a WeChat article."""

    section: Section
    article: Article
    blocks_html: tuple[str, ...]
    images: tuple[Image, ...]
    part: int = 1
    parts: int = 1
    shortened: bool = False
    show_section: bool = False
    archive_url: str = ""

    @property
    def size(self) -> int:
        return (
            sum(len(b) for b in self.blocks_html) + 600 + UPLOADED_URL_ALLOWANCE * len(self.images)
        )


def shorten(text: str, limit: int) -> str:
    """`text` if it fits, else cut to `limit` characters ending in an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + ELLIPSIS


def _images_of(blocks: Sequence[Block]) -> list[Image]:
    return [b for b in walk_blocks(tuple(blocks)) if isinstance(b, Image)]


def _first_text(blocks: Sequence[Block]) -> str:
    for b in blocks:
        if isinstance(b, Paragraph):
            return inlines_to_text(b.inlines)
    return ""


class _Renderer:
    def __init__(self, doc: IssueDoc, settings: Settings):
        self.doc = doc
        self.locale = doc.meta.locale
        base = settings.public_base_url.rstrip("/")
        self.archive = f"{base}/issues/{doc.meta.slug}"
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(settings.templates_dir)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        for name, kind in (
            ("paragraph", Paragraph),
            ("heading", Heading),
            ("image", Image),
            ("listblock", ListBlock),
            ("video", Video),
            ("sidebar", Sidebar),
            ("quote", Quote),
            ("table", Table),
            ("rule", Rule),
            ("footnotes", Footnotes),
            ("strong", Strong),
            ("emphasis", Emphasis),
            ("footnoteref", FootnoteRef),
            ("link", Link),
        ):
            env.tests[name] = lambda b, kind=kind: isinstance(b, kind)
        env.globals.update(
            T=lambda key, **kw: TEXT.get(key, self.locale, **kw),
            image_src=lambda img: str(img.path),
            meta=doc.meta,
            issue_no=TEXT.get(
                "issue_no", self.locale, year=doc.meta.period_from.year, number=doc.meta.number
            ),
        )
        self.macros: Any = env.get_template("wechat/article.html").module  # the macros

    def units(self, article: Article, section: Section, *, shortened: bool) -> list[_Unit]:
        """The article as one unit, or as parts when it exceeds the content budget."""
        blocks = lead_blocks(article) if shortened else article.blocks
        rendered = [str(self.macros.block(b)) for b in blocks]
        base = _Unit(
            section,
            article,
            (),
            (),
            shortened=shortened,
            archive_url=f"{self.archive}#{article.anchor}",
        )
        whole = _Unit(section, article, tuple(rendered), tuple(_images_of(blocks))).size
        n_parts = -(-whole // CONTENT_BUDGET_CHARS)  # ceil: parts of about equal length
        target = whole / n_parts
        groups: list[tuple[list[str], list[Image]]] = [([], [])]
        for b, html_b in zip(blocks, rendered, strict=True):
            imgs = _images_of([b])
            current = _Unit(section, article, tuple(groups[-1][0]), tuple(groups[-1][1]))
            candidate = _Unit(section, article, (*groups[-1][0], html_b), (*groups[-1][1], *imgs))
            full = candidate.size > CONTENT_BUDGET_CHARS
            balanced = len(groups) < n_parts and current.size >= target
            if groups[-1][0] and (full or balanced):
                groups.append(([], []))
            groups[-1][0].append(html_b)
            groups[-1][1].extend(imgs)
        n = len(groups)
        return [
            _Unit(
                section,
                article,
                tuple(g),
                tuple(imgs),
                part=i,
                parts=n,
                shortened=base.shortened,
                archive_url=base.archive_url,
            )
            for i, (g, imgs) in enumerate(groups, start=1)
        ]

    def all_units(self, shorten_long: bool) -> list[_Unit]:
        out: list[_Unit] = []
        for section in self.doc.sections:
            for article in section.articles:
                parts = self.units(article, section, shortened=False)
                if shorten_long and len(parts) > 1:
                    parts = self.units(article, section, shortened=True)
                out.extend(parts)
        return out

    @staticmethod
    def pack(units: list[_Unit], by_section: bool) -> list[list[_Unit]]:
        """Greedy packing of consecutive units into WeChat articles within the budget."""
        groups: list[list[_Unit]] = []
        for u in units:
            current = groups[-1] if groups else None
            fits = (
                current is not None
                and u.parts == 1
                and current[-1].parts == 1
                and sum(x.size for x in current) + u.size <= CONTENT_BUDGET_CHARS
                and (not by_section or current[-1].section is u.section)
            )
            if fits and current is not None:
                current.append(u)
            else:
                groups.append([u])
        return groups

    def content(self, group: list[_Unit]) -> str:
        body: list[str] = []
        previous_section: Section | None = None
        for u in group:
            show = u.section is not previous_section and u.part == 1
            previous_section = u.section
            unit = replace(u, show_section=show)
            body.append(str(self.macros.header(unit)))
            body.extend(u.blocks_html)
            body.append(str(self.macros.footer(unit)))
        return str(self.macros.wrap(Markup("".join(body))))

    def article(self, group: list[_Unit], index: int) -> WechatArticle:
        first = group[0]
        articles = list(dict.fromkeys(u.article for u in group))
        if len(articles) == 1:
            title = first.article.title
            if first.parts > 1:
                suffix = f"（{first.part}/{first.parts}）"
                title = shorten(title, TITLE_MAX_CHARS - len(suffix)) + suffix
            digest = (
                _first_text(first.article.blocks)
                if first.part == 1
                else (f"{first.article.title}（{first.part}/{first.parts}）")
            )
            author = first.article.author or self.doc.meta.publisher
        else:
            sections = list(dict.fromkeys(u.section.title for u in group))
            fields = {"section": "、".join(sections), "n": len(articles), "more": len(articles) - 1}
            overhead = len(TEXT.get("collection", self.locale, title="", **fields))
            lead_title = shorten(first.article.title, max(TITLE_MAX_CHARS - overhead, 8))
            title = TEXT.get("collection", self.locale, title=lead_title, **fields)
            titles = "；".join(f"{a.toc_label}{a.title}" for a in articles)
            digest = TEXT.get("digest_collection", self.locale, titles=titles)
            author = self.doc.meta.publisher
        images = tuple(dict.fromkeys(img.path for u in group for img in u.images))
        cover = self.doc.meta.cover.path if self.doc.meta.cover else None
        every = [img.path for img in self.doc.images()]
        thumb = (cover if index == 0 else None) or (images[0] if images else None) or cover
        thumb = thumb or (every[0] if every else None)
        if thumb is None:
            raise WechatRenderError(
                "WeChat articles need a cover image: add `cover:` to the issue's front matter"
                " / 微信图文需要封面图：请在头部信息中加入 cover:"
            )
        source_url = first.archive_url
        if len(source_url.encode("utf-8")) > CONTENT_SOURCE_URL_MAX_BYTES:
            source_url = self.archive
        return WechatArticle(
            title=shorten(title, TITLE_MAX_CHARS),
            author=shorten(author, AUTHOR_MAX_CHARS),
            digest=shorten(digest, DIGEST_MAX_CHARS),
            content=self.content(group),
            content_source_url=source_url,
            thumb_image=thumb,
            images=images,
        )


def check_images(doc: IssueDoc) -> None:
    """uploadimg takes jpg/png under 1 MB; say which image breaks that before any upload."""
    bad = [
        f"{img.src}: "
        f"{'not jpg/png' if img.path.suffix.lower() not in IMAGE_SUFFIXES else 'over 1 MB'}"
        for img in doc.images()
        if img.path.suffix.lower() not in IMAGE_SUFFIXES
        or img.path.stat().st_size >= IMAGE_MAX_BYTES
    ]
    if bad:
        raise WechatRenderError("images WeChat cannot take / 微信无法上传的图片: " + "; ".join(bad))


def render_wechat(doc: IssueDoc, settings: Settings) -> list[WechatArticle]:
    """The issue as ≤ 8 WeChat draft articles, every field within WeChat's limits."""
    check_images(doc)
    r = _Renderer(doc, settings)
    plans = (
        (False, True),  # full text, one WeChat article per section (long articles in parts)
        (False, False),  # full text, sections merged
        (True, True),  # long articles cut to a lead with a link to the archive
        (True, False),
    )
    for shorten_long, by_section in plans:
        groups = r.pack(r.all_units(shorten_long), by_section)
        if len(groups) <= MAX_ARTICLES_PER_MESSAGE:
            break
    else:
        raise WechatRenderError(
            f"the issue needs {len(groups)} WeChat articles, at most {MAX_ARTICLES_PER_MESSAGE} fit"
            f" one message / 本期需要 {len(groups)} 篇图文，单条消息最多 "
            f"{MAX_ARTICLES_PER_MESSAGE} 篇"
        )
    articles = [r.article(g, i) for i, g in enumerate(groups)]
    for a in articles:
        over = len(a.content) + UPLOADED_URL_ALLOWANCE * len(a.images)
        if over >= CONTENT_MAX_CHARS or len(a.content.encode("utf-8")) >= CONTENT_MAX_BYTES:
            raise WechatRenderError(
                f"WeChat article {a.title!r} is too long ({len(a.content)} characters)"
                " / 微信图文正文过长"
            )
    return articles


def to_draft_articles(
    articles: Sequence[WechatArticle],
    thumb_media_id_for: Callable[[Path], str],
    image_url_for: Callable[[Path], str],
) -> list[dict[str, Any]]:
    """The `articles` list of a draft/add request, once images are uploaded.

    `thumb_media_id_for(path)` gives a permanent thumb material id; `image_url_for(path)` the
    URL returned by media/uploadimg for an image inside the content.
    """
    out: list[dict[str, Any]] = []
    for a in articles:
        content = a.content
        for path in a.images:
            content = content.replace(
                f'src="{escape(str(path))}"', f'src="{escape(image_url_for(path))}"'
            )
        if len(content) >= CONTENT_MAX_CHARS:
            raise WechatRenderError(
                f"content of {a.title!r} grew past the limit after uploads"
                f" / 图文 {a.title!r} 在替换图片地址后超出长度上限"
            )
        out.append(
            {
                "title": a.title,
                "author": a.author,
                "digest": a.digest,
                "content": content,
                "content_source_url": a.content_source_url,
                "thumb_media_id": thumb_media_id_for(a.thumb_image),
                "need_open_comment": a.need_open_comment,
                "only_fans_can_comment": a.only_fans_can_comment,
            }
        )
    return out
