"""Headings an editor marked only by bold and font size (as real bulletins are written).

Why a mammoth document transform: mammoth reads each run's bold and font size, then maps
paragraph *styles* to HTML. A paragraph with no heading style but plainly a title (short, all
bold, larger than the body text, or 【…】) is given the heading style it stands for before the
HTML is written, and the reason is reported. The tiers, from the sizes in use:
- 【质量要闻】-like paragraphs are sections; so is the largest bold size when two sizes above
  the body's are in use and no 【…】 is (the next one is then an article title);
- a single paragraph of the very largest size near the top is the bulletin's title;
- other bold paragraphs larger than the body, or followed by a 来源： line, are article
  titles; bold paragraphs at the body's size are subheadings.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from mammoth import documents
from mammoth.transforms import get_descendants_of_type

from dispatch.content.docx_import.derive import find_period
from dispatch.content.docx_import.prepass import BOOKMARK, MARK

SECTION_MARK_RE = re.compile(r"^\s*【([^【】]{1,30})】\s*$")
SOURCE_LINE_RE = re.compile(r"^\s*(来源|来源于|稿源|出处|文章来源)\s*[：:]")
MAX_HEADING_CHARS = 80
PLAIN_STYLES = {"", "normal", "正文", "body text", "default paragraph font", "plain text"}
STYLE_FOR = {1: "Heading 1", 2: "Heading 2", 3: "Heading 3", 0: "Title"}
CODE_FOR = {1: "section_by_format", 2: "article_by_format", 3: "subheading_by_format"}


@dataclass
class Para:
    number: int
    text: str
    bold: bool
    size: float | None
    plain: bool  # no heading/title/list style of its own, not inside a 专栏 box


def _number(paragraph: Any) -> int:
    for mark in get_descendants_of_type(paragraph, documents.Bookmark):
        if mark.name.startswith(BOOKMARK):
            return int(mark.name[len(BOOKMARK) :])
    return 0


def _para(paragraph: Any) -> Para:
    runs = [
        r
        for r in get_descendants_of_type(paragraph, documents.Run)
        if "".join(t.value for t in get_descendants_of_type(r, documents.Text)).strip()
    ]
    text = "".join(t.value for t in get_descendants_of_type(paragraph, documents.Text))
    sizes = [r.font_size for r in runs if r.font_size]
    style = (paragraph.style_name or "").strip().lower()
    return Para(
        number=_number(paragraph),
        text=text.strip(),
        bold=bool(runs) and all(r.is_bold for r in runs),
        size=max(sizes) if sizes else None,
        plain=style in PLAIN_STYLES and paragraph.numbering is None,
    )


def _body_size(paras: list[Para]) -> float | None:
    weights: Counter[float] = Counter()
    for p in paras:
        if not p.bold and p.size:
            weights[p.size] += len(p.text)
    return weights.most_common(1)[0][0] if weights else None


def _is_candidate(p: Para) -> bool:
    return p.plain and p.bold and 0 < len(p.text) <= MAX_HEADING_CHARS and not p.text.endswith("。")


def classify(paras: list[Para]) -> dict[int, tuple[int, str]]:
    """paragraph number -> (level: 0 title, 1 section, 2 article, 3 subheading; why)."""
    body = _body_size(paras) or 10.5
    marked = {
        p.number
        for p in paras
        if p.plain and SECTION_MARK_RE.match(p.text) and not find_period(p.text)
    }
    bold = [p for p in paras if _is_candidate(p) and p.number not in marked]
    larger = sorted({p.size for p in bold if p.size and p.size > body}, reverse=True)
    out: dict[int, tuple[int, str]] = {n: (1, "【…】") for n in marked}
    top = [p for p in bold if larger and p.size == larger[0]]
    if len(top) == 1 and top[0].number <= 6:
        out[top[0].number] = (0, f"{top[0].size:g} pt")
        larger = larger[1:]
    section_size = larger[0] if len(larger) >= 2 and not marked else None
    following = {a.number: b for a, b in zip(paras, paras[1:], strict=False)}
    for p in bold:
        if p.number in out:
            continue
        nxt = following.get(p.number)
        if section_size is not None and p.size == section_size:
            out[p.number] = (1, f"bold, {p.size:g} pt")
        elif p.size and p.size > body:
            out[p.number] = (2, f"bold, {p.size:g} pt")
        elif nxt is not None and SOURCE_LINE_RE.match(nxt.text):
            out[p.number] = (2, "bold, 来源 line below")
        else:
            out[p.number] = (3, "bold")
    return out


def _outside_boxes(paras: list[Para]) -> list[Para]:
    """The paragraphs in document order, those inside a box marked not plain (the walker
    reads a box's first line as its title), the prepass's marker lines left out."""
    out, depth = [], 0
    for p in paras:
        if p.text.startswith(MARK) or p.text.startswith(MARK.lstrip("\u2063")):
            depth += 1 if "begin" in p.text else -1 if depth else 0
            continue
        if depth:
            p.plain = False
        out.append(p)
    return out


class HeadingTransform:
    """mammoth's transform_document: restyles the paragraphs `classify` picked."""

    def __init__(self) -> None:
        self.found: dict[int, tuple[int, str]] = {}
        self.texts: dict[int, str] = {}

    def __call__(self, document: Any) -> Any:
        paras = _outside_boxes(
            [_para(p) for p in get_descendants_of_type(document, documents.Paragraph)]
        )
        self.found = classify(paras)
        self.texts = {p.number: p.text for p in paras if p.number in self.found}
        return self._restyle(document)

    def _restyle(self, element: Any) -> Any:
        if isinstance(element, documents.HasChildren):
            element = element.copy(children=[self._restyle(c) for c in element.children])
        if isinstance(element, documents.Paragraph):
            hit = self.found.get(_number(element))
            if hit is not None:
                style = STYLE_FOR[hit[0]]
                return element.copy(style_id=style.replace(" ", ""), style_name=style)
        return element

    def guesses(self) -> list[tuple[str, int, str, str]]:
        """(report code, paragraph, text, why) for every heading found by format."""
        return [
            (CODE_FOR[level], n, self.texts.get(n, ""), why)
            for n, (level, why) in sorted(self.found.items())
            if level in CODE_FOR
        ]
