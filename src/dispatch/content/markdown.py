"""The markdown-it-py parser configured for the issue format (docs/issue-format.md).

CommonMark with GFM tables, the front-matter, `:::` container and footnote plugins of
mdit-py-plugins, and two small block rules of our own: the article metadata lines right under
an article heading, and the one-line `:::` markers (`::: video label | url`, and `:::` lines
that open nothing known or close nothing, which the parser reports).

Switched off, because the format never had them and an editor's text must not change meaning
under them: indented and fenced code (Word pastes indented paragraphs), setext headings (a
`---` under a paragraph would start an article), raw HTML (escaped as text), link reference
definitions, inline code, autolinks, entities and `_` emphasis (italics are `*text*`).
Links are taken as written (no percent-encoding, no scheme filter): the parser itself refuses
anything but http(s), by line.
"""

from __future__ import annotations

import re
import unicodedata

from markdown_it import MarkdownIt
from markdown_it.common.utils import isMdAsciiPunct, isPunctChar
from markdown_it.rules_block import StateBlock
from markdown_it.rules_inline import StateInline
from markdown_it.rules_inline.state_inline import Delimiter
from markdown_it.tree import SyntaxTreeNode
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.footnote import footnote_plugin
from mdit_py_plugins.front_matter import front_matter_plugin

META_LINE_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:\s?(.*)$")
CLOSER_RE = re.compile(r"^:{3,}\s*$")
_NOT_META = ("#", ":::", "![", "- ", "* ")
_INTERRUPTS = ["paragraph", "reference", "blockquote", "list"]


def _line_text(state: StateBlock, line: int) -> str:
    return state.src[state.bMarks[line] + state.tShift[line] : state.eMarks[line]]


def _article_meta(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """`key: value` lines directly under a `##` heading, up to the first blank line."""
    tokens = state.tokens
    if len(tokens) < 3 or tokens[-1].type != "heading_close" or tokens[-1].tag != "h2":
        return False
    heading = tokens[-3]
    if heading.map is None or heading.map[1] != start:
        return False
    entries: list[tuple[str, str, int]] = []
    line = start
    while line < end and not state.isEmpty(line):
        text = _line_text(state, line).strip()
        m = META_LINE_RE.match(text)
        if not m or text.startswith(_NOT_META):
            break
        entries.append((m.group(1), m.group(2).strip(), line))
        line += 1
    if not entries:
        return False
    if not silent:
        token = state.push("article_meta", "", 0)
        token.map = [start, line]
        token.meta = {"entries": entries}
        token.block = True
        state.line = line
    return True


def _marker(state: StateBlock, start: int, end: int, silent: bool) -> bool:
    """A `:::` line that is not a sidebar: a video, an unknown kind, or a stray close."""
    if state.sCount[start] - state.blkIndent >= 4:
        return False
    text = _line_text(state, start).strip()
    if not text.startswith(":::"):
        return False
    rest = text[3:].strip()
    kind, _, arg = rest.partition(" ")
    if kind == "sidebar":
        return False  # the container plugin's
    if not silent:
        token = state.push("dispatch_marker", "", 0)
        token.map = [start, start + 1]
        token.meta = {"kind": kind, "arg": arg, "closer": bool(CLOSER_RE.match(text))}
        token.block = True
        state.line = start + 1
    return True


def _literal_underscores(state: StateInline, silent: bool) -> bool:
    """Underscores stay text: italics are `*text*` only. Editors' text and pasted names hold
    `_` and `__` (file names, codes, marker look-alikes), which never meant emphasis here."""
    if state.src[state.pos] != "_":
        return False
    end = state.pos
    while end < state.posMax and state.src[end] == "_":
        end += 1
    if not silent:
        state.pending += state.src[state.pos : end]
    state.pos = end
    return True


def _is_cjk(char: str) -> bool:
    """Chinese text and its punctuation (wide characters, and the curly quotes and dashes
    Chinese typesetting uses)."""
    return unicodedata.east_asian_width(char) in ("W", "F") or "\u2014" <= char <= "\u2026"


def _is_punct(char: str) -> bool:
    """CommonMark punctuation, except Chinese punctuation, which counts as a letter here."""
    return (isMdAsciiPunct(ord(char)) or isPunctChar(char)) and not _is_cjk(char)


def _cjk_emphasis(state: StateInline, silent: bool) -> bool:
    """CommonMark's `*` delimiters with Chinese punctuation counted as letters. CommonMark
    alone leaves `**《纲要》**印发` unbolded (a run closing after punctuation must be followed
    by space or punctuation), which is how Chinese bulletins write bold; the old parser
    bolded it. ASCII punctuation keeps its CommonMark meaning (`前*|x|*后` stays text)."""
    if silent or state.src[state.pos] != "*":
        return False
    start = end = state.pos
    while end < state.posMax and state.src[end] == "*":
        end += 1
    before = state.src[start - 1] if start > 0 else " "
    after = state.src[end] if end < state.posMax else " "
    left = not (
        after.isspace() or (_is_punct(after) and not (before.isspace() or _is_punct(before)))
    )
    right = not (
        before.isspace() or (_is_punct(before) and not (after.isspace() or _is_punct(after)))
    )
    for _ in range(end - start):
        token = state.push("text", "", 0)
        token.content = "*"
        state.delimiters.append(
            Delimiter(ord("*"), end - start, len(state.tokens) - 1, -1, left, right)
        )
    state.pos = end
    return True


def _is_sidebar(params: str, *_args: object) -> bool:
    return params.strip().split(" ", 1)[0] == "sidebar"


def build_markdown() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    md.disable(["code", "fence", "lheading", "html_block", "reference"])
    md.disable(["backticks", "html_inline", "autolink", "entity"])
    md.validateLink = lambda url: True  # type: ignore[method-assign]
    md.normalizeLink = lambda url: url  # type: ignore[method-assign]
    md.normalizeLinkText = lambda link: link  # type: ignore[method-assign]
    md.inline.ruler.before("emphasis", "literal_underscores", _literal_underscores)
    md.inline.ruler.at("emphasis", _cjk_emphasis)
    front_matter_plugin(md)
    footnote_plugin(md, inline=False, move_to_end=False, always_match_refs=True)
    container_plugin(md, "sidebar", validate=_is_sidebar)
    md.block.ruler.before("container_sidebar", "dispatch_marker", _marker, {"alt": _INTERRUPTS})
    md.block.ruler.before("table", "article_meta", _article_meta)
    return md


_MD = build_markdown()


def parse_tree(text: str) -> SyntaxTreeNode:
    """The syntax tree of `text` (which starts at its first non-blank line)."""
    return SyntaxTreeNode(_MD.parse(text))
