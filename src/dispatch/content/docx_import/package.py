"""Open a .docx safely: size limits, zip bombs, macros and embedded objects, before any parsing.

Why before the converter: a .docx is a zip, and a zip says how big each part unpacks to. The
declared sizes are checked against `docx_max_unpacked_bytes` before a byte is inflated, and
every read is capped at its declared size, so a lying header cannot inflate more either. Macro
parts (vbaProject.bin, the .docm's reason to exist) and embedded OLE objects are never handed
on: nothing in them is read, let alone run.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from dispatch.content.docx_import.errors import DocxImportError
from dispatch.content.docx_import.report import ImportReport

MAX_PARTS = 5000
MAX_RATIO = 200  # a part inflating more than this many times its compressed size is a bomb
RATIO_FLOOR = 1024 * 1024  # small parts may compress well (XML of repeated runs)
OLE2_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
DOCUMENT_PART = "word/document.xml"
MACRO_TYPE = "macroEnabled"


@dataclass
class DocxPackage:
    """The parts the converter may see (name -> bytes), macros and OLE parts removed."""

    parts: dict[str, bytes] = field(default_factory=dict)

    def to_zip(self) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
            for name, data in self.parts.items():
                zf.writestr(name, data)
        return out.getvalue()


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def check_container(data: bytes, name: str, max_bytes: int) -> zipfile.ZipFile:
    """A zip of acceptable size, or a DocxImportError saying what the file is instead."""
    if len(data) > max_bytes:
        raise DocxImportError("too_large", file=name, size=_mb(len(data)), limit=_mb(max_bytes))
    if data.startswith(OLE2_MAGIC):
        raise DocxImportError("legacy_doc", file=name)
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError):
        raise DocxImportError("not_zip", file=name) from None


def check_sizes(zf: zipfile.ZipFile, name: str, max_unpacked: int) -> None:
    """Refuse a zip bomb from the central directory alone (nothing inflated yet)."""
    infos = zf.infolist()
    if len(infos) > MAX_PARTS:
        raise DocxImportError("too_many_parts", file=name, n=len(infos), limit=MAX_PARTS)
    total = sum(i.file_size for i in infos)
    if total > max_unpacked:
        raise DocxImportError(
            "zip_bomb", file=name, size=_mb(total), limit=_mb(max_unpacked), part="*"
        )
    for info in infos:
        if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise DocxImportError(
                "zip_bomb",
                file=name,
                size=_mb(info.file_size),
                limit=f"{MAX_RATIO}×",
                part=info.filename,
            )


def _read_capped(zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    with zf.open(info) as fh:
        data = fh.read(info.file_size + 1)
    if len(data) > info.file_size:  # the header lied about the size
        raise DocxImportError(
            "zip_bomb", file=name, size="?", limit=_mb(info.file_size), part=info.filename
        )
    return data


def _is_macro_part(part: str) -> bool:
    lower = part.lower()
    return (
        lower.endswith("vbaproject.bin")
        or lower.endswith("vbadata.xml")
        or ("vbaproject" in lower and lower.endswith(".rels"))
    )


def _is_ole_part(part: str) -> bool:
    lower = part.lower()
    return lower.startswith("word/embeddings/") or lower.startswith("word/activex/")


def read_package(
    data: bytes, name: str, max_bytes: int, max_unpacked: int, report: ImportReport
) -> DocxPackage:
    """The safe parts of the document; macros and OLE parts are reported and left behind."""
    zf = check_container(data, name, max_bytes)
    with zf:
        check_sizes(zf, name, max_unpacked)
        names = {i.filename for i in zf.infolist()}
        if DOCUMENT_PART not in names:
            raise DocxImportError("no_document", file=name)
        package = DocxPackage()
        for info in zf.infolist():
            part = info.filename
            if info.is_dir() or PurePosixPath(part).is_absolute() or ".." in part.split("/"):
                continue
            if _is_macro_part(part):
                report.drop("macros", part=part)
                continue
            if _is_ole_part(part):
                continue  # reported where the document places the object (prepass)
            package.parts[part] = _read_capped(zf, info, name)
    types = package.parts.get("[Content_Types].xml", b"")
    if MACRO_TYPE.encode() in types:  # a .docm: opened as the plain document it also is
        package.parts["[Content_Types].xml"] = types.replace(
            b"application/vnd.ms-word.document.macroEnabled.main+xml",
            b"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
        )
    return package
