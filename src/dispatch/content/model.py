"""The parsed issue: immutable dataclasses that renderers read and never change.

Inline text is a flat run of pieces (Text, Strong, Emphasis, Link, FootnoteRef) rather than
HTML so that each renderer (email HTML, plain text, WeChat HTML, web archive) escapes and
formats it its own way. Blocks nest only where Word documents do: sidebars, block quotes and
list items hold blocks of their own.
"""

from __future__ import annotations

from collections.abc import Iterator
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


@dataclass(frozen=True)
class Emphasis:
    """Italic text (`*text*` or `_text_`)."""

    text: str


@dataclass(frozen=True)
class FootnoteRef:
    """A reference `[^label]`; `number` counts the article's footnotes from 1."""

    number: int
    label: str

    @property
    def text(self) -> str:
        return f"[{self.number}]"


Inline = Text | Strong | Emphasis | Link | FootnoteRef


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
    # per item, the blocks under its first paragraph (nested lists, more paragraphs); empty
    # when no item has any, so a flat list is what it always was
    children: tuple[tuple[Block, ...], ...] = ()

    def blocks_of(self, index: int) -> tuple[Block, ...]:
        return self.children[index] if index < len(self.children) else ()


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


@dataclass(frozen=True)
class Quote:
    """A block quote (`> …`)."""

    blocks: tuple[Block, ...]
    line: int = 0


Cell = tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    """A GFM pipe table; `align` per column: "", "left", "center" or "right"."""

    header: tuple[Cell, ...]
    rows: tuple[tuple[Cell, ...], ...]
    align: tuple[str, ...] = ()
    line: int = 0

    @property
    def has_header(self) -> bool:
        """Word tables often have no header row: the importer writes an empty one."""
        return any(cell for cell in self.header)


@dataclass(frozen=True)
class Rule:
    """A horizontal rule (`---` in the body)."""

    line: int = 0


@dataclass(frozen=True)
class Footnote:
    number: int
    label: str
    inlines: tuple[Inline, ...]
    line: int = 0


@dataclass(frozen=True)
class Footnotes:
    """The notes of one article, in number order; the parser puts it last in the article."""

    notes: tuple[Footnote, ...]
    line: int = 0


Block = Paragraph | Heading | Image | ListBlock | Video | Sidebar | Quote | Table | Rule | Footnotes


def walk_blocks(blocks: tuple[Block, ...]) -> Iterator[Block]:
    """Every block in reading order, descending into sidebars, quotes and list items."""
    for b in blocks:
        yield b
        if isinstance(b, Sidebar | Quote):
            yield from walk_blocks(b.blocks)
        elif isinstance(b, ListBlock):
            for inner in b.children:
                yield from walk_blocks(inner)


def inline_runs(block: Block) -> Iterator[tuple[Inline, ...]]:
    """The inline runs a block holds itself (not those of blocks nested in it)."""
    if isinstance(block, Paragraph):
        yield block.inlines
    elif isinstance(block, ListBlock):
        yield from block.items
    elif isinstance(block, Table):
        yield from block.header
        for row in block.rows:
            yield from row
    elif isinstance(block, Footnotes):
        for note in block.notes:
            yield note.inlines


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
        for article in self.articles:
            found.extend(b for b in walk_blocks(article.blocks) if isinstance(b, Image))
        return tuple(found)
