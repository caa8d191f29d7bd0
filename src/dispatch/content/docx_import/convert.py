"""The conversion proper: mammoth turns the prepared .docx into HTML, pictures into files.

Why mammoth (docs/word-import.md has the comparison with pandoc): it is maintained, pure
Python (no subprocess, no binary to install on the editor's server), maps Word *styles* to
HTML through a small style map, reports what it did not understand, and lets us decide what
each picture becomes. Pictures are checked by content with Pillow: PNG, JPEG and GIF are kept
as they are, BMP/TIFF/WebP become PNG, vector formats (EMF, WMF, SVG) are left out and reported
(email clients and WeChat cannot show them, and no safe converter for them is installed).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import mammoth

from dispatch.content.docx_import.headings import HeadingTransform

STYLE_MAP = """
p[style-name='Title'] => p.doc-title:fresh
p[style-name='标题'] => p.doc-title:fresh
p[style-name='Subtitle'] => p.doc-subtitle:fresh
p[style-name='副标题'] => p.doc-subtitle:fresh
p[style-name='Caption'] => p.caption:fresh
p[style-name='题注'] => p.caption:fresh
p[style-name='标题 1'] => h1:fresh
p[style-name='标题 2'] => h2:fresh
p[style-name='标题 3'] => h3:fresh
p[style-name='标题 4'] => h4:fresh
p[style-name='Quote'] => blockquote > p:fresh
p[style-name='Intense Quote'] => blockquote > p:fresh
p[style-name='引用'] => blockquote > p:fresh
r[style-name='Hyperlink'] =>
"""
KEPT_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif"}
CONVERTED_FORMATS = {"BMP", "TIFF", "WEBP", "MPO"}
VECTOR_TYPES = {
    "image/x-emf": "EMF",
    "image/emf": "EMF",
    "image/x-wmf": "WMF",
    "image/wmf": "WMF",
    "image/svg+xml": "SVG",
}
DROPPED_SRC = "dispatch-dropped:"
MAX_PIXELS = 40_000_000


@dataclass
class Converted:
    html: str
    images: dict[str, bytes] = field(default_factory=dict)  # relative path -> bytes
    messages: list[str] = field(default_factory=list)
    headings: list[tuple[str, int, str, str]] = field(default_factory=list)


def _picture(data: bytes) -> tuple[bytes, str] | str:
    """(bytes, suffix) of a picture we can publish, or why not."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(data)) as im:
            fmt = im.format or "?"
            if im.width * im.height > MAX_PIXELS:
                return "too many pixels"
            if fmt in KEPT_FORMATS:
                im.verify()
                return data, KEPT_FORMATS[fmt]
            if fmt in CONVERTED_FORMATS:
                out = io.BytesIO()
                im.convert("RGBA").save(out, "PNG")
                return out.getvalue(), ".png"
            return f"format:{fmt}"
    except Exception as exc:  # any decoder complaint: not a picture we can publish
        return str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__


class _Pictures:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def __call__(self, image: Any) -> dict[str, str]:
        vector = VECTOR_TYPES.get((image.content_type or "").lower())
        if vector:
            return {"src": f"{DROPPED_SRC}format:{vector}", "alt": image.alt_text or ""}
        with image.open() as fh:
            data = fh.read()
        verdict = _picture(data)
        if isinstance(verdict, str):
            return {"src": DROPPED_SRC + verdict, "alt": image.alt_text or ""}
        payload, suffix = verdict
        name = f"images/image-{len(self.files) + 1:02d}{suffix}"
        self.files[name] = payload
        return {"src": name, "alt": image.alt_text or ""}


def convert(docx_bytes: bytes) -> Converted:
    """HTML of the prepared document (mammoth), its pictures, and mammoth's own messages."""
    pictures = _Pictures()
    headings = HeadingTransform()
    result = mammoth.convert_to_html(
        io.BytesIO(docx_bytes),
        style_map=STYLE_MAP,
        convert_image=mammoth.images.img_element(pictures),
        transform_document=headings,
        ignore_empty_paragraphs=False,
    )
    messages = [
        m.message
        for m in result.messages
        if "Unrecognised paragraph style" not in m.message  # every Normal-like style
        and "Unrecognised run style" not in m.message
        and "was referenced but not defined" not in m.message
    ]
    return Converted(result.value, pictures.files, messages, headings.guesses())
