"""mammoth's HTML, top to bottom, into the bulletin's structure: front, sections, articles.

Why a walk over HTML rather than Markdown from a converter: the bulletin's structure is not
Markdown's. A 来源：… line after a title is the article's metadata, a short line under a
picture is its caption, the hand-typed contents list before the first section is generated
anyway, and the prepass's marker paragraphs open and close a 专栏. Each block is rendered
once to the source format's Markdown (Markdown-ready strings and Img/Box objects).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from dispatch.content.docx_import.convert import DROPPED_SRC
from dispatch.content.docx_import.derive import is_meta_line
from dispatch.content.docx_import.inline import InlineWriter, clean
from dispatch.content.docx_import.prepass import BOOKMARK, MARK
from dispatch.content.docx_import.report import ImportReport
from dispatch.content.model import CIRCLED_NUMBERS

CAPTION_HINT_RE = re.compile(r"摄|图为|图片|配图|图源|^图\s*\d|（图|\(图|供图|截图")
MAX_CAPTION_CHARS = 150
VIDEO_RE = re.compile(r"^\s*(视频链接|视频|Video)\s*[：:]", re.IGNORECASE)
MARKER_WORD = MARK.lstrip("\u2063")
BOX_TITLE_RE = re.compile(r"^\s*专栏\s*\d*")
ONCE = {
    "italic_plain",
    "quote_plain",
    "footnote_plain",
    "nested_flat",
    "heading_in_box",
    "table_flattened",
}


@dataclass
class Img:
    src: str
    alt: str
    paragraph: int | None
    caption: str = ""


@dataclass
class Box:
    title: str = ""
    blocks: list[Any] = field(default_factory=list)
    paragraph: int | None = None


@dataclass
class Art:
    title: str
    paragraph: int | None
    meta: dict[str, str] = field(default_factory=dict)
    meta_links: list[str] = field(default_factory=list)
    meta_paragraph: int | None = None
    blocks: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # footnote numbers, in order of reference


@dataclass
class Sec:
    title: str
    paragraph: int | None
    articles: list[Art] = field(default_factory=list)


@dataclass
class FrontLine:
    text: str
    paragraph: int | None
    kind: str  # title, subtitle, heading, text


@dataclass
class Walked:
    front: list[FrontLine] = field(default_factory=list)
    sections: list[Sec] = field(default_factory=list)
    cover: Img | None = None
    footnotes: dict[str, str] = field(default_factory=dict)
    paragraphs: int = 0
    images: int = 0


def para_number(el: Any) -> int | None:
    for a in el.iter("a"):
        ident = a.get("id") or ""
        if ident.startswith(BOOKMARK):
            return int(ident[len(BOOKMARK) :])
    return None


class Walker:
    """One pass over the top-level HTML elements, keeping where we are (front, section…)."""

    def __init__(self, report: ImportReport, features: Any, has_sections: bool):
        self.report = report
        self.features = features
        self.has_sections = has_sections
        self.out = Walked()
        self.article: Art | None = None
        self.box: Box | None = None
        self.box_depth = 0
        self.after_title = False
        self.said: set[str] = set()
        self.inline = InlineWriter(features, self.notice)
        self.where: int | None = None

    def notice(self, code: str, **args: Any) -> None:
        if code in ONCE and code in self.said:
            return
        self.said.add(code)
        self.report.drop(code, self.where, **args)

    # -- where blocks go -------------------------------------------------------------------

    def add(self, block: Any) -> None:
        if self.box is not None:
            self.box.blocks.append(block)
        elif self.article is not None:
            self.article.blocks.append(block)
        elif isinstance(block, Img) and not self.out.sections and self.out.cover is None:
            self.out.cover = block
            self.report.guess("cover_guess", block.paragraph)
        else:
            self.report.drop(
                "before_section" if not self.out.sections else "before_article",
                self.where,
                _block_text(block),
            )

    def last_block(self) -> Any:
        target = (
            self.box.blocks
            if self.box is not None
            else (self.article.blocks if self.article is not None else [])
        )
        return target[-1] if target else None

    # -- the walk --------------------------------------------------------------------------

    def walk(self, root: Any) -> Walked:
        for el in root:
            if not isinstance(el.tag, str):
                continue
            self.where = para_number(el) or self.where
            if el.tag == "ol" and _is_notes(el):
                self.notes(el)
                continue
            self.element(el)
        self.close_box()
        return self.out

    def element(self, el: Any) -> None:
        tag = el.tag
        if tag == "h1":
            self.section(el)
        elif tag == "h2":
            if not self.has_sections and not self.out.sections:
                self.default_section(el)
            self.article_title(el)
        elif tag in ("h3", "h4", "h5", "h6"):
            self.heading(el)
        elif tag in ("ul", "ol"):
            self.add_list(el)
        elif tag == "table":
            self.table(el)
        elif tag == "blockquote":
            self.quote(el)
        else:
            self.paragraph(el)

    def section(self, el: Any) -> None:
        self.close_box()
        title = clean(el.text_content()).strip().strip("【】").strip()
        if not title:
            return
        self.out.sections.append(Sec(title, para_number(el)))
        self.article = None
        self.out.paragraphs += 1

    def default_section(self, el: Any) -> None:
        title = "本期内容"
        self.out.sections.append(Sec(title, None))
        self.report.guess("default_section", para_number(el), title=title)

    def article_title(self, el: Any) -> None:
        self.close_box()
        title = clean(el.text_content()).strip()
        self.out.paragraphs += 1
        if not title:
            return
        if not self.out.sections:  # a title in the contents list before the first section
            self.out.front.append(FrontLine(title, para_number(el), "heading"))
            return
        self.article = Art(title, para_number(el))
        self.out.sections[-1].articles.append(self.article)
        self.after_title = True

    def heading(self, el: Any) -> None:
        text = clean(el.text_content()).strip()
        self.out.paragraphs += 1
        if not text:
            return
        if self.article is None and self.box is None:
            self.out.front.append(FrontLine(text, para_number(el), "heading"))
            return
        if self.box is not None and not self.box.title and not self.box.blocks:
            self.box.title = text
            return
        if self.box is not None:
            self.notice("heading_in_box")
            self.add(f"**{text}**")
            return
        level = 3 if el.tag == "h3" else 4
        self.add("#" * level + " " + text)

    # -- paragraphs ------------------------------------------------------------------------

    def paragraph(self, el: Any) -> None:
        raw = el.text_content() or ""
        if MARKER_WORD in raw:
            self.marker(raw)
            return
        text = clean(raw).strip()
        images = [img for img in el.iter("img")]
        if not text and not images:
            return
        self.out.paragraphs += 1
        cls = el.get("class") or ""
        if self.article is None and self.box is None and not images:
            kind = (
                "title" if "doc-title" in cls else "subtitle" if "doc-subtitle" in cls else "text"
            )
            self.out.front.append(FrontLine(text, para_number(el), kind))
            return
        if self.take_meta(el, text) or self.take_caption(el, text, cls):
            return
        self.after_title = False
        for img in images:
            self.image(img)
        body = self.inline.render(el).strip()
        if not body:
            return
        if self.box is not None and not self.box.title and _looks_like_box_title(el, text):
            self.box.title = text
            return
        video = self.video(el, text)
        self.add(video or body)
        self.note_refs()

    def take_meta(self, el: Any, text: str) -> bool:
        art = self.article
        if art is None or self.box is not None or not is_meta_line(text):
            return False
        if not self.after_title and art.meta:
            return False
        from dispatch.content.docx_import.derive import split_meta

        found = split_meta(text)
        if not found:
            return False
        for key, value in found.items():
            art.meta.setdefault(key, value)
        art.meta_links += [
            a.get("href") for a in el.iter("a") if a.get("href", "").startswith("http")
        ]
        art.meta_paragraph = art.meta_paragraph or para_number(el)
        return True

    def take_caption(self, el: Any, text: str, cls: str) -> bool:
        last = self.last_block()
        if not isinstance(last, Img) or last.caption or el.find(".//img") is not None:
            return False
        if "caption" in cls:
            last.caption = text
            return True
        if len(text) <= MAX_CAPTION_CHARS and CAPTION_HINT_RE.search(text):
            last.caption = text
            self.report.guess("caption_guess", para_number(el), text)
            return True
        return False

    def image(self, img: Any) -> None:
        src = img.get("src") or ""
        alt = clean(img.get("alt") or "").strip()
        self.out.images += 1
        if src.startswith(DROPPED_SRC):
            why = src[len(DROPPED_SRC) :]
            if why.startswith("format:"):
                self.report.drop("image_format", self.where, alt, fmt=why[len("format:") :])
            else:
                self.report.drop("image_bad", self.where, alt, why=why)
            return
        self.add(Img(src, alt, self.where))

    def video(self, el: Any, text: str) -> str | None:
        links = [a.get("href") for a in el.iter("a") if (a.get("href") or "").startswith("http")]
        if not VIDEO_RE.match(text) or len(links) != 1:
            return None
        label = text.split("：")[0].split(":")[0].strip() or "视频链接"
        return f"::: video {label} | {links[0]}"

    def note_refs(self) -> None:
        refs = self.inline.take_notes()
        if refs and self.article is not None:
            self.article.notes += refs

    # -- boxes -----------------------------------------------------------------------------

    def marker(self, raw: str) -> None:
        kind = raw.split(MARKER_WORD, 1)[-1]
        if kind.startswith("begin"):
            self.box_depth += 1
            if self.box_depth == 1:
                self.box = Box(paragraph=self.where)
        elif kind.startswith("end") and self.box_depth:
            self.box_depth -= 1
            if self.box_depth == 0:
                self.close_box()

    def close_box(self) -> None:
        box, self.box, self.box_depth = self.box, None, 0
        if box is None or not (box.blocks or box.title):
            return
        if not box.blocks:  # only a title line: keep it as a paragraph
            self.add(box.title)
            return
        box.title = box.title or "专栏"
        self.add(box)

    # -- lists, tables, quotes, notes ------------------------------------------------------

    def add_list(self, el: Any, depth: int = 0) -> None:
        lines = self.list_lines(el, 0)
        if lines:
            self.out.paragraphs += len(lines)
            self.add("\n".join(lines))
            self.note_refs()

    def list_lines(self, el: Any, depth: int) -> list[str]:
        nested_ok = self.features("nested_list")
        lines: list[str] = []
        for number, li in enumerate((c for c in el if c.tag == "li"), start=1):
            text = self.inline.render(li, skip=lambda c: c.tag in ("ul", "ol")).strip()
            marker = f"{number}." if el.tag == "ol" else "-"
            indent = ("   " if el.tag == "ol" else "  ") * depth if nested_ok else ""
            if text:
                lines.append(f"{indent}{marker} {text}")
            for sub in (c for c in li if c.tag in ("ul", "ol")):
                if not nested_ok:
                    self.notice("nested_flat")
                lines += self.list_lines(sub, depth + 1)
        return lines

    def table(self, el: Any) -> None:
        rows = [
            [
                self.inline.render(cell).strip().replace("|", "\\|")
                for cell in tr
                if cell.tag in ("td", "th")
            ]
            for tr in el.iter("tr")
        ]
        rows = [r for r in rows if any(r)]
        if not rows:
            return
        self.out.paragraphs += 1
        if self.features("table"):
            width = max(len(r) for r in rows)
            rows = [r + [""] * (width - len(r)) for r in rows]
            lines = ["| " + " | ".join(r) + " |" for r in rows]
            lines.insert(1, "|" + " --- |" * width)
            self.add("\n".join(lines))
        else:
            self.notice("table_flattened")
            for r in rows:
                self.add(" ｜ ".join(c.replace("\\|", "|") for c in r if c))
        self.note_refs()

    def quote(self, el: Any) -> None:
        parts = [self.inline.render(p).strip() for p in el if p.tag == "p"]
        parts = [p for p in parts if p]
        if not parts:
            return
        if self.features("quote"):
            self.add("\n>\n".join("> " + p for p in parts))
        else:
            self.notice("quote_plain")
            for p in parts:
                self.add(p)
        self.note_refs()

    def notes(self, el: Any) -> None:
        for li in el.iter("li"):
            ident = li.get("id") or ""
            number = ident.rsplit("-", 1)[-1]
            text = self.inline.render(li).strip().rstrip("↑").strip()
            if number.isdigit():
                self.out.footnotes[number] = " ".join(text.split())


def _is_notes(el: Any) -> bool:
    items = [li for li in el if li.tag == "li"]
    return bool(items) and all(
        (li.get("id") or "").startswith(("footnote-", "endnote-")) for li in items
    )


def _looks_like_box_title(el: Any, text: str) -> bool:
    if len(text) > 40:
        return False
    strong = "".join(s.text_content() for s in el.iter("strong")).strip()
    return bool(BOX_TITLE_RE.match(text)) or (bool(strong) and strong == text)


def _block_text(block: Any) -> str:
    if isinstance(block, Img):
        return block.alt or block.caption
    if isinstance(block, Box):
        return block.title
    return str(block)


def is_toc_line(text: str, section_titles: set[str]) -> bool:
    stripped = text.strip().lstrip("-•·").strip()
    return bool(stripped) and (
        stripped[0] in CIRCLED_NUMBERS or stripped.strip("【】") in section_titles
    )
