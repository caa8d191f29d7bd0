"""Word import: a bulletin's .docx becomes an issue folder in the source format.

The steps, each in its own module: `package` opens the zip within limits and leaves macros
and embedded objects behind; `prepass` marks boxes and numbers paragraphs; `convert` runs
mammoth (HTML and pictures; `headings` finds titles marked only by bold and size); `walk`
reads the HTML as sections, articles, captions and 专栏; `emit` fills in what the document
does not say. `convert_docx` works in memory (the admin upload); `import_docx` writes a
folder, into a temporary directory first and moved into place only when all went well.
docs/word-import.md is the editor's guide.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from lxml import html as lxml_html

from dispatch.config import Settings
from dispatch.content.docx_import.convert import convert
from dispatch.content.docx_import.emit import (
    Front,
    ImportOptions,
    article_meta,
    blocks_text,
    notes_text,
    resolve_front,
)
from dispatch.content.docx_import.errors import DocxImportError
from dispatch.content.docx_import.features import supported
from dispatch.content.docx_import.package import read_package
from dispatch.content.docx_import.prepass import Prepared, prepare, used_styles
from dispatch.content.docx_import.report import ImportReport
from dispatch.content.docx_import.walk import Walked, Walker

__all__ = [
    "DocxImportError",
    "ImportOptions",
    "ImportReport",
    "ImportResult",
    "convert_docx",
    "import_docx",
]

NOTE_PARTS = ("word/numbering.xml", "word/footnotes.xml", "word/endnotes.xml", "word/comments.xml")
GUESS_FINDINGS = {"box_table", "box_textbox", "box_style"}


@dataclass
class ImportResult:
    source_text: str
    images: dict[str, bytes]
    report: ImportReport
    problems: list[str] = field(default_factory=list)  # what `publish` would still refuse
    folder: Path | None = None

    def files(self) -> list[tuple[str, bytes]]:
        return [("issue.md", self.source_text.encode("utf-8")), *self.images.items()]


def _front_matter(front: Front, cover: str) -> list[str]:
    lines = ["---", f"title: {front.title}"]
    if front.number:
        lines.append(f"number: {front.number}")
    if front.period is not None:
        lines += [f"period_from: {front.period[0]}", f"period_to: {front.period[1]}"]
    if front.publisher:
        lines.append(f"publisher: {front.publisher}")
    if front.slug:
        lines.append(f"slug: {front.slug}")
    lines.append("locale: zh-CN")
    if cover:
        lines.append(f"cover: {cover}")
    return [*lines, "---", ""]


def compose(walked: Walked, options: ImportOptions, report: ImportReport) -> str:
    front = resolve_front(walked, options, report)
    cover = walked.cover.src if walked.cover else ""
    out = _front_matter(front, cover)
    for section in walked.sections:
        if not section.articles:
            continue
        report.count("sections")
        out += [f"# {section.title}", ""]
        for art in section.articles:
            report.count("articles")
            out += [f"## {art.title}", *article_meta(art, front, options, report), ""]
            for block in blocks_text(art.blocks, report) + notes_text(
                art, walked, supported("footnote")
            ):
                out += [block, ""]
    return "\n".join(out).rstrip("\n") + "\n"


def _record_findings(report: ImportReport, findings: list) -> None:
    for code, number, text, args in findings:
        if code in GUESS_FINDINGS:
            report.guess(code, number, text, **args)
        else:
            report.drop(code, number, text, **args)


def _prepare(parts: dict[str, bytes], name: str) -> Prepared:
    """The prepass over document.xml, and styles.xml cut to the styles in use (in place)."""
    prepared = prepare(parts["word/document.xml"], parts.get("word/styles.xml"), name)
    parts["word/document.xml"] = prepared.xml
    if "word/styles.xml" in parts:
        referencing = [prepared.xml] + [parts[n] for n in NOTE_PARTS if n in parts]
        parts["word/styles.xml"] = used_styles(parts["word/styles.xml"], referencing, name) or b""
    return prepared


def convert_docx(
    data: bytes, name: str, settings: Settings, options: ImportOptions | None = None
) -> ImportResult:
    """The issue source and pictures of a Word document, in memory, with the report."""
    options = options or ImportOptions()
    report = ImportReport()
    package = read_package(
        data, name, settings.docx_max_bytes, settings.docx_max_unpacked_bytes, report
    )
    prepared = _prepare(package.parts, name)
    _record_findings(report, prepared.findings)
    try:
        converted = convert(package.to_zip())
    except Exception as exc:  # mammoth on a malformed part: refuse, keeping nothing
        raise DocxImportError("converter_failed", report, file=name, why=str(exc)[:160]) from None
    for message in converted.messages:
        report.drop("converter", None, text=message[:160])
    root = lxml_html.fragment_fromstring(converted.html or "<p></p>", create_parent="div")
    has_sections = root.find(".//h1") is not None
    walked = Walker(report, supported, has_sections).walk(root)
    first = walked.sections[0].paragraph or 0 if walked.sections else 0
    for code, number, text, why in converted.headings:
        if number >= first:  # lines of the contents list before it are reported as such
            report.guess(code, number, text, why=why)
    if not any(s.articles for s in walked.sections):
        raise DocxImportError(
            "no_headings",
            report,
            file=name,
            paragraphs=prepared.paragraphs,
            images=len(converted.images),
        )
    text = compose(walked, options, report)
    used = {k: v for k, v in converted.images.items() if f"]({k}" in text or f"cover: {k}" in text}
    return ImportResult(text, used, report)


def _check_parses(result: ImportResult, folder: Path) -> None:
    from dispatch.content.parse import IssueSourceError, parse_issue

    try:
        parse_issue(folder)
    except IssueSourceError as exc:
        result.problems = [f"issue.md:{p.line}: {p.message}" for p in exc.problems]


def write_folder(result: ImportResult, out_dir: Path) -> Path:
    """Write issue.md and the pictures to `out_dir` (new or empty): all of it, or nothing."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DocxImportError("out_exists", result.report, path=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.import-", dir=out_dir.parent))
    try:
        for rel, data in result.files():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        _check_parses(result, tmp)
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    result.folder = out_dir
    return out_dir


def import_docx(
    path: Path, out_dir: Path, settings: Settings, options: ImportOptions | None = None
) -> ImportResult:
    """`dispatch issues import-docx`: read, convert, and write the folder at `out_dir`."""
    path = Path(path)
    size = path.stat().st_size
    if size > settings.docx_max_bytes:  # refuse before reading a byte
        raise DocxImportError(
            "too_large",
            file=path.name,
            size=f"{size / 1048576:.1f} MB",
            limit=f"{settings.docx_max_bytes / 1048576:.1f} MB",
        )
    result = convert_docx(path.read_bytes(), path.name, settings, options)
    write_folder(result, out_dir)
    return result
