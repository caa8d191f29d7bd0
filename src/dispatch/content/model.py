"""The parsed issue: immutable dataclasses that renderers read and never change.

Inline text is a tiny tree (Text, Strong, Link) rather than HTML so that each renderer
(email HTML, plain text, WeChat HTML, web archive) escapes and formats it its own way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

CIRCLED_NUMBERS = "①②③④⑤⑥⑦⑧⑨⑩⑪⑫⑬⑭⑮⑯⑰⑱⑲⑳"


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Strong:
    text: str


@dataclass(frozen=True)
class Link:
    text: str
    url: str  # always http(s), checked by the parser


Inline = Text | Strong | Link


@dataclass(frozen=True)
class Paragraph:
    inlines: tuple[Inline, ...]
    line: int = 0


@dataclass(frozen=True)
class Heading:
    level: int  # 3 or 4 (### / ####) inside an article
    text: str
    line: int = 0


@dataclass(frozen=True)
class Image:
    path: Path  # absolute path of the file beside the source
    src: str  # as written in the source, relative to the issue folder
    alt: str
    caption: str = ""
    line: int = 0


@dataclass(frozen=True)
class ListBlock:
    ordered: bool
    items: tuple[tuple[Inline, ...], ...]
    line: int = 0
    start: int = 1  # number of the first item of an ordered list ("3." continues a list)


@dataclass(frozen=True)
class Video:
    label: str
    url: str
    line: int = 0


@dataclass(frozen=True)
class Sidebar:
    title: str
    blocks: tuple[Block, ...]
    line: int = 0


Block = Paragraph | Heading | Image | ListBlock | Video | Sidebar


@dataclass(frozen=True)
class Article:
    title: str
    source: str
    source_url: str
    date: date
    blocks: tuple[Block, ...]
    author: str = ""
    anchor: str = ""  # stable id within the issue, e.g. "a3"; the archive page uses it
    number: int = 0  # 1-based position within its section (the ①②③ of the TOC)
    line: int = 0

    @property
    def toc_label(self) -> str:
        n = self.number
        return CIRCLED_NUMBERS[n - 1] if 0 < n <= len(CIRCLED_NUMBERS) else f"({n})"


@dataclass(frozen=True)
class Section:
    title: str
    articles: tuple[Article, ...]
    line: int = 0


@dataclass(frozen=True)
class IssueMeta:
    title: str
    number: int
    period_from: date
    period_to: date
    publisher: str
    slug: str
    locale: str = "zh-CN"
    preheader: str = ""
    cover: Image | None = None


@dataclass(frozen=True)
class IssueDoc:
    """A whole parsed issue. `source_dir` holds issue.md and the images it names."""

    meta: IssueMeta
    sections: tuple[Section, ...]
    source_dir: Path
    source_text: str
    content_hash: str  # sha256 over the source text and every image's bytes
    links: tuple[str, ...] = field(
        default=()
    )  # every distinct http(s) URL, in order: the link table

    @property
    def articles(self) -> tuple[Article, ...]:
        return tuple(a for s in self.sections for a in s.articles)

    def images(self) -> tuple[Image, ...]:
        """Every image of the issue (cover first), for upload and attachment."""
        found: list[Image] = [self.meta.cover] if self.meta.cover else []

        def walk(blocks: tuple[Block, ...]) -> None:
            for b in blocks:
                if isinstance(b, Image):
                    found.append(b)
                elif isinstance(b, Sidebar):
                    walk(b.blocks)

        for article in self.articles:
            walk(article.blocks)
        return tuple(found)
