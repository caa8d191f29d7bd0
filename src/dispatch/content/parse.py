"""Parse and validate an issue source (docs/issue-format.md) into an `IssueDoc`.

Why a small line-oriented parser instead of a Markdown library: the format is tiny and fixed,
and every problem must be reported with its exact line, all at once, so an editor fixes the
whole file in one pass. Nothing here touches the database; `content.store` does that with a
document that parsed cleanly.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from dispatch.content.model import (
    Article,
    Block,
    Heading,
    Image,
    Inline,
    IssueDoc,
    IssueMeta,
    Link,
    ListBlock,
    Paragraph,
    Section,
    Sidebar,
    Strong,
    Text,
    Video,
)
from dispatch.errors import DispatchError
from dispatch.i18n import Catalog

SOURCE_FILE_NAME = "issue.md"
REQUIRED_KEYS = ("title", "number", "period_from", "period_to", "publisher")
OPTIONAL_KEYS = ("preheader", "slug", "locale", "cover")
ARTICLE_META_KEYS = ("source", "source_url", "date", "author")
SUPPORTED_LOCALES = ("zh-CN", "en")
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
META_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s?(.*)$")
IMAGE_RE = re.compile(r'^!\[(?P<alt>[^\]]*)\]\((?P<src>[^\s)"]*)(?:\s+"(?P<caption>[^"]*)")?\)$')
UNORDERED_RE = re.compile(r"^[-*]\s+(.*)$")
ORDERED_RE = re.compile(r"^(?P<number>\d{1,3})[.)]\s+(.*)$")
INLINE_RE = re.compile(
    r"\*\*(?P<strong>.+?)\*\*|\[(?P<text>[^\]]+)\]\((?P<url>(?:[^()\s]|\([^()\s]*\))+)\)"
)
HTTP_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)

MESSAGES = Catalog(
    {
        "not_found": ("找不到简报源文件", "issue source not found"),
        "not_utf8": ("文件不是 UTF-8 编码", "file is not valid UTF-8"),
        "no_front_matter": (
            "文件须以 --- 开头的头部信息开始",
            "the file must start with a front matter block opened by ---",
        ),
        "unclosed_front_matter": ("头部信息缺少结束的 ---", "front matter is not closed by ---"),
        "bad_front_line": (
            "头部信息每行须为 key: value",
            "front matter lines must be 'key: value'",
        ),
        "unknown_key": ("未知的头部字段 {name!r}", "unknown front-matter key {name!r}"),
        "duplicate_key": ("重复的字段 {name!r}", "duplicate key {name!r}"),
        "missing_key": ("缺少必填的头部字段 {name!r}", "missing front-matter key {name!r}"),
        "empty_value": ("字段 {name!r} 的值为空", "front-matter key {name!r} has an empty value"),
        "bad_date": (
            "{name!r} 不是有效日期 YYYY-MM-DD：{value!r}",
            "{name!r} is not a valid date YYYY-MM-DD: {value!r}",
        ),
        "bad_number": (
            "number 须为正整数：{value!r}",
            "number must be a positive integer: {value!r}",
        ),
        "period_order": (
            "period_to 早于 period_from",
            "period_to is before period_from",
        ),
        "bad_locale": (
            "locale 须为 zh-CN 或 en：{value!r}",
            "locale must be zh-CN or en: {value!r}",
        ),
        "bad_slug": (
            "slug 只能含小写字母、数字、点、横线和下划线：{value!r}",
            "slug may only hold lowercase letters, digits, '.', '-' and '_': {value!r}",
        ),
        "text_before_section": (
            "第一个栏目（# 标题）之前不能有正文",
            "text before the first section (# heading)",
        ),
        "text_outside_article": (
            "栏目内、文章（## 标题）之前不能有正文",
            "text inside a section but before its first article (## heading)",
        ),
        "empty_section_title": ("栏目标题为空", "section heading has no title"),
        "empty_section": ("栏目 {title!r} 没有文章", "section {title!r} has no article"),
        "empty_article_title": ("文章标题为空", "article heading has no title"),
        "empty_article": ("文章 {title!r} 没有正文", "article {title!r} has no body"),
        "missing_article_key": (
            "文章 {title!r} 缺少 {name}",
            "article {title!r} has no {name}",
        ),
        "unknown_article_key": (
            "未知的文章字段 {name!r}（可用：source, source_url, date, author）",
            "unknown article metadata key {name!r} (known: source, source_url, date, author)",
        ),
        "bad_meta_line": (
            "标题后到空行前须为 key: value 元数据行",
            "lines after an article heading up to the first blank line must be 'key: value' "
            "metadata",
        ),
        "bad_heading_level": (
            "文章内只能用 ### 或 #### 小标题",
            "only ### and #### headings are allowed inside an article",
        ),
        "empty_heading": ("小标题为空", "heading has no text"),
        "empty_alt": ("图片缺少替代文字（alt）", "image has empty alt text"),
        "image_missing": ("图片文件不存在：{src}", "image file not found: {src}"),
        "image_outside": (
            "图片路径须在简报目录之内：{src}",
            "image path must stay inside the issue folder: {src}",
        ),
        "image_not_file": (
            "图片须为 .png/.jpg/.jpeg/.gif 文件：{src}",
            "image must be a .png/.jpg/.jpeg/.gif file: {src}",
        ),
        "image_not_decodable": (
            "{src} 不是有效的 {expected} 图片（{why}）",
            "{src} is not a valid {expected} image ({why})",
        ),
        "bad_image_syntax": (
            '图片写法应为 ![替代文字](路径 "说明")',
            'image must be written ![alt](path "caption")',
        ),
        "bad_url": ("链接须为 http(s) 地址：{url!r}", "link is not an http(s) URL: {url!r}"),
        "bad_source_url": (
            "source_url 须为 http(s) 地址：{url!r}",
            "source_url is not an http(s) URL: {url!r}",
        ),
        "unclosed_block": ("::: {kind} 块没有以 ::: 结束", "::: {kind} block is not closed by :::"),
        "stray_close": ("多余的 :::（没有打开的块）", "stray ::: with no open block"),
        "nested_block": ("专栏内不能再开 ::: 块", "::: blocks cannot be nested"),
        "control_char": (
            "第 {col} 列有不可见的控制字符 {char}（常见于从 PDF 或 Word 复制），请删除",
            "invisible control character {char} at column {col} (often pasted from a PDF or Word);"
            " remove it",
        ),
        "unknown_block": (
            "未知的 ::: 块类型 {kind!r}（可用：sidebar, video）",
            "unknown ::: block {kind!r} (known: sidebar, video)",
        ),
        "bad_video": (
            "视频写法应为 ::: video 标签 | https://…",
            "video must be written '::: video label | https://…'",
        ),
        "empty_sidebar": ("专栏 {title!r} 没有内容", "sidebar {title!r} is empty"),
        "no_sections": ("简报没有任何栏目", "the issue has no section"),
    }
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the source: where it is and what to fix."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class IssueSourceError(DispatchError):
    """The source has problems; `.problems` lists every one of them."""

    def __init__(self, problems: Iterable[Problem]):
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def _msg(message_key: str, **kwargs: object) -> str:
    """English first (greppable, stable for tests), then zh-CN."""
    en = MESSAGES.get(message_key, "en", **kwargs)
    return en + " / " + MESSAGES.get(message_key, "zh-CN", **kwargs)


def resolve_source(path: str | Path) -> Path:
    """The issue.md for a path that names the file or its folder."""
    p = Path(path)
    return p / SOURCE_FILE_NAME if p.is_dir() else p


def parse_issue(path: str | Path) -> IssueDoc:
    """Parse the issue at `path` (issue.md or its folder); raise IssueSourceError on any problem."""
    file = resolve_source(path)
    label = str(file)
    if not file.is_file():
        raise IssueSourceError([Problem(label, 0, _msg("not_found"))])
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        raise IssueSourceError([Problem(label, line, _msg("not_utf8"))]) from None
    return parse_issue_text(text, file.parent, label)


def parse_issue_text(text: str, source_dir: str | Path, label: str = SOURCE_FILE_NAME) -> IssueDoc:
    """Parse source text whose images live under `source_dir` (used to re-load stored issues)."""
    parser = _Parser(text, Path(source_dir).resolve(), label)
    return parser.run()


# --- inline markup ------------------------------------------------------------------------


def join_lines(lines: list[str]) -> str:
    """Join a paragraph's lines: no space between CJK (the PDF broke lines mid-sentence)."""
    out = ""
    for raw in lines:
        piece = raw.strip()
        if not piece:
            continue
        if out and _needs_space(out[-1], piece[0]):
            out += " "
        out += piece
    return out


def _needs_space(left: str, right: str) -> bool:
    return left.isascii() and right.isascii() and not left.isspace()


def inlines_to_text(inlines: Iterable[Inline]) -> str:
    return "".join(i.text for i in inlines)


@dataclass
class _Draft:
    """An article being read: metadata and blocks, checked when it ends."""

    title: str
    line: int
    meta: dict[str, tuple[str, int]] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    in_meta: bool = True


@dataclass
class _SidebarDraft:
    title: str
    line: int
    blocks: list[Block] = field(default_factory=list)


@dataclass
class _Body:
    """Where the body walk stands: sections so far, the open article and sidebar, and the
    paragraph lines not yet turned into blocks."""

    sections: list[tuple[str, int, list[_Draft]]] = field(default_factory=list)
    article: _Draft | None = None
    sidebar: _SidebarDraft | None = None
    chunk: list[tuple[str, int]] = field(default_factory=list)

    def target(self) -> list[Block] | None:
        if self.sidebar is not None:
            return self.sidebar.blocks
        return self.article.blocks if self.article is not None else None


IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}


def image_problem(data: bytes, suffix: str) -> str | None:
    """Why these bytes are not an image of the format their name claims (None if they are).

    Checked by content with a real decoder (Pillow opens, verifies and fully decodes), never
    by the name: a file of HTML or SVG called photo.png would otherwise be published and
    served as an image. Verdicts are cached by content digest (stored issues re-parse often)."""
    return _image_verdict(hashlib.sha256(data).digest(), suffix, data)


_verdicts: dict[tuple[bytes, str], str | None] = {}


def _image_verdict(digest: bytes, suffix: str, data: bytes) -> str | None:
    key = (digest, suffix)
    if key in _verdicts:
        return _verdicts[key]
    verdict = _decode(data, IMAGE_FORMATS[suffix])
    if len(_verdicts) > 1024:
        _verdicts.clear()
    _verdicts[key] = verdict
    return verdict


def _decode(data: bytes, expected: str) -> str | None:
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                found = im.format
                if found != expected:
                    return f"its content is {found or 'unknown'}"
                im.verify()
            with PILImage.open(io.BytesIO(data)) as im:
                im.load()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        return "too many pixels"
    except Exception as exc:  # any decoder complaint: not an image we can publish
        text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return "cannot be decoded: " + text
    return None


CONTROL_CHAR_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")


class _Parser:
    def __init__(self, text: str, source_dir: Path, label: str):
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.lines = self.text.split("\n")
        self.source_dir = source_dir
        self.label = label
        self.problems: list[Problem] = []
        self.image_bytes: list[bytes] = []

    def problem(self, line: int, message_key: str, **kwargs: object) -> None:
        self.problems.append(Problem(self.label, line, _msg(message_key, **kwargs)))

    # --- front matter -------------------------------------------------------------------

    def front_matter(self) -> tuple[dict[str, tuple[str, int]], int]:
        """Read the header; return its values and the index of the first body line."""
        values: dict[str, tuple[str, int]] = {}
        first = 0
        while first < len(self.lines) and not self.lines[first].strip():
            first += 1
        if first >= len(self.lines) or self.lines[first].strip() != "---":
            self.problem(first + 1 if first < len(self.lines) else 1, "no_front_matter")
            return values, first
        i = first + 1
        while i < len(self.lines):
            raw = self.lines[i]
            lineno = i + 1
            if raw.strip() == "---":
                return values, i + 1
            i += 1
            if not raw.strip():
                continue
            m = META_LINE_RE.match(raw.strip())
            if not m:
                self.problem(lineno, "bad_front_line")
                continue
            key, value = m.group(1), m.group(2).strip()
            if key not in REQUIRED_KEYS and key not in OPTIONAL_KEYS:
                self.problem(lineno, "unknown_key", name=key)
            elif key in values:
                self.problem(lineno, "duplicate_key", name=key)
            else:
                values[key] = (value, lineno)
        self.problem(first + 1, "unclosed_front_matter")
        return values, len(self.lines)

    def parse_date(self, key: str, value: str, line: int) -> date | None:
        if DATE_RE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        self.problem(line, "bad_date", name=key, value=value)
        return None

    def meta(self, values: dict[str, tuple[str, int]], header_line: int) -> IssueMeta | None:
        for key in REQUIRED_KEYS:
            if key not in values:
                self.problem(header_line, "missing_key", name=key)
            elif not values[key][0]:
                self.problem(values[key][1], "empty_value", name=key)
        number = period_from = period_to = None
        if "number" in values and values["number"][0]:
            raw, line = values["number"]
            if raw.isdigit() and int(raw) > 0:
                number = int(raw)
            else:
                self.problem(line, "bad_number", value=raw)
        for key in ("period_from", "period_to"):
            if key in values and values[key][0]:
                parsed = self.parse_date(key, *values[key])
                if key == "period_from":
                    period_from = parsed
                else:
                    period_to = parsed
        if period_from and period_to and period_to < period_from:
            self.problem(values["period_to"][1], "period_order")
        locale = "zh-CN"
        if "locale" in values:
            raw, line = values["locale"]
            if raw in SUPPORTED_LOCALES:
                locale = raw
            else:
                self.problem(line, "bad_locale", value=raw)
        slug = period_from.strftime("%Y-%m") if period_from else ""
        if "slug" in values:
            raw, line = values["slug"]
            if SLUG_RE.match(raw):
                slug = raw
            else:
                self.problem(line, "bad_slug", value=raw)
        cover = None
        if "cover" in values and values["cover"][0]:
            raw, line = values["cover"]
            cover = self.image(raw, values.get("title", ("", 0))[0] or raw, "", line)
        if None in (number, period_from, period_to) or any(
            not values.get(k, ("", 0))[0] for k in ("title", "publisher")
        ):
            return None
        assert number is not None and period_from is not None and period_to is not None
        return IssueMeta(
            title=values["title"][0],
            number=number,
            period_from=period_from,
            period_to=period_to,
            publisher=values["publisher"][0],
            slug=slug,
            locale=locale,
            preheader=values.get("preheader", ("", 0))[0],
            cover=cover,
        )

    # --- inline and blocks --------------------------------------------------------------

    def inlines(self, pieces: list[tuple[str, int]]) -> tuple[Inline, ...]:
        """Inline markup of a paragraph given as (line text, line number) pieces."""
        text = ""
        starts: list[tuple[int, int]] = []  # (offset in text, source line)
        for raw, lineno in pieces:
            piece = raw.strip()
            if not piece:
                continue
            if text and _needs_space(text[-1], piece[0]):
                text += " "
            starts.append((len(text), lineno))
            text += piece

        def line_at(offset: int) -> int:
            found = starts[0][1] if starts else 0
            for start, lineno in starts:
                if start <= offset:
                    found = lineno
            return found

        out: list[Inline] = []
        pos = 0
        for m in INLINE_RE.finditer(text):
            if m.start() > pos:
                out.append(Text(text[pos : m.start()]))
            if m.group("strong") is not None:
                out.append(Strong(m.group("strong")))
            else:
                url = m.group("url")
                if not HTTP_URL_RE.match(url):
                    self.problem(line_at(m.start()), "bad_url", url=url)
                out.append(Link(m.group("text"), url))
            pos = m.end()
        if pos < len(text):
            out.append(Text(text[pos:]))
        return tuple(out)

    def image(self, src: str, alt: str, caption: str, line: int) -> Image | None:
        ok = True
        if not alt.strip():
            self.problem(line, "empty_alt")
            ok = False
        rel = Path(src)
        if not src or rel.is_absolute() or ".." in rel.parts:
            self.problem(line, "image_outside", src=src)
            return None
        full = (self.source_dir / rel).resolve()
        if not full.is_relative_to(self.source_dir):
            self.problem(line, "image_outside", src=src)
            return None
        if not full.is_file():
            self.problem(line, "image_missing", src=src)
            return None
        if full.suffix.lower() not in (".png", ".jpg", ".jpeg", ".gif"):
            self.problem(line, "image_not_file", src=src)
            return None
        data = full.read_bytes()
        why = image_problem(data, full.suffix.lower())
        if why is not None:
            expected = IMAGE_FORMATS[full.suffix.lower()]
            self.problem(line, "image_not_decodable", src=src, expected=expected, why=why)
            return None
        self.image_bytes.append(src.encode() + b"\0" + data)
        if not ok:
            return None
        return Image(
            path=full, src=rel.as_posix(), alt=alt.strip(), caption=caption.strip(), line=line
        )

    def blocks(self, chunk: list[tuple[str, int]]) -> list[Block]:
        """Blocks of a run of non-blank lines (one paragraph, list, heading or image)."""
        out: list[Block] = []
        para: list[tuple[str, int]] = []
        items: list[list[tuple[str, int]]] = []
        ordered, list_line, list_start = False, 0, 1

        def flush_para() -> None:
            if para:
                out.append(Paragraph(self.inlines(para), line=para[0][1]))
                para.clear()

        def flush_list() -> None:
            if items:
                out.append(
                    ListBlock(
                        ordered,
                        tuple(self.inlines(it) for it in items),
                        line=list_line,
                        start=list_start,
                    )
                )
                items.clear()

        for raw, lineno in chunk:
            stripped = raw.strip()
            if stripped.startswith(("#", "![")):
                flush_para()
                flush_list()
                block = (
                    self.heading_block(stripped, lineno)
                    if stripped.startswith("#")
                    else self.image_block(stripped, lineno)
                )
                if block is not None:
                    out.append(block)
                continue
            um = UNORDERED_RE.match(stripped)
            om = ORDERED_RE.match(stripped)
            if um or om:
                flush_para()
                is_ordered = om is not None
                if items and is_ordered != ordered:
                    flush_list()
                if not items:
                    ordered, list_line = is_ordered, lineno
                    list_start = int(om.group("number")) if om else 1
                match = om or um
                assert match is not None
                items.append([(match.group(match.lastindex or 1), lineno)])
                continue
            if items and raw[:1].isspace():  # an indented line continues the list item
                items[-1].append((stripped, lineno))
                continue
            flush_list()
            para.append((stripped, lineno))
        flush_para()
        flush_list()
        return out

    def heading_block(self, stripped: str, lineno: int) -> Heading | None:
        """A `###` or `####` heading line (other levels and empty titles are problems)."""
        hashes = len(stripped) - len(stripped.lstrip("#"))
        title = stripped[hashes:].strip()
        if hashes not in (3, 4):
            self.problem(lineno, "bad_heading_level")
        elif not title:
            self.problem(lineno, "empty_heading")
        else:
            return Heading(hashes, title, line=lineno)
        return None

    def image_block(self, stripped: str, lineno: int) -> Image | None:
        """An image line `![alt](src "caption")`; None (with a problem) when it is unusable."""
        m = IMAGE_RE.match(stripped)
        if not m:
            self.problem(lineno, "bad_image_syntax")
            return None
        return self.image(m.group("src"), m.group("alt"), m.group("caption") or "", lineno)

    # --- the body -----------------------------------------------------------------------

    def control_characters(self) -> None:
        """Control characters (other than tab) have no place in an issue: HTML forbids them
        and mail clients show them as boxes; name each line that has one."""
        for number, line in enumerate(self.lines, start=1):
            m = CONTROL_CHAR_RE.search(line)
            if m:
                char = f"U+{ord(m.group()):04X}"
                self.problem(number, "control_char", char=char, col=m.start() + 1)

    def run(self) -> IssueDoc:
        """Front matter, then the body line by line (sections, articles, blocks), then the
        checked document, or IssueSourceError listing every problem found."""
        self.control_characters()
        values, body_start = self.front_matter()
        header_line = self._first_text_line()
        meta = self.meta(values, header_line)
        body = _Body()
        for idx in range(body_start, len(self.lines)):
            self._body_line(body, self.lines[idx], idx + 1)
        self._flush(body)
        if body.sidebar is not None:
            self.problem(body.sidebar.line, "unclosed_block", kind="sidebar")
            self.close_sidebar(body.sidebar, body.article)
        if not body.sections and not self.problems:
            self.problem(len(self.lines), "no_sections")
        return self._document(meta, body.sections, header_line)

    # -- the phases of run() ---------------------------------------------------------------

    def _first_text_line(self) -> int:
        for idx, raw in enumerate(self.lines):
            if raw.strip():
                return idx + 1
        return 1

    def _body_line(self, body: _Body, raw: str, lineno: int) -> None:
        stripped = raw.strip()
        if body.article is not None and body.article.in_meta:
            if self._article_meta_line(body.article, stripped, lineno):
                return
        if not stripped:
            self._flush(body)
        elif stripped.startswith(":::"):
            self._flush(body)
            self._block_marker(body, stripped[3:].strip(), lineno)
        elif stripped.startswith("#") and not stripped.startswith("###"):
            self._flush(body)
            self._heading(body, stripped, lineno)
        else:
            body.chunk.append((raw, lineno))

    def _article_meta_line(self, article: _Draft, stripped: str, lineno: int) -> bool:
        """A `key: value` line of the article's metadata; True when the line is used up."""
        if not stripped:
            article.in_meta = False
            return True
        m = META_LINE_RE.match(stripped)
        if m and not stripped.startswith(("#", ":::", "![", "- ", "* ")):
            key, value = m.group(1), m.group(2).strip()
            if key not in ARTICLE_META_KEYS:
                self.problem(lineno, "unknown_article_key", name=key)
            elif key in article.meta:
                self.problem(lineno, "duplicate_key", name=key)
            else:
                article.meta[key] = (value, lineno)
            return True
        article.in_meta = False
        if not stripped.startswith(("#", ":::", "![")):
            self.problem(lineno, "bad_meta_line")
            return True
        return False

    def _outside_article(self, body: _Body, lineno: int) -> None:
        key = "text_before_section" if not body.sections else "text_outside_article"
        self.problem(lineno, key)

    def _flush(self, body: _Body) -> None:
        """The paragraph lines gathered so far become blocks of the open sidebar or article."""
        if not body.chunk:
            return
        dest = body.target()
        if dest is None:
            self._outside_article(body, body.chunk[0][1])
        else:
            dest.extend(self.blocks(body.chunk))
        body.chunk.clear()

    def _block_marker(self, body: _Body, rest: str, lineno: int) -> None:
        """`:::` closes a sidebar; `::: video label|url` and `::: sidebar title` open blocks."""
        if not rest:
            if body.sidebar is None:
                self.problem(lineno, "stray_close")
            else:
                self.close_sidebar(body.sidebar, body.article)
                body.sidebar = None
            return
        kind, _, arg = rest.partition(" ")
        if kind == "video":
            self._video(body, arg, lineno)
        elif kind == "sidebar":
            if body.sidebar is not None:
                self.problem(lineno, "nested_block")
                return
            if body.article is None:
                self._outside_article(body, lineno)
            body.sidebar = _SidebarDraft(arg.strip(), lineno)
        else:
            self.problem(lineno, "unknown_block", kind=kind)

    def _video(self, body: _Body, arg: str, lineno: int) -> None:
        label, sep, url = arg.partition("|")
        if not sep or not label.strip() or not url.strip():
            self.problem(lineno, "bad_video")
            return
        url = url.strip()
        if not HTTP_URL_RE.match(url):
            self.problem(lineno, "bad_url", url=url)
            return
        dest = body.target()
        if dest is None:
            self._outside_article(body, lineno)
            return
        dest.append(Video(label.strip(), url, line=lineno))

    def _heading(self, body: _Body, stripped: str, lineno: int) -> None:
        """`# Section` or `## Article` (an unclosed sidebar ends here; say so once)."""
        level = 1 if not stripped.startswith("##") else 2
        title = stripped[level:].strip()
        if body.sidebar is not None:
            self.problem(body.sidebar.line, "unclosed_block", kind="sidebar")
            self.close_sidebar(body.sidebar, body.article)
            body.sidebar = None
        if level == 1:
            if not title:
                self.problem(lineno, "empty_section_title")
            body.sections.append((title, lineno, []))
            body.article = None
            return
        if not body.sections:
            self.problem(lineno, "text_before_section")
            body.sections.append(("", lineno, []))
        if not title:
            self.problem(lineno, "empty_article_title")
        body.article = _Draft(title, lineno)
        body.sections[-1][2].append(body.article)

    def _document(
        self,
        meta: IssueMeta | None,
        sections: list[tuple[str, int, list[_Draft]]],
        header_line: int,
    ) -> IssueDoc:
        built = self.build(sections)
        if self.problems or meta is None:
            if not self.problems:  # meta failed without a message: cannot happen, but be loud
                self.problem(header_line, "no_front_matter")
            raise IssueSourceError(sorted(self.problems, key=lambda p: p.line))
        digest = hashlib.sha256(self.text.encode("utf-8"))
        for blob in self.image_bytes:
            digest.update(b"\0")
            digest.update(blob)
        return IssueDoc(
            meta=meta,
            sections=built,
            source_dir=self.source_dir,
            source_text=self.text,
            content_hash=digest.hexdigest(),
            links=self.ordered_links(built),
        )

    def close_sidebar(self, sidebar: _SidebarDraft, article: _Draft | None) -> None:
        if not sidebar.blocks:
            self.problem(sidebar.line, "empty_sidebar", title=sidebar.title)
        if article is not None:
            article.blocks.append(Sidebar(sidebar.title, tuple(sidebar.blocks), line=sidebar.line))

    def build(self, sections: list[tuple[str, int, list[_Draft]]]) -> tuple[Section, ...]:
        out: list[Section] = []
        anchor = 0
        for title, line, drafts in sections:
            if not drafts:
                self.problem(line, "empty_section", title=title)
            articles: list[Article] = []
            for number, d in enumerate(drafts, start=1):
                anchor += 1
                for key in ("source_url", "date"):
                    if key not in d.meta or not d.meta[key][0]:
                        self.problem(d.line, "missing_article_key", title=d.title, name=key)
                if not d.blocks:
                    self.problem(d.line, "empty_article", title=d.title)
                source_url, url_line = d.meta.get("source_url", ("", d.line))
                if source_url and not HTTP_URL_RE.match(source_url):
                    self.problem(url_line, "bad_source_url", url=source_url)
                when = None
                if "date" in d.meta and d.meta["date"][0]:
                    when = self.parse_date("date", *d.meta["date"])
                articles.append(
                    Article(
                        title=d.title,
                        source=d.meta.get("source", ("", 0))[0],
                        source_url=source_url,
                        date=when or date.min,
                        blocks=tuple(d.blocks),
                        author=d.meta.get("author", ("", 0))[0],
                        anchor=f"a{anchor}",
                        number=number,
                        line=d.line,
                    )
                )
            out.append(Section(title=title, articles=tuple(articles), line=line))
        return tuple(out)

    @staticmethod
    def ordered_links(sections: tuple[Section, ...]) -> tuple[str, ...]:
        """The link table in reading order: each article's source_url, then its body links."""
        seen: dict[str, None] = {}

        def walk(blocks: tuple[Block, ...]) -> None:
            for b in blocks:
                if isinstance(b, Paragraph):
                    for i in b.inlines:
                        if isinstance(i, Link):
                            seen.setdefault(i.url, None)
                elif isinstance(b, ListBlock):
                    for item in b.items:
                        for i in item:
                            if isinstance(i, Link):
                                seen.setdefault(i.url, None)
                elif isinstance(b, Video):
                    seen.setdefault(b.url, None)
                elif isinstance(b, Sidebar):
                    walk(b.blocks)

        for section in sections:
            for article in section.articles:
                seen.setdefault(article.source_url, None)
                walk(article.blocks)
        return tuple(seen)
