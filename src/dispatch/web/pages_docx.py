"""Admin: import a Word bulletin (.docx) beside the issue-folder upload, and its report page.

Why import and publish in one step: the editor's next stop is the preview, where the issue
can be checked and test-sent; the report of what was guessed (with the paragraph each guess
came from) is kept beside the stored folder and shown after the redirect, so a reload never
imports twice. A refused document or a source that would not publish stores nothing: no
database row, and the folder written for it is removed again.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.content.docx_import import (
    DocxImportError,
    ImportOptions,
    ImportResult,
    convert_docx,
)
from dispatch.content.docx_import.report import ImportReport
from dispatch.content.store import list_issues
from dispatch.models.issue import Issue
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser, Principal
from dispatch.web.deps import DbSession
from dispatch.web.issue_upload import publish_upload, store_upload
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin", include_in_schema=False)
REPORT_FILE = "import-report.json"
FOLDER_RE = re.compile(r"^[0-9a-f]{16}$")


def report_view(report: dict[str, Any], locale: str) -> dict[str, Any]:
    """The stored report in the reader's language: kept counts, then (where, text) rows."""
    lang = "en" if locale == "en" else "zh"

    def rows(entries: list[dict[str, Any]]) -> list[tuple[str, str]]:
        out = []
        for e in entries:
            where = f"¶{e['paragraph']}" if e.get("paragraph") else ""
            if e.get("excerpt"):
                where = f"{where} 「{e['excerpt']}」".strip()
            out.append((where, e[lang]))
        return out

    kept = [
        (TEXTS.get(f"docx_kept_{k}", locale) if f"docx_kept_{k}" in TEXTS.messages else k, v)
        for k, v in report.get("kept", {}).items()
    ]
    return {
        "kept": kept,
        "guessed": rows(report.get("guessed", [])),
        "not_kept": rows(report.get("not_kept", [])),
    }


def options_from_form(number: str, slug: str, source_url: str, publisher: str) -> ImportOptions:
    number = number.strip()
    return ImportOptions(
        number=int(number) if number.isdigit() and 0 < int(number) < 10_000 else None,
        slug=slug.strip() or None,
        source_url=source_url.strip() or None,
        publisher=publisher.strip() or None,
    )


def _failed_page(
    request: Request, session, reason: str, report: ImportReport | None, problems: list[str]
) -> Response:
    locale = request_locale(request)
    context = {
        "issues": list_issues(session),
        "flash": TEXTS.get("docx_failed", locale, reason=reason),
        "flash_kind": "",
        "problems": problems,
        "docx_report": report_view(report.as_dict(), locale) if report else None,
        "docx_nothing_stored": True,
    }
    return render_page(request, "admin/issues.html", context, status_code=422)


def _store_and_publish(
    request: Request, session, files: list[tuple[str, bytes]], actor: audit.Actor
) -> Issue:
    """Store the folder and publish it; a folder this call created is removed on failure."""
    settings = request.app.state.settings
    root = settings.data_dir / "issues"
    before = {p.name for p in root.iterdir()} if root.is_dir() else set()
    folder = store_upload(settings, files)
    try:
        return publish_upload(session, folder, settings, actor)
    except BaseException:
        if folder.name not in before:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def import_and_publish(
    request: Request, principal: Principal, session, name: str, result: ImportResult
) -> tuple[Issue, Path]:
    """Publish a converted document, audit it and keep its report beside the folder.

    Raises ValueError (IssueSourceError, UploadError) when the source would not publish,
    with nothing stored. Shared by the admin page and `POST /api/issues/import`."""
    actor = request_actor(request, principal)
    issue = _store_and_publish(request, session, result.files(), actor)
    audit.record(
        session,
        actor,
        AuditAction.IMPORT,
        AuditTarget.ISSUE,
        issue.slug,
        after={
            "file": name,
            "kind": "docx",
            "articles": result.report.kept.get("articles", 0),
            "guessed": len(result.report.guessed),
            "not_kept": len(result.report.dropped),
        },
    )
    folder = Path(issue.source_path)
    folder = folder if folder.is_dir() else folder.parent
    (folder / REPORT_FILE).write_text(
        json.dumps(result.report.as_dict(), ensure_ascii=False, default=str), encoding="utf-8"
    )
    return issue, folder


@dataclass(frozen=True)
class DocxUpload:
    """The upload form of the admin page and of `POST /api/issues/import`."""

    name: str
    data: bytes
    options: ImportOptions

    async def convert(self, request: Request) -> ImportResult:
        """The converted document; raises DocxImportError (with its report) when refused."""
        settings = request.app.state.settings
        return await run_in_threadpool(convert_docx, self.data, self.name, settings, self.options)


async def docx_upload(
    file: Annotated[UploadFile, File()],
    number: Annotated[str, Form()] = "",
    slug: Annotated[str, Form()] = "",
    source_url: Annotated[str, Form()] = "",
    publisher: Annotated[str, Form()] = "",
) -> DocxUpload:
    name = Path(file.filename or "upload.docx").name
    return DocxUpload(
        name, await file.read(), options_from_form(number, slug, source_url, publisher)
    )


DocxForm = Annotated[DocxUpload, Depends(docx_upload)]


def refusal(exc: ValueError) -> tuple[str, list[str]]:
    """A source that would not publish (IssueSourceError, UploadError): its first line and
    its problems, each with its line."""
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return reason, [str(p) for p in getattr(exc, "problems", ())]


@router.post("/issues/import")
async def import_word(
    request: Request, principal: EditorUser, session: DbSession, upload: DocxForm
) -> Response:
    try:
        result = await upload.convert(request)
    except DocxImportError as exc:
        return _failed_page(request, session, exc.text(request_locale(request)), exc.report, [])
    try:
        issue, folder = import_and_publish(request, principal, session, upload.name, result)
    except ValueError as exc:  # the source would not publish: nothing stored
        session.rollback()
        reason, problems = refusal(exc)
        return _failed_page(request, session, reason, result.report, problems)
    return RedirectResponse(f"/admin/issues/imported/{folder.name}?issue={issue.id}", 303)


@router.get("/issues/imported/{folder}")
def imported_page(
    request: Request, principal: EditorUser, session: DbSession, folder: str, issue: int = 0
) -> Response:
    path = request.app.state.settings.data_dir / "issues" / folder / REPORT_FILE
    if not FOLDER_RE.match(folder) or not path.is_file():
        raise HTTPException(status_code=404)
    row = session.get(Issue, issue) if 0 < issue < 2**31 else None
    locale = request_locale(request)
    context: dict[str, Any] = {
        "issue": row,
        "docx_report": report_view(json.loads(path.read_text(encoding="utf-8")), locale),
    }
    if row is not None:
        context.update(
            flash=TEXTS.get("docx_imported", locale, title=row.title, slug=row.slug),
            flash_kind="ok",
        )
    return render_page(request, "admin/docx_import.html", context)
