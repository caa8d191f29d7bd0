"""Inline HTML (mammoth's strong, em, a, sup…) to the source format's inline Markdown.

Why its own module: links, footnote references and emphasis are where the format's limits
show (only http(s) links; italics and footnotes only when the parser has them), so each
choice is made once here and reported once per document.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from dispatch.content.docx_import.prepass import MARK

CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff\u2063]")
NOTE_REF_RE = re.compile(r"^#(footnote|endnote)-(\d+)$")
SPACE_RE = re.compile(r"[ \t\r\n]+")


def clean(text: str) -> str:
    return SPACE_RE.sub(" ", CONTROL_RE.sub("", text.replace(MARK, "")))


def safe_url(url: str) -> str:
    return url.strip().replace(" ", "%20").replace("(", "%28").replace(")", "%29")


class InlineWriter:
    """Renders one element's inline content; `notify(code, **args)` records a fallback."""

    def __init__(self, features: Callable[[str], bool], notify: Callable[..., None]):
        self.features = features
        self.notify = notify
        self.notes: list[str] = []  # footnote numbers referenced since the last take_notes()

    def render(self, el: Any, skip: Callable[[Any], bool] | None = None) -> str:
        out = [clean(el.text or "")]
        for child in el:
            if skip is None or not skip(child):
                out.append(self._child(child))
            out.append(clean(child.tail or ""))
        return "".join(out)

    def _child(self, el: Any) -> str:
        tag = el.tag if isinstance(el.tag, str) else ""
        if tag in ("strong", "b"):
            inner = self.render(el).replace("**", "")
            return _wrap(inner, "**")
        if tag in ("em", "i"):
            inner = self.render(el)
            if self.features("italic"):
                return _wrap(inner.replace("*", ""), "*")
            if inner.strip():
                self.notify("italic_plain")
            return inner
        if tag == "a":
            return self._link(el)
        if tag == "br":
            return " "
        if tag == "img":
            return ""
        return self.render(el)

    def _link(self, el: Any) -> str:
        href = (el.get("href") or "").strip()
        text = self.render(el).replace("[", "【").replace("]", "】")
        note = NOTE_REF_RE.match(href)
        if note:
            self.notes.append(note.group(2))
            return f"[^{note.group(2)}]" if self.features("footnote") else f"[{note.group(2)}]"
        if href.startswith("#"):
            return "" if href.startswith(("#footnote-ref", "#endnote-ref")) else text
        if re.match(r"^https?://", href, re.IGNORECASE) and text.strip():
            return f"[{text.strip()}]({safe_url(href)})"
        if href and not href.startswith("#"):
            self.notify("link_dropped", url=href[:80])
        return text

    def take_notes(self) -> list[str]:
        notes, self.notes = self.notes, []
        return notes


def _wrap(inner: str, mark: str) -> str:
    """**x** around the text, spaces kept outside (Markdown emphasis cannot start with one)."""
    stripped = inner.strip()
    if not stripped:
        return inner
    lead = inner[: len(inner) - len(inner.lstrip())]
    trail = inner[len(inner.rstrip()) :]
    return f"{lead}{mark}{stripped}{mark}{trail}"
