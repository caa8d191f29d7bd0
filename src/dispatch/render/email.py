"""Render an issue into an email once; fill each recipient's values in microseconds.

Why two steps: premailer (CSS inlining) costs hundreds of milliseconds, so it runs once per
issue (cached by content hash, tracking mode and base URL). Its output keeps unique markers
where per-recipient values go; the markers are cut out once into static segments, and
`RenderedEmail.personalize` only joins those segments with the recipient's escaped values.

Gmail clips HTML over 102,400 bytes (and the footer with the unsubscribe link and the open
pixel must sit before the clip), so the budget holds for the WHOLE message, measured with
worst-case tracking URLs and name: articles whose text exceeds a per-article length show a
lead and a "阅读全文 / Read more" link into the web archive, that length shrinks step by step,
and past it the last articles become title-and-link entries. An issue that still cannot fit
raises `EmailTooLarge` (publish refuses it; see `dispatch.render.check`).

Why the slot markers carry a random nonce: editor text can contain anything, including text
that looks like a marker. A marker made per rendering (`__DSLOT_<nonce>_UNSUB__`) cannot be
written in advance, so editor text is never replaced by a recipient's URL or name.
"""

from __future__ import annotations

import html
import logging
import operator
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import premailer
from markupsafe import Markup

from dispatch.branding import Branding
from dispatch.branding import css as brand_css
from dispatch.config import Settings
from dispatch.content.model import (
    Article,
    Block,
    Emphasis,
    FootnoteRef,
    Footnotes,
    Heading,
    Image,
    Inline,
    IssueDoc,
    Link,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Sidebar,
    Strong,
    Table,
    Video,
    inline_runs,
    walk_blocks,
)
from dispatch.errors import DispatchError
from dispatch.i18n import LOCALES, Catalog
from dispatch.log import get_logger
from dispatch.render.slots import RecipientSlots

log = get_logger(__name__)

GMAIL_CLIP_BYTES = (
    102_400  # Gmail hides everything past this many bytes of HTML ("[Message clipped]")
)
# Articles longer than this (characters of body text) are shown as a lead + "Read more".
ARTICLE_CHAR_BUDGETS = (3_000, 1_500, 600, 0)
LEAD_MIN_CHARS = 180  # a lead holds whole paragraphs until it has at least this much text
LEAD_MAX_BLOCKS = 4
# Size reserved per link occurrence and for the open pixel when checking the size budget:
# a signed click URL is ~100 characters; 200 leaves room for long base URLs.
TRACKED_URL_ALLOWANCE = 200
INLINE_GROWTH = 1.5  # premailer's style attributes add ~35-45% to the sample's HTML
# bytes kept free for the greeting name: 200 characters (the column's limit), each at worst
# six bytes once escaped (`&quot;`)
NAME_ALLOWANCE = 1_200

SLOT_GREETING, SLOT_UNSUB, SLOT_PIXEL = 0, 1, 2
LINK_SLOT_BASE = 3  # slot id of link i is LINK_SLOT_BASE + i
BLANK_RUNS_RE = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")

TEXT = Catalog(
    {
        "greeting": ("{name}，您好！", "Hello {name},"),
        "greeting_anon": ("您好！", "Hello,"),
        "intro": (
            "以下是本期《{title}》的主要内容。",
            "Here is what this issue of {title} covers.",
        ),
        "contents": ("本期目录", "Contents"),
        "read_more": ("阅读全文", "Read more"),
        "view_online": ("在浏览器中查看", "View in browser"),
        "source": ("来源", "Source"),
        "author": ("作者", "Author"),
        "original": ("原文链接", "Original"),
        "unsubscribe": ("退订", "Unsubscribe"),
        "preferences": ("订阅设置", "Preferences"),
        "subscribe": ("订阅", "Subscribe"),
        "why": (
            "您收到这封邮件，是因为您订阅了{publisher}的《{title}》。",
            "You receive this email because you subscribed to {title} from {publisher}.",
        ),
        "issue_no": ("{year}年第{number}期", "No. {number}, {year}"),
        "video": ("观看视频", "Watch the video"),
        "image": ("图片", "Image"),
        "lead_note": ("（以上为节选）", "(excerpt)"),
    }
)


class RenderError(DispatchError):
    """The issue cannot be rendered into a correct email; the message says why."""


class EmailTooLarge(RenderError):
    """Even with every article cut down to title and link the email exceeds the size limit."""

    def __init__(self, size: int, limit: int, articles: int):
        self.size, self.limit = size, limit
        super().__init__(
            f"the email would be {size:,} bytes with all {articles} articles as title and link, "
            f"over the {limit:,}-byte limit (Gmail clips at {GMAIL_CLIP_BYTES:,}): split the "
            f"issue / 即使每篇文章只保留标题和链接，邮件仍有 {size:,} 字节，超过 {limit:,} "
            f"字节上限，"
            "请拆分本期"
        )


@dataclass(frozen=True)
class _Markers:
    """The slot markers of one rendering: a random nonce no editor text can contain."""

    nonce: str = field(default_factory=lambda: secrets.token_hex(12))

    @property
    def pattern(self) -> re.Pattern[str]:
        n = self.nonce
        return re.compile(rf"__DSLOT_{n}_(GREETING|UNSUB|PIXEL)__|__DLINK_{n}_(\d+)__")

    def slot(self, kind: str) -> str:
        return f"__DSLOT_{self.nonce}_{kind}__"

    def link(self, index: int) -> str:
        return f"__DLINK_{self.nonce}_{index}__"


@dataclass(frozen=True)
class _Layout:
    """A rendered body cut at its slots: statics[0] slot statics[1] slot … statics[-1]."""

    statics: tuple[str, ...]
    slot_ids: tuple[int, ...]

    @classmethod
    def cut(cls, rendered: str, baked: dict[int, str], markers: _Markers, links: int) -> _Layout:
        """Split at markers; slots found in `baked` become static text right away."""
        statics: list[str] = []
        slot_ids: list[int] = []
        current: list[str] = []
        pos = 0
        seen: set[int] = set()
        for m in markers.pattern.finditer(rendered):
            current.append(rendered[pos : m.start()])
            pos = m.end()
            kind, link = m.group(1), m.group(2)
            slot = (
                LINK_SLOT_BASE + int(link)
                if link is not None
                else {"GREETING": SLOT_GREETING, "UNSUB": SLOT_UNSUB, "PIXEL": SLOT_PIXEL}[kind]
            )
            if slot >= LINK_SLOT_BASE + links:
                raise RenderError(f"link slot {slot - LINK_SLOT_BASE} names no link of the issue")
            seen.add(slot)
            if slot in baked:
                current.append(baked[slot])
                continue
            statics.append("".join(current))
            current = []
            slot_ids.append(slot)
        current.append(rendered[pos:])
        statics.append("".join(current))
        if SLOT_UNSUB not in seen:
            raise RenderError("the rendered email has no unsubscribe link (template error)")
        return cls(tuple(statics), tuple(slot_ids))

    def fill(self, values: Sequence[str]) -> str:
        parts: list[str] = [""] * (2 * len(self.statics) - 1)
        parts[0::2] = self.statics
        if self.slot_ids:
            picked = operator.itemgetter(*self.slot_ids)(values)
            parts[1::2] = picked if len(self.slot_ids) > 1 else (picked,)
        return "".join(parts)


@dataclass(frozen=True)
class RenderedEmail:
    """One issue rendered for email; `personalize` is the cheap per-recipient step."""

    subject: str
    preheader: str
    content_hash: str
    tracking: bool
    links: tuple[str, ...]
    html_layout: _Layout = field(repr=False)
    text_layout: _Layout = field(repr=False)
    greeting_html: str = field(repr=False)
    greeting_text: str = field(repr=False)
    greeting_anon_html: str = field(repr=False)
    greeting_anon_text: str = field(repr=False)
    # locale -> (html, text, anonymous html, anonymous text): the greeting in each language
    greetings: dict[str, tuple[str, str, str, str]] = field(default_factory=dict, repr=False)
    shortened: tuple[str, ...] = ()  # anchors of articles shown as a lead + "Read more"
    article_char_budget: int | None = None

    @property
    def link_count(self) -> int:
        return len(self.links)

    @property
    def html_template(self) -> str:
        """The inlined HTML with its slot markers (for inspection and size checks)."""
        names = ["__DSLOT_GREETING__", "__DSLOT_UNSUB__", "__DSLOT_PIXEL__"]
        names += [f"__DLINK_{i}__" for i in range(len(self.links))]
        return self.html_layout.fill(names)

    def personalize(self, slots: RecipientSlots) -> tuple[str, str]:
        """(html, text) for one recipient: escape their values and join prepared segments."""
        html_values, text_values = self.slot_values(slots)
        return self.html_layout.fill(html_values), self.text_layout.fill(text_values)

    def slot_values(self, slots: RecipientSlots) -> tuple[list[str], list[str]]:
        """One recipient's values for the html and text layouts' slots (indexed by slot id);
        the email channel fills its pre-encoded parts with them."""
        name = slots.name
        unsubscribe = slots.unsubscribe_url
        esc = html.escape
        g_html, g_text, anon_html, anon_text = self.greetings.get(slots.locale or "") or (
            self.greeting_html,
            self.greeting_text,
            self.greeting_anon_html,
            self.greeting_anon_text,
        )
        if name:
            greet_html = g_html.replace("\x00", esc(name))
            greet_text = g_text.replace("\x00", name)
        else:
            greet_html, greet_text = anon_html, anon_text
        pixel = ""
        if self.tracking and slots.open_url:
            pixel = (
                f'<img src="{esc(slots.open_url)}" width="1" height="1" alt="" '
                'style="display:block;width:1px;height:1px;border:0;">'
            )
        html_values = [greet_html, esc(unsubscribe), pixel]
        text_values = [greet_text, unsubscribe, ""]
        if self.tracking:
            clicks = slots.click_urls if slots.click_urls is not None else self.links
            if len(clicks) != len(self.links):
                raise ValueError(
                    f"click_urls has {len(clicks)} entries, the issue has {len(self.links)} links"
                )
            html_values.extend(map(esc, clicks))
            text_values.extend(clicks)
        return html_values, text_values


# --- building the render context ----------------------------------------------------------


def _label(key: str, locale: str, **kwargs: object) -> str:
    """A short label in the issue's language, with English alongside for zh-CN issues."""
    if locale == "en":
        return TEXT.get(key, "en", **kwargs)
    return f"{TEXT.get(key, 'zh-CN', **kwargs)} / {TEXT.get(key, 'en', **kwargs)}"


def _zh_date(d: date) -> str:
    return f"{d.year}年{d.month}月{d.day}日"


def period_text(doc: IssueDoc, locale: str | None = None) -> str:
    """e.g. 2023年2月1日-2023年2月28日 / 1 Feb – 28 Feb 2023."""
    a, b = doc.meta.period_from, doc.meta.period_to
    if (locale or doc.meta.locale) == "en":
        left = f"{a.day} {a:%b}" + ("" if a.year == b.year else f" {a.year}")
        return f"{left} – {b.day} {b:%b} {b.year}"
    return f"{_zh_date(a)}-{_zh_date(b)}"


def email_subject(doc: IssueDoc) -> str:
    """e.g. 工作简报 2023年第2期（2023年2月1日-2月28日）."""
    m = doc.meta
    a, b = m.period_from, m.period_to
    if m.locale == "en":
        return f"{m.title} No. {m.number}, {a.year} ({period_text(doc, 'en')})"
    right = f"{b.month}月{b.day}日" if a.year == b.year else _zh_date(b)
    return f"{m.title} {a.year}年第{m.number}期（{_zh_date(a)}-{right}）"


def block_text_length(blocks: Sequence[Block]) -> int:
    """Characters of text an article's blocks show (nested blocks included)."""
    total = 0
    for b in walk_blocks(tuple(blocks)):
        total += sum(len(i.text) for run in inline_runs(b) for i in run)
        if isinstance(b, Heading):
            total += len(b.text)
        elif isinstance(b, Sidebar):
            total += len(b.title)
        elif isinstance(b, Image):
            total += len(b.caption)
    return total


NEW_BLOCK_KINDS = frozenset({"Quote", "Table", "Rule", "Footnotes"})


def block_kinds(doc: IssueDoc) -> frozenset[str]:
    """Which of the later block kinds the issue uses: base.html adds their small-screen and
    dark-mode rules only then (an issue without them renders byte for byte as before)."""
    found = {type(b).__name__ for a in doc.articles for b in walk_blocks(a.blocks)}
    return frozenset(found & NEW_BLOCK_KINDS)


def lead_blocks(article: Article) -> tuple[Block, ...]:
    """The opening paragraphs of an article: enough to know what it is about."""
    out: list[Block] = []
    chars = 0
    for b in article.blocks:
        if isinstance(b, Paragraph):
            out.append(b)
            chars += sum(len(i.text) for i in b.inlines)
        elif isinstance(b, Heading) or (isinstance(b, Image) and not out):
            out.append(b)
        elif chars:  # a sidebar, list or video after some text ends the lead
            break
        if chars >= LEAD_MIN_CHARS or len(out) >= LEAD_MAX_BLOCKS:
            break
    while out and isinstance(out[-1], Heading):  # never end on a heading
        out.pop()
    return tuple(out)


@dataclass(frozen=True)
class ArticleView:
    article: Article
    blocks: tuple[Block, ...]
    shortened: bool
    archive_url: str
    link_only: bool = False  # past the whole-message budget: title, source and a link only


class _Urls:
    def __init__(self, doc: IssueDoc, settings: Settings, markers: _Markers):
        base = settings.public_base_url.rstrip("/")
        self.archive = f"{base}/issues/{doc.meta.slug}"
        self.subscribe = f"{base}/subscribe"  # a forwarded copy's reader can join too
        self.link_index = {url: i for i, url in enumerate(doc.links)}
        self.markers = markers

    def image(self, img: Image) -> str:
        return f"{self.archive}/{img.src}"

    def anchor(self, article: Article) -> str:
        return f"{self.archive}#{article.anchor}"

    def link(self, url: str) -> str:
        """The marker standing for link `url` until a recipient's (tracked) URL fills it."""
        return self.markers.link(self.link_index[url])


def _inline_html(inlines: Sequence[Inline], urls: _Urls) -> Markup:
    out: list[str] = []
    for i in inlines:
        if isinstance(i, Strong):
            out.append(f'<strong class="strong">{html.escape(i.text)}</strong>')
        elif isinstance(i, Emphasis):
            out.append(f'<em class="em">{html.escape(i.text)}</em>')
        elif isinstance(i, FootnoteRef):
            out.append(f'<sup class="fnref">{html.escape(i.text)}</sup>')
        elif isinstance(i, Link):
            out.append(f'<a class="link" href="{urls.link(i.url)}">{html.escape(i.text)}</a>')
        else:
            out.append(html.escape(i.text))
    return Markup("".join(out))


def _inline_text(inlines: Sequence[Inline], urls: _Urls) -> str:
    out: list[str] = []
    for i in inlines:
        if isinstance(i, Link):
            out.append(f"{i.text} ({urls.link(i.url)})")
        else:
            out.append(i.text)
    return "".join(out)


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.tests["paragraph"] = lambda b: isinstance(b, Paragraph)
    env.tests["heading"] = lambda b: isinstance(b, Heading)
    env.tests["image"] = lambda b: isinstance(b, Image)
    env.tests["listblock"] = lambda b: isinstance(b, ListBlock)
    env.tests["video"] = lambda b: isinstance(b, Video)
    env.tests["sidebar"] = lambda b: isinstance(b, Sidebar)
    env.tests["quote"] = lambda b: isinstance(b, Quote)
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.tests["rule"] = lambda b: isinstance(b, Rule)
    env.tests["footnotes"] = lambda b: isinstance(b, Footnotes)
    env.filters["prefix_lines"] = prefix_lines
    return env


def prefix_lines(text: str, prefix: str) -> str:
    """Each non-blank line of plain text behind `prefix` (quotes, nested list items)."""
    lines = text.strip("\n").split("\n")
    return "\n".join(prefix + line if line.strip() else "" for line in lines)


_env_cache: dict[Path, jinja2.Environment] = {}


def _env_for(templates_dir: Path) -> jinja2.Environment:
    env = _env_cache.get(templates_dir)
    if env is None:
        env = _env_cache[templates_dir] = _environment(templates_dir)
    return env


@dataclass(frozen=True)
class _Stage:
    """How much of the issue is shown: per-article text budget, and from which article on
    (in issue order) only title and link remain."""

    budget: int | None
    link_only_from: int | None = None


def _render_sources(
    doc: IssueDoc, settings: Settings, stage: _Stage, markers: _Markers, brand: Branding
) -> tuple[str, str, str, tuple[str, ...]]:
    """Jinja output before inlining: (html, text, css, shortened anchors)."""
    locale = doc.meta.locale
    budget = stage.budget
    urls = _Urls(doc, settings, markers)
    views: list[list[ArticleView]] = []
    shortened: list[str] = []
    position = 0
    for section in doc.sections:
        row = []
        for a in section.articles:
            link_only = stage.link_only_from is not None and position >= stage.link_only_from
            position += 1
            short = link_only or (budget is not None and block_text_length(a.blocks) > budget)
            if short:
                shortened.append(a.anchor)
            blocks = () if link_only else lead_blocks(a) if short else a.blocks
            row.append(ArticleView(a, blocks, short, urls.anchor(a), link_only))
        views.append(row)
    env = _env_for(Path(settings.templates_dir))
    ctx = {
        "doc": doc,
        "meta": doc.meta,
        "locale": locale,
        "lang": "en" if locale == "en" else "zh-CN",
        "sections": list(zip(doc.sections, views, strict=True)),
        "subject": email_subject(doc),
        "period": period_text(doc),
        "issue_no": TEXT.get(
            "issue_no", locale, year=doc.meta.period_from.year, number=doc.meta.number
        ),
        "archive_url": urls.archive,
        "subscribe_url": urls.subscribe,
        "postal_address": brand.postal_address_for(settings).strip(),  # in every footer
        "brand": brand,
        "publisher": brand.name or doc.meta.publisher,
        "logo_url": brand.logo_url(settings),
        "features": block_kinds(doc),
        "urls": urls,
        "L": lambda key, **kw: _label(key, locale, **kw),
        "T": lambda key, **kw: TEXT.get(key, locale, **kw),
        "inline_html": lambda inl: _inline_html(inl, urls),
        "inline_text": lambda inl: _inline_text(inl, urls),
        "TEXT_EN_WHY": TEXT.get(
            "why", "en", title=doc.meta.title, publisher=brand.name or doc.meta.publisher
        ),
        "GREETING": Markup(markers.slot("GREETING")),
        "UNSUB": Markup(markers.slot("UNSUB")),
        "PIXEL": Markup(markers.slot("PIXEL")),
    }
    design = "" if brand.design == "classic" else f"_{brand.design}"
    html_src = env.get_template(f"email/issue{design}.html").render(ctx)
    text_src = BLANK_RUNS_RE.sub("\n\n", env.get_template("email/issue.txt").render(ctx))
    css = (Path(settings.templates_dir) / "email" / "styles.css").read_text(encoding="utf-8")
    if design:
        css += (Path(settings.templates_dir) / "email" / f"styles{design}.css").read_text("utf-8")
    css += "\n" + brand_css(brand)
    return html_src, text_src, css, tuple(shortened)


def inline_css(html_src: str, css: str) -> str:
    """The one premailer call per rendering: styles.css into style attributes.

    The <style data-premailer="ignore"> block of base.html (client resets, media queries,
    dark mode) stays as it is; everything in styles.css must be inlinable.
    """
    inliner = premailer.Premailer(
        html_src,
        css_text=[css],
        keep_style_tags=False,
        strip_important=False,
        disable_validation=True,
        disable_link_rewrites=True,
        allow_network=False,
        remove_classes=False,
        cssutils_logging_level=logging.CRITICAL,
    )
    return inliner.transform(pretty_print=False)


def _worst_case_size(layout: _Layout, settings: Settings) -> int:
    """Bytes of the HTML once filled with long tracking URLs and a long name."""
    static = sum(len(s.encode("utf-8")) for s in layout.statics)
    per_url = TRACKED_URL_ALLOWANCE + len(settings.public_base_url.encode("utf-8"))
    return static + len(layout.slot_ids) * per_url + NAME_ALLOWANCE


_cache: dict[tuple[Any, ...], RenderedEmail] = {}  # key: what the rendering depends on
_cache_lock = threading.Lock()


def clear_cache(*, templates: bool = False) -> None:
    """Forget rendered issues (and, with templates=True, the compiled Jinja templates)."""
    with _cache_lock:
        _cache.clear()
    if templates:
        _env_cache.clear()


def render_email(
    doc: IssueDoc, settings: Settings, *, tracking: bool, branding: Branding | None = None
) -> RenderedEmail:
    """Render (or fetch from the cache) the email of an issue; slow, once per issue.

    The branding (dispatch.branding, from the settings page) is part of the cache key: the
    same content with another logo, colour or design is another email."""
    brand = branding or Branding()
    key = (
        brand,
        doc.content_hash,
        tracking,
        settings.public_base_url,
        str(settings.templates_dir),
        settings.email_size_budget,
        settings.postal_address,
    )
    with _cache_lock:
        cached = _cache.get(key)
    if cached is not None:
        return cached
    rendered = _render_uncached(doc, settings, tracking=tracking, brand=brand)
    with _cache_lock:
        _cache[key] = rendered
    return rendered


_Attempt = tuple["_Layout", str, tuple[str, ...], int]  # html layout, text, shortened, bytes


def _baked_links(doc: IssueDoc, tracking: bool) -> tuple[dict[int, str], dict[int, str]]:
    """Without tracking the links and the (empty) pixel are fixed now, in HTML and text."""
    baked: dict[int, str] = {}
    baked_text: dict[int, str] = {}
    if not tracking:
        for i, url in enumerate(doc.links):
            baked[LINK_SLOT_BASE + i] = html.escape(url)
            baked_text[LINK_SLOT_BASE + i] = url
        baked[SLOT_PIXEL] = baked_text[SLOT_PIXEL] = ""
    return baked, baked_text


def _first_guess(
    doc: IssueDoc,
    settings: Settings,
    stages: list[_Stage],
    markers: _Markers,
    limit: int,
    brand: Branding,
) -> int:
    """The first stage whose uninlined HTML, grown by what inlining typically adds, fits;
    Jinja is cheap next to premailer, which then runs once unless that guess was short."""
    for i, stage in enumerate(stages):
        html_src, _, _, _ = _render_sources(doc, settings, stage, markers, brand)
        if len(html_src.encode("utf-8")) * INLINE_GROWTH < limit:
            return i
    return len(stages) - 1


def _fit(
    doc: IssueDoc,
    settings: Settings,
    markers: _Markers,
    attempt: Callable[[_Stage], _Attempt],
    limit: int,
    brand: Branding,
) -> tuple[_Stage, _Attempt]:
    """The least shortening that fits the size limit: article text budgets first, then the
    last articles as title-and-link entries."""
    stages = [_Stage(None), *(_Stage(b) for b in ARTICLE_CHAR_BUDGETS)]
    for stage in stages[_first_guess(doc, settings, stages, markers, limit, brand) :]:
        tried = attempt(stage)
        if tried[3] <= limit:
            return stage, tried
        log.info("email.over_budget", issue=doc.meta.slug, budget=stage.budget, bytes=tried[3])
    # Past the budget: the last articles become title-and-link entries; as few as fit,
    # found by binary search (the size only grows as fewer articles are link-only).
    total = len(doc.articles)
    lo, hi = 0, total  # link_only_from: lo fits (checked next), hi does not (tried above)
    best = attempt(_Stage(0, link_only_from=0))
    if best[3] > limit:
        raise EmailTooLarge(best[3], limit, total)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        tried = attempt(_Stage(0, link_only_from=mid))
        if tried[3] <= limit:
            lo, best = mid, tried
        else:
            hi = mid
    return _Stage(0, link_only_from=lo), best


_NAME_MARKER = "\x00"


def _greeting(lang: str) -> tuple[str, str, str, str]:
    """(html with a name marker, text, anonymous html, anonymous text) in `lang`."""
    greet = TEXT.get("greeting", lang, name=_NAME_MARKER)
    anon = TEXT.get("greeting_anon", lang)
    marked = html.escape(greet).replace(html.escape(_NAME_MARKER), _NAME_MARKER)
    return marked, greet, html.escape(anon), anon


def _render_uncached(
    doc: IssueDoc, settings: Settings, *, tracking: bool, brand: Branding
) -> RenderedEmail:
    limit = min(settings.email_size_budget, GMAIL_CLIP_BYTES)
    baked, baked_text = _baked_links(doc, tracking)
    markers = _Markers()
    links = len(doc.links)

    def attempt(stage: _Stage) -> _Attempt:
        html_src, text_src, css, shortened = _render_sources(doc, settings, stage, markers, brand)
        layout = _Layout.cut(inline_css(html_src, css), baked, markers, links)
        return layout, text_src, shortened, _worst_case_size(layout, settings)

    fitted, (html_layout, text_src, shortened, size) = _fit(
        doc, settings, markers, attempt, limit, brand
    )
    text_layout = _Layout.cut(text_src, baked_text, markers, links)
    log.info(
        "email.rendered",
        issue=doc.meta.slug,
        content_hash=doc.content_hash[:12],
        tracking=tracking,
        bytes=size,
        shortened=list(shortened),
        budget=fitted.budget,
        link_only_from=fitted.link_only_from,
    )
    greet_html, greet, greet_anon_html, greet_anon = _greeting(doc.meta.locale)
    return RenderedEmail(
        subject=email_subject(doc),
        preheader=doc.meta.preheader,
        content_hash=doc.content_hash,
        tracking=tracking,
        links=doc.links,
        html_layout=html_layout,
        text_layout=text_layout,
        greeting_html=greet_html,
        greeting_text=greet,
        greeting_anon_html=greet_anon_html,
        greeting_anon_text=greet_anon,
        greetings={lang: _greeting(lang) for lang in LOCALES},
        shortened=shortened,
        article_char_budget=fitted.budget,
    )
