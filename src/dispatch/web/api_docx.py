"""Admin API: `POST /api/issues/import`, a Word bulletin (.docx) imported and published.

The same steps as the admin page (dispatch.web.pages_docx): 201 with the issue and the import
report (what was kept, guessed with its paragraph, left out); 422 with the reason, the report
and any problems when the document is refused or its result would not publish, nothing stored.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from dispatch.content.docx_import import DocxImportError
from dispatch.web.api_issues import issue_out
from dispatch.web.auth import EditorUser, require_editor
from dispatch.web.deps import DbSession
from dispatch.web.pages_docx import DocxForm, import_and_publish, refusal

router = APIRouter(prefix="/api/issues", tags=["issues"], dependencies=[Depends(require_editor)])


@router.post(
    "/import",
    status_code=201,
    summary="Import a Word document (.docx) as an issue and publish it; returns the report",
)
async def import_docx_api(
    request: Request, principal: EditorUser, session: DbSession, upload: DocxForm
) -> JSONResponse:
    try:
        result = await upload.convert(request)
    except DocxImportError as exc:
        report = exc.report.as_dict() if exc.report else None
        return JSONResponse({"detail": str(exc), "report": report}, status_code=422)
    try:
        issue, _ = import_and_publish(request, principal, session, upload.name, result)
    except ValueError as exc:  # the source would not publish: nothing stored
        session.rollback()
        reason, problems = refusal(exc)
        body: dict[str, object] = {"detail": reason, "problems": problems}
        return JSONResponse({**body, "report": result.report.as_dict()}, status_code=422)
    body = {**issue_out(issue), "report": result.report.as_dict()}
    return JSONResponse(jsonable(body), status_code=201)


def jsonable(value: object) -> object:
    from fastapi.encoders import jsonable_encoder

    return jsonable_encoder(value)
