"""Parse and validate an issue source (docs/issue-format.md) into an `IssueDoc`.

The source is Markdown read by markdown-it-py (`content.markdown`: CommonMark, GFM tables,
footnotes, `:::` sidebars) under a YAML front matter (`content.frontmatter`). This module walks
the syntax tree into sections and articles; `content.blocks` turns body nodes into blocks.
Every problem is reported with its exact line, all at once (`check_source` returns them for
the browser editor), so an editor fixes the whole file in one pass. Nothing here touches the
database; `content.store` does that with a document that parsed cleanly.
"""

from __future__ import annotations

import hashlib
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from markdown_it.tree import SyntaxTreeNode

from dispatch.content.blocks import BlockReader
from dispatch.content.frontmatter import Values, build_meta, parse_date, read_front_matter
from dispatch.content.images import image_problem
from dispatch.content.inlines import HTTP_URL_RE, inlines_to_text, join_lines, plain_text
from dispatch.content.markdown import CLOSER_RE, parse_tree
from dispatch.content.model import (
    Article,
    Block,
    IssueDoc,
    IssueMeta,
    Link,
    Section,
    Video,
    inline_runs,
    walk_blocks,
)
from dispatch.content.problems import IssueSourceError, Problem, Problems

__all__ = [
    "SOURCE_FILE_NAME",
    "IssueSourceError",
    "Problem",
    "check_source",
    "image_problem",
    "inlines_to_text",
    "join_lines",
    "parse_issue",
    "parse_issue_text",
    "resolve_source",
]

SOURCE_FILE_NAME = "issue.md"
ARTICLE_META_KEYS = ("source", "source_url", "date", "author")
CONTROL_CHAR_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
# a body node right under the article metadata (no blank line) that is not metadata
_META_GAP_KINDS = ("paragraph", "bullet_list", "ordered_list", "blockquote", "table", "hr")


def resolve_source(path: str | Path) -> Path:
    """The issue.md for a path that names the file or its folder."""
    p = Path(path)
    return p / SOURCE_FILE_NAME if p.is_dir() else p


def parse_issue(path: str | Path) -> IssueDoc:
    """Parse the issue at `path` (issue.md or its folder); raise IssueSourceError on any problem."""
    file = resolve_source(path)
    label = str(file)
    if not file.is_file():
        raise IssueSourceError([Problem(label, 0, Problems.message("not_found"))])
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
        raise IssueSourceError([Problem(label, line, Problems.message("not_utf8"))]) from None
    return parse_issue_text(text, file.parent, label)


def parse_issue_text(text: str, source_dir: str | Path, label: str = SOURCE_FILE_NAME) -> IssueDoc:
    """Parse source text whose images live under `source_dir` (used to re-load stored issues)."""
    return _Parser(text, Path(source_dir).resolve(), label).run()


def check_source(
    text: str, source_dir: str | Path | None = None, label: str = SOURCE_FILE_NAME
) -> list[Problem]:
    """Every problem of a source, by line (empty when it is fine): for an editor that shows
    them as the text is typed. Without `source_dir` image files are not looked at."""
    folder = Path(source_dir).resolve() if source_dir is not None else None
    try:
        _Parser(text, folder, label).run()
    except IssueSourceError as exc:
        return list(exc.problems)
    return []


@dataclass
class _Draft:
    """An article being read: metadata and blocks, checked when it ends."""

    title: str
    line: int
    meta: dict[str, tuple[str, int]] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    meta_end: int | None = None  # 0-based line after the heading or metadata, until the body


_SectionDraft = tuple[str, int, list[_Draft]]


class _Parser:
    def __init__(self, text: str, source_dir: Path | None, label: str):
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.lines = self.text.split("\n")
        self.source_dir = source_dir
        self.problems = Problems(label)
        self.offset = next((i for i, raw in enumerate(self.lines) if raw.strip()), 0)
        self.reader = BlockReader(self.problems, source_dir, self.lines, self.offset)
        self.sections: list[_SectionDraft] = []
        self.article: _Draft | None = None

    def run(self) -> IssueDoc:
        """Front matter, then the body tree (sections, articles, blocks), then the checked
        document, or IssueSourceError listing every problem found."""
        self.control_characters()
        tree = parse_tree("\n".join(self.lines[self.offset :]))
        meta, cover_bytes = self.front_matter(tree)
        self.reader.collect_footnotes(tree)
        self.walk(tree.children)
        self.end_article()
        self.reader.unused_footnotes()
        if not self.sections and not self.problems.items:
            self.problems.add(len(self.lines), "no_sections")
        return self.document(meta, cover_bytes)

    def control_characters(self) -> None:
        """Control characters (other than tab) have no place in an issue: HTML forbids them
        and mail clients show them as boxes; name each line that has one."""
        for number, line in enumerate(self.lines, start=1):
            m = CONTROL_CHAR_RE.search(line)
            if m:
                char = f"U+{ord(m.group()):04X}"
                self.problems.add(number, "control_char", char=char, col=m.start() + 1)

    def front_matter(self, tree: SyntaxTreeNode) -> tuple[IssueMeta | None, bytes]:
        header_line = self.offset + 1
        first = tree.children[0] if tree.children else None
        if first is None or first.type != "front_matter":
            opened = self.lines[self.offset].strip() == "---"
            self.problems.add(header_line, "unclosed_front_matter" if opened else "no_front_matter")
            if opened:  # where the body starts is unknown: nothing more can be said
                raise IssueSourceError(self.problems.sorted())
            return build_meta(Values(), self.problems, header_line, self.source_dir)
        values = read_front_matter(first.content, header_line + 1, self.problems)
        return build_meta(values, self.problems, header_line, self.source_dir)

    # --- the body -------------------------------------------------------------------------

    def walk(self, nodes: list[SyntaxTreeNode]) -> None:
        queue = deque(nodes)
        while queue:
            node = queue.popleft()
            kind = node.type
            if kind in ("front_matter", "footnote_reference"):
                continue
            if kind == "heading" and node.tag in ("h1", "h2"):
                self.heading(node)
            elif kind == "article_meta":
                self.article_meta(node)
            elif self.article is None:
                key = "text_before_section" if not self.sections else "text_outside_article"
                self.problems.add(self.reader.line(node), key)
            elif kind == "container_sidebar":
                queue.extendleft(reversed(self.sidebar(node, self.article)))
            else:
                self.meta_gap(node, self.article)
                self.article.blocks.extend(self.reader.block(node, False))

    def heading(self, node: SyntaxTreeNode) -> None:
        """`# Section` or `## Article`."""
        self.end_article()
        line = self.reader.line(node)
        title = plain_text(node.children[0].children if node.children else [])
        if node.tag == "h1":
            if not title:
                self.problems.add(line, "empty_section_title")
            self.sections.append((title, line, []))
            return
        if not self.sections:
            self.problems.add(line, "text_before_section")
            self.sections.append(("", line, []))
        if not title:
            self.problems.add(line, "empty_article_title")
        self.article = _Draft(title, line, meta_end=node.map[1] if node.map else None)
        self.sections[-1][2].append(self.article)

    def end_article(self) -> None:
        if self.article is not None:
            notes = self.reader.article_footnotes()
            if notes is not None:
                self.article.blocks.append(notes)
        self.article = None

    def article_meta(self, node: SyntaxTreeNode) -> None:
        article = self.article
        assert article is not None  # the rule only matches right under an article heading
        for key, value, line0 in node.meta["entries"]:
            line = line0 + 1 + self.offset
            if key not in ARTICLE_META_KEYS:
                self.problems.add(line, "unknown_article_key", name=key)
            elif key in article.meta:
                self.problems.add(line, "duplicate_key", name=key)
            else:
                article.meta[key] = (value, line)
        article.meta_end = node.map[1] if node.map else None

    def meta_gap(self, node: SyntaxTreeNode, article: _Draft) -> None:
        """Text right under the metadata, with no blank line between, is a mistake."""
        gap, article.meta_end = article.meta_end, None
        if gap is None or not node.map or node.map[0] != gap or node.type not in _META_GAP_KINDS:
            return
        first = self.lines[self.reader.line(node) - 1].strip()
        if node.type != "paragraph" or not first.startswith("!["):
            self.problems.add(self.reader.line(node), "bad_meta_line")

    def sidebar(self, node: SyntaxTreeNode, article: _Draft) -> list[SyntaxTreeNode]:
        """The sidebar's blocks; an unclosed one ends at the next `#`/`##` heading, and what
        follows that heading goes back to the body."""
        article.meta_end = None
        children = list(node.children)
        cut = next(
            (i for i, c in enumerate(children) if c.type == "heading" and c.tag in ("h1", "h2")),
            len(children),
        )
        end = (node.map[1] if node.map else 0) + self.offset
        closed = end < len(self.lines) and CLOSER_RE.match(self.lines[end].strip()) is not None
        if cut < len(children) or not closed:
            self.problems.add(self.reader.line(node), "unclosed_block", kind="sidebar")
        article.blocks.extend(self.reader.sidebar(node, children[:cut]))
        return children[cut:]

    # --- the document ---------------------------------------------------------------------

    def document(self, meta: IssueMeta | None, cover_bytes: bytes) -> IssueDoc:
        built = self.build()
        if self.problems.items or meta is None:
            if not self.problems.items:  # meta failed without a message: cannot happen
                self.problems.add(self.offset + 1, "no_front_matter")
            raise IssueSourceError(self.problems.sorted())
        digest = hashlib.sha256(self.text.encode("utf-8"))
        for blob in ([cover_bytes] if cover_bytes else []) + self.reader.image_bytes:
            digest.update(b"\0")
            digest.update(blob)
        return IssueDoc(
            meta=meta,
            sections=built,
            source_dir=self.source_dir or Path(),
            source_text=self.text,
            content_hash=digest.hexdigest(),
            links=ordered_links(built),
        )

    def build(self) -> tuple[Section, ...]:
        out: list[Section] = []
        anchor = 0
        for title, line, drafts in self.sections:
            if not drafts:
                self.problems.add(line, "empty_section", title=title)
            articles: list[Article] = []
            for number, draft in enumerate(drafts, start=1):
                anchor += 1
                articles.append(self.checked_article(draft, number, anchor))
            out.append(Section(title=title, articles=tuple(articles), line=line))
        return tuple(out)

    def checked_article(self, d: _Draft, number: int, anchor: int) -> Article:
        for key in ("source_url", "date"):
            if key not in d.meta or not d.meta[key][0]:
                self.problems.add(d.line, "missing_article_key", title=d.title, name=key)
        if not d.blocks:
            self.problems.add(d.line, "empty_article", title=d.title)
        source_url, url_line = d.meta.get("source_url", ("", d.line))
        if source_url and not HTTP_URL_RE.match(source_url):
            self.problems.add(url_line, "bad_source_url", url=source_url)
        when = None
        if "date" in d.meta and d.meta["date"][0]:
            when = parse_date(self.problems, "date", *d.meta["date"])
        return Article(
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


def ordered_links(sections: tuple[Section, ...]) -> tuple[str, ...]:
    """The link table in reading order: each article's source_url, then its body links."""
    seen: dict[str, None] = {}
    for section in sections:
        for article in section.articles:
            seen.setdefault(article.source_url, None)
            for block in walk_blocks(article.blocks):
                if isinstance(block, Video):
                    seen.setdefault(block.url, None)
                for run in inline_runs(block):
                    for piece in run:
                        if isinstance(piece, Link):
                            seen.setdefault(piece.url, None)
    return tuple(seen)
