"""Admin API of the editor's desk: check a draft (problems with their lines, live preview),
save it as a version, upload an image, list, compare and restore versions, and the review
(submit, approve, request changes) with the send clearance. Every decision is a call into
dispatch.editorial; the same functions serve the web pages (dispatch.web.pages_editorial).

Roles: editors check, save, restore, upload and submit; reviewers (and admins) approve or
send back — never a version they wrote or submitted (the core refuses, not this layer).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from dispatch.content.parse import IssueSourceError
from dispatch.editorial import review, versions
from dispatch.models.editorial import IssueVersion
from dispatch.models.web import User
from dispatch.web.api_issues import get_issue_or_404
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser, Principal, ReviewerUser, require_editor
from dispatch.web.deps import DbSession, RowId
from dispatch.web.editorial_views import clearance, draft_preview, history, version_out

router = APIRouter(prefix="/api/issues", tags=["editorial"], dependencies=[Depends(require_editor)])
MAX_SOURCE_CHARS = 2_000_000
VersionNo = Annotated[int, Query(ge=1, le=2**31 - 1)]


class DraftIn(BaseModel):
    text: str = Field(max_length=MAX_SOURCE_CHARS)
    preview: bool = True


class SaveIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    base_version: int | None = Field(default=None, ge=0, le=2**31 - 1)


class ApproveIn(BaseModel):
    content_hash: str = Field(min_length=64, max_length=64, description="what you reviewed")


class RejectIn(BaseModel):
    comment: str = Field(min_length=1, max_length=review.MAX_COMMENT)


def problems_of(exc: IssueSourceError) -> list[dict[str, Any]]:
    """Each problem with its line, for the editor's gutter."""
    return [{"line": p.line, "message": p.message, "file": p.file} for p in exc.problems]


def check_draft(request: Request, session: Session, issue_id: int, text: str, preview: bool):
    """The problems of a draft and, when it has none, its live preview."""
    settings = request.app.state.settings
    issue = get_issue_or_404(session, issue_id)
    try:
        doc = versions.parse_draft(session, settings, issue, text)
    except IssueSourceError as exc:
        return {"ok": False, "problems": problems_of(exc)}
    out: dict[str, Any] = {"ok": True, "problems": [], "content_hash": doc.content_hash}
    if preview:
        try:
            out.update(draft_preview(settings, issue, doc))
        except IssueSourceError as exc:  # e.g. over the email size budget
            return {"ok": False, "problems": problems_of(exc)}
        except ValueError as exc:
            out["preview_error"] = str(exc)
    return out


def reviewer_of(session: Session, principal) -> User:
    user = session.get(User, principal.user_id)
    assert user is not None  # the principal was just resolved from it
    return user


@router.post("/{issue_id}/source/check", summary="Problems (with lines) and a live preview")
def source_check(issue_id: RowId, body: DraftIn, request: Request, session: DbSession) -> dict:
    return check_draft(request, session, issue_id, body.text, body.preview)


@router.post("/{issue_id}/source", status_code=201, summary="Save the source as a new version")
def source_save(
    issue_id: RowId, body: SaveIn, request: Request, session: DbSession, principal: EditorUser
) -> dict:
    issue = get_issue_or_404(session, issue_id)
    settings = request.app.state.settings
    by = _by(request, principal)
    saved = versions.save_source(
        session, settings, issue, body.text, base_number=body.base_version, **by
    )
    return {"created": saved.created, **_saved_out(session, saved)}


def _by(request: Request, principal: Principal) -> dict[str, Any]:
    """Who saves a version: its author and the audit log's actor."""
    return {"author_id": principal.user_id, "actor": request_actor(request, principal)}


def _saved_out(session: Session, saved: versions.Saved) -> dict[str, Any]:
    return {"issue_id": saved.issue.id, **version_out(session, saved.version)}


@router.post("/{issue_id}/media", status_code=201, summary="Upload an image for the editor")
async def media_upload(
    issue_id: RowId,
    request: Request,
    session: DbSession,
    file: Annotated[UploadFile, File()],
) -> dict:
    from dispatch.editorial.media import store_image

    issue = get_issue_or_404(session, issue_id)
    data = await file.read()
    src = store_image(request.app.state.settings, issue, file.filename or "", data)
    return {"src": src, "markdown": f"![]({src})"}


@router.get("/{issue_id}/versions", summary="Every version with its reviews")
def versions_index(issue_id: RowId, session: DbSession) -> dict:
    return history(session, get_issue_or_404(session, issue_id))


@router.get("/{issue_id}/versions/{number}", summary="One version's source")
def versions_show(issue_id: RowId, number: RowId, session: DbSession) -> dict:
    issue = get_issue_or_404(session, issue_id)
    version = versions.get_version(session, issue, number)
    return {**version_out(session, version), "text": version.source_text}


@router.get("/{issue_id}/diff", summary="A line diff between two versions")
def versions_diff(issue_id: RowId, a: VersionNo, b: VersionNo, session: DbSession) -> dict:
    issue = get_issue_or_404(session, issue_id)
    old, new = versions.get_version(session, issue, a), versions.get_version(session, issue, b)
    return {"a": a, "b": b, "lines": [list(x) for x in versions.diff_lines(old, new)]}


@router.post("/{issue_id}/versions/{number}/restore", status_code=201, summary="Restore")
def versions_restore(
    issue_id: RowId, number: RowId, request: Request, session: DbSession, principal: EditorUser
) -> dict:
    issue = get_issue_or_404(session, issue_id)
    settings = request.app.state.settings
    saved = versions.restore(session, settings, issue, number, **_by(request, principal))
    return _saved_out(session, saved)


def _version_at(issue_id: RowId, number: RowId, session: DbSession) -> IssueVersion:
    """The version a review route names by its path (404 for either number unknown)."""
    return versions.get_version(session, get_issue_or_404(session, issue_id), number)


VersionAt = Annotated[IssueVersion, Depends(_version_at)]


@router.post("/{issue_id}/versions/{number}/submit", summary="Submit for review")
def versions_submit(
    version: VersionAt, request: Request, session: DbSession, principal: EditorUser
) -> dict:
    return version_out(
        session,
        review.submit(session, version, principal.user_id, actor=request_actor(request, principal)),
    )


@router.post("/{issue_id}/versions/{number}/approve", summary="Approve (reviewer)")
def versions_approve(
    version: VersionAt,
    body: ApproveIn,
    request: Request,
    session: DbSession,
    principal: ReviewerUser,
) -> dict:
    done = review.approve(
        session,
        request.app.state.settings,
        version,
        reviewer_of(session, principal),
        seen_hash=body.content_hash,
        actor=request_actor(request, principal),
    )
    return version_out(session, done)


@router.post("/{issue_id}/versions/{number}/reject", summary="Send back with comments")
def versions_reject(
    version: VersionAt,
    body: RejectIn,
    request: Request,
    session: DbSession,
    principal: ReviewerUser,
) -> dict:
    done = review.request_changes(
        session,
        version,
        reviewer_of(session, principal),
        body.comment,
        actor=request_actor(request, principal),
    )
    return version_out(session, done)


@router.get("/{issue_id}/clearance", summary="May it be sent to lists now, and who approved")
def issue_clearance(issue_id: RowId, request: Request, session: DbSession) -> dict:
    issue = get_issue_or_404(session, issue_id)
    return clearance(session, request.app.state.settings, issue)
