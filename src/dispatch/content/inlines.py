"""Inline markup of one paragraph, list item, table cell or footnote, as a flat run of model
pieces: Text, Strong, Emphasis, Link, FootnoteRef.

Why flat: renderers escape each piece their own way and never see markup. When styles nest,
the outer wins its text (a link keeps its URL and plain text; bold beats italic). Lines of one
paragraph join without a space between CJK characters (the PDF and Word broke lines
mid-sentence) and with one between Latin words, as the hand-written parser did.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from markdown_it.tree import SyntaxTreeNode

from dispatch.content.model import Emphasis, FootnoteRef, Inline, Link, Strong, Text
from dispatch.content.problems import Problems

HTTP_URL_RE = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)
_BREAKS = ("softbreak", "hardbreak")
_PLAIN, _EM, _STRONG = 0, 1, 2


def join_lines(lines: list[str]) -> str:
    """Join a paragraph's lines: no space between CJK (the PDF broke lines mid-sentence)."""
    out = ""
    for raw in lines:
        piece = raw.strip()
        if not piece:
            continue
        if out and needs_space(out[-1], piece[0]):
            out += " "
        out += piece
    return out


def needs_space(left: str, right: str) -> bool:
    return left.isascii() and right.isascii() and not left.isspace()


def inlines_to_text(inlines: Iterable[Inline]) -> str:
    return "".join(i.text for i in inlines)


@dataclass
class FootnoteNumbers:
    """Numbers an article's footnote references 1, 2, 3 in order of first use."""

    numbers: dict[str, int] = field(default_factory=dict)

    def number(self, label: str) -> int:
        return self.numbers.setdefault(label, len(self.numbers) + 1)


@dataclass
class InlineReader:
    """Reads inline nodes; `line` follows the line breaks, so a bad link is named at its line."""

    problems: Problems
    line: int
    footnotes: FootnoteNumbers
    is_defined: Callable[[str], bool]
    out: list[tuple[int, str, str]] = field(default_factory=list)  # (style, text, url)
    refs: list[tuple[int, str]] = field(default_factory=list)  # positions of footnote refs

    def read(self, nodes: Iterable[SyntaxTreeNode]) -> tuple[Inline, ...]:
        self.out, self.refs = [], []
        for node in nodes:
            self._node(node, _PLAIN)
        return self._pieces()

    def _node(self, node: SyntaxTreeNode, style: int) -> None:
        kind = node.type
        if kind == "text":
            self.out.append((style, node.content, ""))
        elif kind in _BREAKS:
            self.line += 1
            self.out.append((style, "\n", ""))
        elif kind in ("strong", "em"):
            inner = max(style, _STRONG if kind == "strong" else _EM)
            for child in node.children:
                self._node(child, inner)
        elif kind == "link":
            self._link(node)
        elif kind == "footnote_ref":
            self._footnote(str(node.meta.get("label", "")))
        elif kind == "image":
            self.problems.add(self.line, "image_inline")
        else:  # anything else markdown-it may grow: its text, never its markup
            self.out.append((style, node.content, ""))

    def _link(self, node: SyntaxTreeNode) -> None:
        url = str(node.attrs.get("href", ""))
        if not HTTP_URL_RE.match(url):
            self.problems.add(self.line, "bad_url", url=url)
        start = self.line
        text = join_lines(plain_lines(node.children))
        self.line = start + sum(1 for _ in _descendants(node) if _.type in _BREAKS)
        self.out.append((-1, text, url))

    def _footnote(self, label: str) -> None:
        if not self.is_defined(label):
            self.problems.add(self.line, "undefined_footnote", label=label)
        self.refs.append((len(self.out), label))
        self.out.append((-2, label, ""))

    def _pieces(self) -> tuple[Inline, ...]:
        """Merge runs of one style; a line break becomes a space or nothing (CJK)."""
        runs: list[tuple[int, str, str]] = []
        for index, (style, text, url) in enumerate(self.out):
            if text == "\n":
                before = _last_char(self.out[:index])
                after = _first_char(self.out[index + 1 :])
                if not (before and after and needs_space(before, after)):
                    continue
                text = " "
            if runs and style >= 0 and runs[-1][0] == style:
                runs[-1] = (style, runs[-1][1] + text, "")
            elif text or style < 0:
                runs.append((style, text, url))
        return tuple(self._piece(style, text, url) for style, text, url in runs)

    def _piece(self, style: int, text: str, url: str) -> Inline:
        if style == -1:
            return Link(text, url)
        if style == -2:
            return FootnoteRef(self.footnotes.number(text), text)
        return (Text, Emphasis, Strong)[style](text)


def _last_char(out: list[tuple[int, str, str]]) -> str:
    for style, text, _ in reversed(out):
        if style == -2:
            return "]"
        if text and text != "\n":
            return text[-1]
    return ""


def _first_char(out: list[tuple[int, str, str]]) -> str:
    for style, text, _ in out:
        if style == -2:
            return "["
        if text and text != "\n":
            return text[0]
    return ""


def _descendants(node: SyntaxTreeNode) -> Iterable[SyntaxTreeNode]:
    for child in node.children:
        yield child
        yield from _descendants(child)


def plain_lines(nodes: Iterable[SyntaxTreeNode]) -> list[str]:
    """The text of inline nodes, one string per source line, markup dropped."""
    lines = [""]
    for node in nodes:
        if node.type in _BREAKS:
            lines.append("")
        elif node.type == "footnote_ref":
            continue
        elif node.children:
            inner = plain_lines(node.children)
            lines[-1] += inner[0]
            lines.extend(inner[1:])
        else:
            lines[-1] += node.content
    return lines


def plain_text(nodes: Iterable[SyntaxTreeNode]) -> str:
    return join_lines(plain_lines(nodes))
