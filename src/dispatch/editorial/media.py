"""Images the editor uploads (drag and drop or the file field) while editing an issue.

Why an editable copy of the folder: an issue published from examples/ (or an upload) reads
its images from that folder, which the web must not write into. The first image uploaded in
the editor copies the folder to data_dir/issues/edit-<issue>/ and the next save publishes from
there; the copy holds every image the older versions name, so they still render and restore.

Why content-addressed names (images/<sha256 prefix>.<ext>): a stored file is never
overwritten, so an approved version's images cannot change under its approval (the send
guard re-hashes them anyway), and uploading the same picture twice stores it once.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path, PurePosixPath

from dispatch.config import Settings
from dispatch.content.images import IMAGE_FORMATS, image_problem
from dispatch.errors import DispatchError, ErrorKind
from dispatch.i18n import Catalog
from dispatch.models.issue import Issue

MESSAGES = Catalog(
    {
        "bad_type": (
            "{name}：只能上传 PNG、JPEG 或 GIF 图片",
            "{name}: only PNG, JPEG or GIF images can be uploaded",
        ),
        "bad_image": ("{name}：不是有效的图片（{why}）", "{name}: not a usable image ({why})"),
        "too_big": (
            "{name}：图片过大（{size:,} 字节，上限 {limit:,}）",
            "{name}: image too large ({size:,} bytes, limit {limit:,})",
        ),
        "empty": ("{name}：文件为空", "{name}: the file is empty"),
    }
)
MAX_IMAGE_BYTES = 10 * 1024 * 1024


class MediaError(DispatchError):
    kind = ErrorKind.INVALID


def editable_dir(settings: Settings, issue: Issue) -> Path:
    """The issue family's editable folder (a revision row shares its original's)."""
    root = issue.revision_of_id or issue.id
    return settings.data_dir / "issues" / f"edit-{root}"


def _ensure_editable(settings: Settings, issue: Issue) -> Path:
    folder = editable_dir(settings, issue)
    if folder.is_dir():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    source = Path(issue.source_path)
    if source.is_dir():
        shutil.copytree(source, tmp, symlinks=False)
    else:
        tmp.mkdir(parents=True)
    tmp.rename(folder)
    return folder


def store_image(settings: Settings, issue: Issue, name: str, data: bytes) -> str:
    """Check and store one uploaded image; returns its path for the source (images/…)."""
    shown = PurePosixPath(name.replace("\\", "/")).name[:120] or "image"
    suffix = PurePosixPath(shown).suffix.lower()
    if suffix not in IMAGE_FORMATS:
        raise MediaError(MESSAGES.both("bad_type", name=shown))
    if not data:
        raise MediaError(MESSAGES.both("empty", name=shown))
    if len(data) > MAX_IMAGE_BYTES:
        raise MediaError(
            MESSAGES.both("too_big", name=shown, size=len(data), limit=MAX_IMAGE_BYTES)
        )
    why = image_problem(data, suffix)
    if why:
        raise MediaError(MESSAGES.both("bad_image", name=shown, why=why))
    folder = _ensure_editable(settings, issue)
    rel = f"images/{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    target = folder / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        part.write_bytes(data)
        part.rename(target)
    return rel


def media_file(settings: Settings, issue: Issue, rel: str) -> Path | None:
    """An image of the editor's folder by its source path, only inside that folder."""
    from dispatch.editorial.versions import working_dir

    root = working_dir(settings, issue).resolve()
    try:
        path = (root / rel).resolve()
    except (OSError, ValueError):
        return None
    if not path.is_relative_to(root) or path.suffix.lower() not in IMAGE_FORMATS:
        return None
    return path if path.is_file() else None
