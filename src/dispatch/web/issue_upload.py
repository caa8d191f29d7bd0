"""Store an uploaded issue source (issue.md plus images) in the data dir, then publish it.

Why a folder per upload: a stored issue keeps `source_path` and re-reads its images from
there, so uploaded files must stay. Names are sanitised (no absolute paths, no `..`, a small
character set); a bare image name is placed where issue.md refers to it. Parsing happens
before publishing, so a bad source stores nothing in the database.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path, PurePosixPath

from sqlalchemy.orm import Session

from dispatch.audit import Actor
from dispatch.config import Settings
from dispatch.content.parse import SOURCE_FILE_NAME, IssueSourceError, Problem, parse_issue
from dispatch.content.store import publish_issue
from dispatch.errors import DispatchError
from dispatch.models.issue import Issue
from dispatch.paths import EXAMPLES_DIR

SAFE_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
IMAGE_REF = re.compile(r"!\[[^\]]*\]\(\s*([^)\s]+)")
COVER_REF = re.compile(r"^cover:\s*(\S+)\s*$", re.MULTILINE)
MAX_FILES = 200
MAX_TOTAL_BYTES = 50 * 1024 * 1024


class UploadError(DispatchError):
    """The upload cannot become an issue folder; the message names the file."""


def _safe_relative(name: str) -> PurePosixPath:
    parts = [p for p in PurePosixPath(name.replace("\\", "/")).parts if p not in ("", ".")]
    if not parts or any(not SAFE_PART.match(p) for p in parts):
        raise UploadError(f"{name}: file name not allowed (letters, digits, . _ - only)")
    return PurePosixPath(*parts)


def referenced_paths(source_text: str) -> list[str]:
    return IMAGE_REF.findall(source_text) + COVER_REF.findall(source_text)


def store_upload(settings: Settings, files: list[tuple[str, bytes]]) -> Path:
    """Write the files into a new folder under data_dir/issues/; returns the folder."""
    if not files or len(files) > MAX_FILES:
        raise UploadError(f"upload {len(files)} files: between 1 and {MAX_FILES} expected")
    if sum(len(data) for _, data in files) > MAX_TOTAL_BYTES:
        raise UploadError(f"upload larger than {MAX_TOTAL_BYTES // (1024 * 1024)} MB")
    sources = [
        (n, d) for n, d in files if PurePosixPath(n.replace("\\", "/")).name == SOURCE_FILE_NAME
    ]
    if len(sources) != 1:
        raise UploadError(f"exactly one {SOURCE_FILE_NAME} expected, got {len(sources)}")
    try:
        source_text = sources[0][1].decode("utf-8")
    except UnicodeDecodeError:
        raise UploadError(f"{SOURCE_FILE_NAME}: not UTF-8 text") from None
    by_basename: dict[str, str] = {}
    for ref in referenced_paths(source_text):
        by_basename.setdefault(PurePosixPath(ref).name, ref)
    digest = hashlib.sha256()
    placed: list[tuple[PurePosixPath, bytes]] = []
    for name, data in files:
        rel = _safe_relative(name)
        if rel.name == SOURCE_FILE_NAME:
            rel = PurePosixPath(SOURCE_FILE_NAME)
        elif len(rel.parts) == 1 and rel.name in by_basename:
            rel = _safe_relative(by_basename[rel.name])
        elif (
            len(rel.parts) > 1
            and rel.parts[0] != "images"
            and PurePosixPath(*rel.parts[1:]).as_posix() in by_basename.values()
        ):
            rel = PurePosixPath(*rel.parts[1:])  # a whole folder was uploaded: drop its name
        placed.append((rel, data))
        digest.update(rel.as_posix().encode() + b"\0" + data)
    folder = settings.data_dir / "issues" / digest.hexdigest()[:16]
    if not folder.exists():
        tmp = folder.with_name(folder.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        for rel, data in placed:
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        tmp.rename(folder)
    return folder


def allowed_source_dir(settings: Settings, path: str) -> Path:
    """A server-side source folder may only be under the examples or the data dir."""
    try:
        folder = Path(path)
        if not folder.is_absolute():
            folder = EXAMPLES_DIR.parent / folder
        folder = folder.resolve()
    except (ValueError, OSError) as exc:  # e.g. an embedded NUL byte
        raise UploadError(f"{path!r}: not a usable path ({exc})") from None
    roots = [EXAMPLES_DIR.resolve(), settings.data_dir.resolve()]
    if not any(folder.is_relative_to(root) for root in roots):
        raise UploadError(
            f"{path}: only folders under {EXAMPLES_DIR} or the data dir can be published"
        )
    return folder


def publish_folder(
    session: Session, folder: Path, settings: Settings | None = None, actor: Actor | None = None
) -> Issue:
    """Parse (raising IssueSourceError with every problem) and publish; flushes only. With an
    `actor` the publish is audited in the same transaction."""
    return publish_issue(session, parse_issue(folder), settings=settings, actor=actor)


def _as_uploaded(text: str, folder: Path) -> str:
    """A problem text with the server's storage folder removed: `issue.md:5`, as uploaded."""
    for root in (str(folder.resolve()), str(folder)):
        text = text.replace(root + "/", "").replace(root, ".")
    return text


def publish_upload(
    session: Session, folder: Path, settings: Settings | None = None, actor: Actor | None = None
) -> Issue:
    """`publish_folder` for a folder made by `store_upload`: problems name the files as the
    editor uploaded them (`issue.md:5: …`), never the server's storage path."""
    try:
        return publish_folder(session, folder, settings, actor)
    except IssueSourceError as exc:
        raise IssueSourceError(
            Problem(_as_uploaded(p.file, folder), p.line, _as_uploaded(p.message, folder))
            for p in exc.problems
        ) from None
