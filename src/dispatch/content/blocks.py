"""Body blocks of an article from markdown-it syntax-tree nodes: paragraphs, images, headings,
lists (nested), block quotes, tables, rules, sidebars, videos, footnotes.

Every node carries its source lines (`map`), so every problem names its line; `offset` adds
the blank lines stripped before the front matter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it.tree import SyntaxTreeNode

from dispatch.content.images import checked_image
from dispatch.content.inlines import (
    HTTP_URL_RE,
    FootnoteNumbers,
    InlineReader,
    plain_lines,
    plain_text,
)
from dispatch.content.model import (
    Block,
    Cell,
    Footnote,
    Footnotes,
    Heading,
    Image,
    Inline,
    ListBlock,
    Paragraph,
    Quote,
    Rule,
    Sidebar,
    Table,
    Text,
    Video,
)
from dispatch.content.problems import Problems

_HEADING_NO_SPACE_RE = re.compile(r"^#{1,6}[^#\s]")
_ALIGN_RE = re.compile(r"text-align:\s*(left|center|right)")


@dataclass
class FootnoteDefs:
    """Every `[^label]: note` of the document, read once, whichever article cites it."""

    nodes: dict[str, SyntaxTreeNode] = field(default_factory=dict)
    read: dict[str, tuple[Inline, ...]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)


@dataclass
class BlockReader:
    """Turns nodes into blocks for one document; `numbers` is reset per article."""

    problems: Problems
    source_dir: Path | None
    lines: Sequence[str]
    offset: int
    defs: FootnoteDefs = field(default_factory=FootnoteDefs)
    numbers: FootnoteNumbers = field(default_factory=FootnoteNumbers)
    image_bytes: list[bytes] = field(default_factory=list)

    def line(self, node: SyntaxTreeNode) -> int:
        return (node.map[0] if node.map else 0) + 1 + self.offset

    def inlines(self, nodes: Iterable[SyntaxTreeNode], line: int) -> tuple[Inline, ...]:
        reader = InlineReader(self.problems, line, self.numbers, self.defs.nodes.__contains__)
        return reader.read(nodes)

    # --- one block ------------------------------------------------------------------------

    def blocks(self, nodes: Iterable[SyntaxTreeNode], in_sidebar: bool = False) -> list[Block]:
        """Blocks of body nodes; sidebars are allowed only at the article's own level."""
        out: list[Block] = []
        for node in nodes:
            out.extend(self.block(node, in_sidebar))
        return out

    def block(self, node: SyntaxTreeNode, in_sidebar: bool) -> list[Block]:
        kind = node.type
        line = self.line(node)
        if kind == "paragraph":
            return self.paragraph(node)
        if kind == "heading":
            return self.heading(node)
        if kind in ("bullet_list", "ordered_list"):
            return self.list_block(node)
        if kind == "blockquote":
            return [Quote(tuple(self.blocks(node.children, True)), line=line)]
        if kind == "table":
            return [self.table(node)]
        if kind == "hr":
            return [Rule(line=line)]
        if kind == "dispatch_marker":
            video = self.marker(node)
            return [video] if video else []
        if kind == "container_sidebar":
            if in_sidebar:  # the nested opener is dropped, its content kept in place
                self.problems.add(line, "nested_block")
                return self.blocks(node.children, True)
            return self.sidebar(node, node.children)
        return []  # footnote definitions (read apart) and article metadata (the walker's)

    def paragraph(self, node: SyntaxTreeNode) -> list[Block]:
        """A paragraph; lines that hold only an image become image blocks of their own."""
        start = self.line(node)
        raw_first = self.lines[start - 1].strip() if start - 1 < len(self.lines) else ""
        if _HEADING_NO_SPACE_RE.match(raw_first):
            self.problems.add(start, "heading_space")
        children = node.children[0].children if node.children else []
        out: list[Block] = []
        pending: list[SyntaxTreeNode] = []
        pending_line = start
        for number, segment in enumerate(_segments(children)):
            seg_line = start + number
            image = _image_only(segment)
            if image is None and not _starts_like_image(segment):
                if not pending:
                    pending_line = seg_line
                pending.extend(segment)
                continue
            if pending:
                out.append(self._para(pending, pending_line))
                pending = []
            if image is None:
                self.problems.add(seg_line, "bad_image_syntax")
                continue
            found = self.image(image, seg_line)
            if found is not None:
                out.append(found)
        if pending:
            out.append(self._para(pending, pending_line))
        return out

    def _para(self, nodes: list[SyntaxTreeNode], line: int) -> Paragraph:
        while nodes and nodes[-1].type in ("softbreak", "hardbreak"):
            nodes = nodes[:-1]
        return Paragraph(self.inlines(nodes, line), line=line)

    def image(self, node: SyntaxTreeNode, line: int) -> Image | None:
        src = str(node.attrs.get("src", ""))
        caption = str(node.attrs.get("title", "") or "")
        found, digest = checked_image(
            self.problems, self.source_dir, src, node.content, caption, line
        )
        if digest:
            self.image_bytes.append(digest)
        return found

    def heading(self, node: SyntaxTreeNode) -> list[Block]:
        """`###` or `####` inside an article; other levels and empty titles are problems."""
        line = self.line(node)
        level = int(node.tag[1:])
        title = plain_text(node.children[0].children if node.children else [])
        if level not in (3, 4):
            self.problems.add(line, "bad_heading_level")
        elif not title:
            self.problems.add(line, "empty_heading")
        else:
            return [Heading(level, title, line=line)]
        return []

    def list_block(self, node: SyntaxTreeNode) -> list[Block]:
        """A list (items may hold blocks). An unindented image line right under an item ends
        the list, as it always did: the image follows the list, and the items after it
        (if any) form a list of their own."""
        ordered = node.type == "ordered_list"
        start = int(str(node.attrs.get("start", 1))) if ordered else 1
        out: list[Block] = []
        items: list[tuple[Inline, ...]] = []
        children: list[tuple[Block, ...]] = []
        line = self.line(node)
        for item in node.children:
            line = line or self.line(item)
            blocks = self.blocks(item.children, True)
            first = blocks[0] if blocks else None
            if isinstance(first, Paragraph) and first.line == self.line(item):
                items.append(first.inlines)
                blocks = blocks[1:]
            else:
                items.append(())
            cut = next((i for i, b in enumerate(blocks) if self._lazy_image(b)), len(blocks))
            children.append(tuple(blocks[:cut]))
            if cut < len(blocks):
                out.append(_list(ordered, items, children, line, start))
                out.extend(blocks[cut:])
                start += len(items)
                items, children = [], []
                line = 0
        if items:
            out.append(_list(ordered, items, children, line, start))
        return out

    def _lazy_image(self, block: Block) -> bool:
        if not isinstance(block, Image) or not 0 < block.line <= len(self.lines):
            return False
        raw = self.lines[block.line - 1]
        return raw[:1] not in (" ", "\t")

    def table(self, node: SyntaxTreeNode) -> Table:
        header: tuple[Cell, ...] = ()
        rows: list[tuple[Cell, ...]] = []
        align: tuple[str, ...] = ()
        for part in node.children:
            for row in part.children:
                cells = tuple(self._cell(cell, self.line(row)) for cell in row.children)
                if part.type == "thead":
                    header = cells
                    align = tuple(_align(cell) for cell in row.children)
                else:
                    rows.append(cells)
        return Table(header, tuple(rows), align, line=self.line(node))

    def _cell(self, cell: SyntaxTreeNode, line: int) -> Cell:
        return self.inlines(cell.children[0].children if cell.children else [], line)

    def marker(self, node: SyntaxTreeNode) -> Video | None:
        """`::: video label | url`; a bare `:::` here closes nothing; other kinds are unknown."""
        line = self.line(node)
        kind, arg = node.meta["kind"], node.meta["arg"]
        if not kind or node.meta.get("closer"):
            self.problems.add(line, "stray_close")
            return None
        if kind != "video":
            self.problems.add(line, "unknown_block", kind=kind)
            return None
        label, sep, url = arg.partition("|")
        if not sep or not label.strip() or not url.strip():
            self.problems.add(line, "bad_video")
            return None
        if not HTTP_URL_RE.match(url.strip()):
            self.problems.add(line, "bad_url", url=url.strip())
            return None
        return Video(label.strip(), url.strip(), line=line)

    def sidebar(self, node: SyntaxTreeNode, content: Sequence[SyntaxTreeNode]) -> list[Block]:
        line = self.line(node)
        title = str(node.info).strip().partition(" ")[2].strip()
        blocks = self.blocks(content, True)
        if not blocks:
            self.problems.add(line, "empty_sidebar", title=title)
        return [Sidebar(title, tuple(blocks), line=line)]

    # --- footnotes ------------------------------------------------------------------------

    def collect_footnotes(self, root: SyntaxTreeNode) -> None:
        """Find every definition before any article is read (a note may follow its use)."""
        for node in _walk(root):
            if node.type != "footnote_reference":
                continue
            label = str(node.meta.get("label", ""))
            if label in self.defs.nodes:
                self.problems.add(self.line(node), "duplicate_footnote", label=label)
            else:
                self.defs.nodes[label] = node

    def article_footnotes(self) -> Footnotes | None:
        """The notes the article just read cited, numbered as cited; None if it cited none."""
        notes: list[Footnote] = []
        numbers, self.numbers = self.numbers, FootnoteNumbers()
        for label, number in numbers.numbers.items():
            node = self.defs.nodes.get(label)
            if node is None:
                continue
            self.defs.used.add(label)
            if label not in self.defs.read:
                self.defs.read[label] = self._note_inlines(node)
            notes.append(Footnote(number, label, self.defs.read[label], line=self.line(node)))
        return Footnotes(tuple(notes), line=notes[0].line) if notes else None

    def _note_inlines(self, node: SyntaxTreeNode) -> tuple[Inline, ...]:
        pieces: list[Inline] = []
        for para in (n for n in node.children if n.type == "paragraph"):
            if pieces:
                pieces.append(Text(" "))
            pieces.extend(self.inlines(para.children[0].children, self.line(para)))
        self.numbers = FootnoteNumbers()  # a note citing a note numbers apart; never kept
        return tuple(pieces)

    def unused_footnotes(self) -> None:
        for label, node in self.defs.nodes.items():
            if label not in self.defs.used:
                self.problems.add(self.line(node), "unused_footnote", label=label)


def _walk(node: SyntaxTreeNode) -> Iterable[SyntaxTreeNode]:
    for child in node.children:
        yield child
        if child.type != "inline":
            yield from _walk(child)


def _segments(children: Sequence[SyntaxTreeNode]) -> list[list[SyntaxTreeNode]]:
    """Inline nodes split at line breaks (each segment keeps its trailing break)."""
    out: list[list[SyntaxTreeNode]] = [[]]
    for child in children:
        out[-1].append(child)
        if child.type in ("softbreak", "hardbreak"):
            out.append([])
    if not out[-1]:
        out.pop()
    return out


def _image_only(segment: list[SyntaxTreeNode]) -> SyntaxTreeNode | None:
    breaks = ("softbreak", "hardbreak")
    content = [
        n for n in segment if n.type not in breaks and (n.type != "text" or n.content.strip())
    ]
    return content[0] if len(content) == 1 and content[0].type == "image" else None


def _starts_like_image(segment: list[SyntaxTreeNode]) -> bool:
    text = "".join(plain_lines(segment[:1])) if segment else ""
    first = segment[0] if segment else None
    return (first is not None and first.type == "image") or text.lstrip().startswith("![")


def _list(
    ordered: bool,
    items: list[tuple[Inline, ...]],
    children: list[tuple[Block, ...]],
    line: int,
    start: int,
) -> ListBlock:
    nested = tuple(children) if any(children) else ()
    return ListBlock(ordered, tuple(items), line=line, start=start, children=nested)


def _align(cell: SyntaxTreeNode) -> str:
    m = _ALIGN_RE.search(str(cell.attrs.get("style", "")))
    return m.group(1) if m else ""
