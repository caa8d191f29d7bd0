"""Admin API: `POST /api/issues/import`, a Word bulletin (.docx) imported and published.

The same steps as the admin page (dispatch.web.pages_docx): 201 with the issue and the import
report (what was kept, guessed with its paragraph, left out); 422 with the reason, the report
and any problems when the document is refused or its result would not publish, nothing stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from dispatch.content.docx_import import DocxImportError, convert_docx
from dispatch.web.api_issues import issue_out
from dispatch.web.auth import EditorUser, require_editor
from dispatch.web.deps import DbSession
from dispatch.web.pages_docx import import_and_publish, options_from_form

router = APIRouter(prefix="/api/issues", tags=["issues"], dependencies=[Depends(require_editor)])


@router.post(
    "/import",
    status_code=201,
    summary="Import a Word document (.docx) as an issue and publish it; returns the report",
)
async def import_docx_api(
    request: Request,
    principal: EditorUser,
    session: DbSession,
    file: Annotated[UploadFile, File()],
    number: Annotated[str, Form()] = "",
    slug: Annotated[str, Form()] = "",
    source_url: Annotated[str, Form()] = "",
    publisher: Annotated[str, Form()] = "",
) -> JSONResponse:
    name = Path(file.filename or "upload.docx").name
    data = await file.read()
    options = options_from_form(number, slug, source_url, publisher)
    settings = request.app.state.settings
    try:
        result = await run_in_threadpool(convert_docx, data, name, settings, options)
    except DocxImportError as exc:
        report = exc.report.as_dict() if exc.report else None
        return JSONResponse({"detail": str(exc), "report": report}, status_code=422)
    try:
        issue, _ = import_and_publish(request, principal, session, name, result)
    except ValueError as exc:  # the source would not publish: nothing stored
        session.rollback()
        problems = [str(p) for p in getattr(exc, "problems", ())]
        body: dict[str, object] = {"detail": str(exc).splitlines()[0], "problems": problems}
        return JSONResponse({**body, "report": result.report.as_dict()}, status_code=422)
    body = {**issue_out(issue), "report": result.report.as_dict()}
    return JSONResponse(jsonable(body), status_code=201)


def jsonable(value: object) -> object:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
