"""What a Word import kept, dropped and guessed, each named with the paragraph it came from.

Why a report: a Word document says less than the source format needs (no issue number, no
source URLs, titles marked only by bold), so the importer guesses; the editor must know which
lines to check before publishing. Every entry is bilingual (CLI prints both, the admin page
the reader's language) and has a stable `code` for scripts (`--json`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        # guesses
        "section_by_format": (
            "按格式（{why}）识别为栏目标题",
            "taken as a section heading ({why})",
        ),
        "article_by_format": ("按格式（{why}）识别为文章标题", "taken as an article title ({why})"),
        "subheading_by_format": ("按格式（{why}）识别为小标题", "taken as a subheading ({why})"),
        "title_guess": ("识别为简报名称", "taken as the bulletin's title"),
        "publisher_guess": ("识别为发布单位", "taken as the publisher"),
        "period_guess": (
            "期间取自此段：{start} 至 {end}",
            "period taken from this line: {start} to {end}",
        ),
        "period_from_dates": (
            "文档未写期间，按文章日期取 {start} 至 {end}",
            "no period in the document; taken from the article dates: {start} to {end}",
        ),
        "number_guess": (
            "期号按期间的月份取 {number}（可用 --number 指定）",
            "issue number {number} from the period's month (set it with --number)",
        ),
        "slug_guess": ("网址名按期间取 {slug}（可用 --slug 指定）", "slug {slug} from the period"),
        "source_url_known": (
            "来源“{source}”的网址按已知网站取 {url}",
            "source_url of “{source}” taken from the known sites: {url}",
        ),
        "source_url_text": (
            "来源网址取自正文中的网址 {url}",
            "source_url taken from an address in the text: {url}",
        ),
        "source_url_option": (
            "来源网址用 --source-url 的 {url}",
            "source_url from --source-url: {url}",
        ),
        "source_url_missing": (
            "文章“{title}”没有来源网址：发布前请在 issue.md 填写 source_url（或用 --source-url）",
            "article “{title}” has no source URL: fill source_url in issue.md before publishing "
            "(or use --source-url)",
        ),
        "source_missing": (
            "文章“{title}”没有“来源：”行，来源取 {source}",
            "article “{title}” has no 来源 line; source set to {source}",
        ),
        "date_from_period": (
            "文章“{title}”没有日期，取期末 {date}",
            "article “{title}” has no date; the period's last day {date} used",
        ),
        "caption_guess": ("识别为上方图片的图注", "taken as the caption of the picture above"),
        "alt_from_caption": (
            "图片没有替代文字，用图注代替",
            "the picture has no alt text; its caption used",
        ),
        "alt_missing": (
            "图片既无替代文字也无图注，替代文字取“{alt}”",
            "the picture has neither alt text nor caption; alt set to “{alt}”",
        ),
        "box_table": ("单格表格识别为专栏", "a one-cell table taken as a 专栏 (sidebar)"),
        "box_textbox": ("文本框识别为专栏", "a text box taken as a 专栏 (sidebar)"),
        "box_style": ("样式“{style}”识别为专栏", "paragraphs of style “{style}” taken as a 专栏"),
        "default_section": (
            "文档没有栏目标题，文章归入栏目“{title}”",
            "no section heading in the document; articles put under “{title}”",
        ),
        "cover_guess": (
            "第一张图片（在第一个栏目前）用作封面",
            "the first picture (before any section) used as the cover",
        ),
        # not kept
        "publisher_missing": (
            "文档没有写发布单位：请用 --publisher 指定或在 issue.md 填写 publisher",
            "the document names no publisher: give --publisher or fill publisher in issue.md",
        ),
        "toc_dropped": (
            "手写目录（{n} 行）未保留：目录由标题自动生成",
            "the hand-typed table of contents ({n} lines) was left out: it is generated",
        ),
        "before_section": ("第一个栏目之前的文字未保留", "text before the first section left out"),
        "before_article": (
            "栏目内第一篇文章之前的文字未保留",
            "text inside a section before its first article left out",
        ),
        "image_format": (
            "{fmt} 图片未保留（邮件和微信不显示）：请在 Word 中另存为 PNG 或 JPEG 后重新插入",
            "{fmt} picture left out (email and WeChat cannot show it): save it as PNG or JPEG "
            "in Word and insert it again",
        ),
        "image_bad": (
            "图片无法解码，未保留（{why}）",
            "picture could not be decoded, left out ({why})",
        ),
        "ole_object": ("嵌入对象（{what}）未保留", "embedded object ({what}) left out"),
        "macros": ("宏（{part}）未保留，也从未执行", "macros ({part}) left out and never run"),
        "table_flattened": (
            "表格按行转为段落（当前格式不支持表格）",
            "table turned into one paragraph per row (the format has no tables yet)",
        ),
        "italic_plain": ("斜体按普通文字保留", "italics kept as plain text"),
        "quote_plain": ("引用按普通段落保留", "block quote kept as plain paragraphs"),
        "footnote_plain": ("脚注改为文末段落", "footnotes kept as paragraphs at the article's end"),
        "nested_flat": ("多级列表展平为一级", "nested list flattened to one level"),
        "link_dropped": (
            "非 http(s) 链接只保留文字：{url}",
            "link that is not http(s) kept as text only: {url}",
        ),
        "heading_in_box": (
            "专栏内的小标题改为粗体段落",
            "subheading inside a 专栏 kept as a bold paragraph",
        ),
        "converter": ("转换器提示：{text}", "converter note: {text}"),
    }
)


@dataclass(frozen=True)
class Entry:
    """One line of the report: a message, and the paragraph (1-based, in document order)."""

    code: str
    paragraph: int | None = None
    excerpt: str = ""
    args: dict[str, Any] = field(default_factory=dict)

    def text(self, locale: str | None = None) -> str:
        return MESSAGES.get(self.code, locale, **self.args)

    def where(self) -> str:
        place = f"¶{self.paragraph}" if self.paragraph else ""
        if self.excerpt:
            place = f"{place} 「{self.excerpt}」".strip()
        return place

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "paragraph": self.paragraph,
            "excerpt": self.excerpt,
            "zh": self.text("zh-CN"),
            "en": self.text("en"),
        }


def excerpt(text: str, width: int = 30) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class ImportReport:
    """Counts of what was kept, and the entries that were guessed or not kept."""

    kept: dict[str, int] = field(default_factory=dict)
    guessed: list[Entry] = field(default_factory=list)
    dropped: list[Entry] = field(default_factory=list)

    def guess(self, code: str, paragraph: int | None = None, text: str = "", **args: Any) -> None:
        self.guessed.append(Entry(code, paragraph, excerpt(text), args))

    def drop(self, code: str, paragraph: int | None = None, text: str = "", **args: Any) -> None:
        self.dropped.append(Entry(code, paragraph, excerpt(text), args))

    def count(self, what: str, n: int = 1) -> None:
        self.kept[what] = self.kept.get(what, 0) + n

    def as_dict(self) -> dict[str, Any]:
        return {
            "kept": dict(self.kept),
            "guessed": [e.as_dict() for e in self.guessed],
            "not_kept": [e.as_dict() for e in self.dropped],
        }

    def lines(self, locale: str | None = None) -> list[str]:
        """The report as text lines (both languages when no locale is given)."""
        kept = ", ".join(f"{k} {v}" for k, v in self.kept.items()) or "-"
        out = [f"{_label('kept', locale)}: {kept}"]
        for title, entries in (("guessed", self.guessed), ("not_kept", self.dropped)):
            if entries:
                out.append(f"{_label(title, locale)} ({len(entries)}):")
            for e in entries:
                text = e.text(locale) if locale else f"{e.text('zh-CN')} / {e.text('en')}"
                out.append(f"  {e.where()}: {text}" if e.where() else f"  {text}")
        return out


LABELS = Catalog(
    {
        "kept": ("已保留", "kept"),
        "guessed": ("推测，请核对", "guessed, please check"),
        "not_kept": ("未保留", "not kept"),
    }
)


def _label(key: str, locale: str | None) -> str:
    return LABELS.get(key, locale) if locale else LABELS.both(key)
