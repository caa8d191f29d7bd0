"""Images named by an issue: inside its folder, of a format we publish, decodable.

Checked by content, never by name (see `image_problem`).
"""

from __future__ import annotations

import hashlib
import io
import warnings
from pathlib import Path

from dispatch.content.model import Image
from dispatch.content.problems import Problems

IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".gif": "GIF"}


def image_problem(data: bytes, suffix: str) -> str | None:
    """Why these bytes are not an image of the format their name claims (None if they are).

    Checked by content with a real decoder (Pillow opens, verifies and fully decodes), never
    by the name: a file of HTML or SVG called photo.png would otherwise be published and
    served as an image. Verdicts are cached by content digest (stored issues re-parse often)."""
    return _image_verdict(hashlib.sha256(data).digest(), suffix, data)


_verdicts: dict[tuple[bytes, str], str | None] = {}


def _image_verdict(digest: bytes, suffix: str, data: bytes) -> str | None:
    key = (digest, suffix)
    if key in _verdicts:
        return _verdicts[key]
    verdict = _decode(data, IMAGE_FORMATS[suffix])
    if len(_verdicts) > 1024:
        _verdicts.clear()
    _verdicts[key] = verdict
    return verdict


def _decode(data: bytes, expected: str) -> str | None:
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as im:
                found = im.format
                if found != expected:
                    return f"its content is {found or 'unknown'}"
                im.verify()
            with PILImage.open(io.BytesIO(data)) as im:
                im.load()
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        return "too many pixels"
    except Exception as exc:  # any decoder complaint: not an image we can publish
        text = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        return "cannot be decoded: " + text
    return None


def checked_image(
    problems: Problems,
    source_dir: Path | None,
    src: str,
    alt: str,
    caption: str,
    line: int,
) -> tuple[Image | None, bytes]:
    """The image `src` names (None with a problem when unusable) and the bytes that go into
    the content hash. Without a `source_dir` (a text-only check) the file is not looked at."""
    alt_ok = bool(alt.strip())
    if not alt_ok:
        problems.add(line, "empty_alt")
    rel = Path(src)
    if not src or rel.is_absolute() or ".." in rel.parts:
        problems.add(line, "image_outside", src=src)
        return None, b""
    if source_dir is None:
        image = Image(rel, rel.as_posix(), alt.strip(), caption.strip(), line=line)
        return (image if alt_ok else None), b""
    full = (source_dir / rel).resolve()
    if not full.is_relative_to(source_dir):
        problems.add(line, "image_outside", src=src)
        return None, b""
    if not full.is_file():
        problems.add(line, "image_missing", src=src)
        return None, b""
    if full.suffix.lower() not in IMAGE_FORMATS:
        problems.add(line, "image_not_file", src=src)
        return None, b""
    data = full.read_bytes()
    why = image_problem(data, full.suffix.lower())
    if why is not None:
        expected = IMAGE_FORMATS[full.suffix.lower()]
        problems.add(line, "image_not_decodable", src=src, expected=expected, why=why)
        return None, b""
    digest_part = src.encode() + b"\0" + data
    if not alt_ok:
        return None, digest_part
    return Image(full, rel.as_posix(), alt.strip(), caption.strip(), line=line), digest_part
