"""Admin pages of the editor's desk: the source editor with its live preview, the versions
(compare, restore) and the review buttons. Server-rendered over the same dispatch.editorial
functions the API calls; the editor works without JavaScript (save, then see the problems),
and static/editor.js adds the live check, the preview and image drag and drop.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response

from dispatch.content.parse import IssueSourceError
from dispatch.editorial import review, versions
from dispatch.editorial.messages import status_word
from dispatch.models.issue import Issue
from dispatch.web.api_editorial import MAX_SOURCE_CHARS, problems_of, reviewer_of
from dispatch.web.api_issues import get_issue_or_404
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser, ReviewerUser
from dispatch.web.deps import DbSession, RowId
from dispatch.web.editorial_views import clearance, history
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin/issues", include_in_schema=False)
FLASHES = {
    "saved": "editorial_saved",
    "unchanged": "editorial_unchanged",
    "submitted": "editorial_submitted",
    "approved": "editorial_approved",
    "rejected": "editorial_rejected",
    "restored": "editorial_restored",
}


def _flash(request: Request) -> dict[str, Any]:
    key = FLASHES.get(request.query_params.get("msg", ""))
    return {"flash": TEXTS.get(key, request_locale(request)), "flash_kind": "ok"} if key else {}


def _failed(request: Request, exc: Exception) -> dict[str, Any]:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"flash": TEXTS.get("action_failed", request_locale(request), reason=reason)}


def _go(path: str, msg: str) -> Response:
    return RedirectResponse(f"{path}?msg={msg}", status_code=303)


def _review_context(request: Request, session, issue: Issue, principal) -> dict[str, Any]:
    """The review box: the latest version, what this user may do with it, the clearance."""
    settings = request.app.state.settings
    latest = versions.latest_version(session, issue.id)
    own = latest is not None and principal.user_id in (latest.author_id, latest.submitted_by_id)
    return {
        "latest": latest,
        "latest_status": status_word(latest.status, request_locale(request)) if latest else "",
        "own_version": own,
        "may_review": principal.role in review.REVIEWER_ROLES and not own,
        "clearance": clearance(session, settings, issue),
        "review_required": settings.review_required,
        "approvals_needed": max(1, settings.review_approvals),
        "approvers": review.approvals(session, latest) if latest else [],
    }


def _editor_page(
    request: Request,
    session,
    issue: Issue,
    principal,
    *,
    text: str | None = None,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "issue": issue,
        "text": issue.source_text if text is None else text,
        **_review_context(request, session, issue, principal),
        **_flash(request),
        **(extra or {}),
    }
    return render_page(request, "admin/issue_edit.html", context, status_code=status_code)


@router.get("/{issue_id}/edit")
def editor(request: Request, principal: EditorUser, session: DbSession, issue_id: RowId):
    return _editor_page(request, session, get_issue_or_404(session, issue_id), principal)


@router.post("/{issue_id}/source")
def editor_save(
    request: Request,
    principal: EditorUser,
    session: DbSession,
    issue_id: RowId,
    text: Annotated[str, Form(max_length=MAX_SOURCE_CHARS)],
    base_version: Annotated[int | None, Form(ge=0, le=2**31 - 1)] = None,
) -> Response:
    issue = get_issue_or_404(session, issue_id)
    try:
        saved = versions.save_source(
            session,
            request.app.state.settings,
            issue,
            text,
            author_id=principal.user_id,
            base_number=base_version,
            actor=request_actor(request, principal),
        )
    except IssueSourceError as exc:
        session.rollback()
        extra = {"problems": problems_of(exc), **_failed(request, exc)}
        return _editor_page(
            request, session, issue, principal, text=text, extra=extra, status_code=422
        )
    except versions.VersionError as exc:
        session.rollback()
        return _editor_page(
            request,
            session,
            issue,
            principal,
            text=text,
            extra=_failed(request, exc),
            status_code=409,
        )
    msg = "saved" if saved.created else "unchanged"
    return _go(f"/admin/issues/{saved.issue.id}/edit", msg)


@router.get("/{issue_id}/media/{rel:path}")
def editor_media(
    request: Request, principal: EditorUser, session: DbSession, issue_id: RowId, rel: str
) -> Response:
    """An image of the editor's folder, for the live preview of a text not yet saved."""
    from dispatch.editorial.media import media_file

    path = media_file(request.app.state.settings, get_issue_or_404(session, issue_id), rel)
    if path is None:
        raise HTTPException(status_code=404, detail="no such image")
    return FileResponse(path, headers={"Cache-Control": "private, max-age=3600"})


@router.get("/{issue_id}/versions")
def versions_page(
    request: Request, principal: EditorUser, session: DbSession, issue_id: RowId
) -> Response:
    issue = get_issue_or_404(session, issue_id)
    context: dict[str, Any] = {
        "issue": issue,
        "history": history(session, issue),
        "status_word": lambda s: status_word(s, request_locale(request)),
        **_review_context(request, session, issue, principal),
        **_flash(request),
    }
    a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
    if a.isdigit() and b.isdigit() and int(a) < 2**31 and int(b) < 2**31:
        try:
            old = versions.get_version(session, issue, int(a))
            new = versions.get_version(session, issue, int(b))
        except versions.VersionError as exc:
            context.update(_failed(request, exc))
        else:
            context["diff"] = {
                "a": old.number,
                "b": new.number,
                "lines": versions.diff_lines(old, new),
            }
    return render_page(request, "admin/issue_versions.html", context)


def _act(request: Request, session, issue_id: int, action) -> Response:
    """Run one review action; back to the versions page with its outcome."""
    issue = get_issue_or_404(session, issue_id)
    try:
        msg, target = action(issue)
    except ValueError as exc:
        session.rollback()
        principal = request.state.principal
        context = {
            "issue": issue,
            "history": history(session, issue),
            "status_word": lambda s: status_word(s, request_locale(request)),
            **_review_context(request, session, issue, principal),
            **_failed(request, exc),
        }
        return render_page(request, "admin/issue_versions.html", context, status_code=409)
    return _go(f"/admin/issues/{target}/versions", msg)


@router.post("/{issue_id}/versions/{number}/restore")
def version_restore(
    request: Request, principal: EditorUser, session: DbSession, issue_id: RowId, number: RowId
) -> Response:
    def run(issue: Issue):
        settings = request.app.state.settings
        saved = versions.restore(
            session,
            settings,
            issue,
            number,
            author_id=principal.user_id,
            actor=request_actor(request, principal),
        )
        return ("restored" if saved.created else "unchanged"), saved.issue.id

    return _act(request, session, issue_id, run)


@router.post("/{issue_id}/versions/{number}/submit")
def version_submit(
    request: Request, principal: EditorUser, session: DbSession, issue_id: RowId, number: RowId
) -> Response:
    def run(issue: Issue):
        version = versions.get_version(session, issue, number)
        review.submit(session, version, principal.user_id, actor=request_actor(request, principal))
        return "submitted", issue.id

    return _act(request, session, issue_id, run)


@router.post("/{issue_id}/versions/{number}/approve")
def version_approve(
    request: Request,
    principal: ReviewerUser,
    session: DbSession,
    issue_id: RowId,
    number: RowId,
    content_hash: Annotated[str, Form(min_length=64, max_length=64)],
) -> Response:
    def run(issue: Issue):
        version = versions.get_version(session, issue, number)
        reviewer = reviewer_of(session, principal)
        review.approve(
            session,
            request.app.state.settings,
            version,
            reviewer,
            seen_hash=content_hash,
            actor=request_actor(request, principal),
        )
        return "approved", issue.id

    return _act(request, session, issue_id, run)


@router.post("/{issue_id}/versions/{number}/reject")
def version_reject(
    request: Request,
    principal: ReviewerUser,
    session: DbSession,
    issue_id: RowId,
    number: RowId,
    comment: Annotated[str, Form(max_length=review.MAX_COMMENT)] = "",
) -> Response:
    def run(issue: Issue):
        version = versions.get_version(session, issue, number)
        reviewer = reviewer_of(session, principal)
        review.request_changes(
            session, version, reviewer, comment, actor=request_actor(request, principal)
        )
        return "rejected", issue.id

    return _act(request, session, issue_id, run)
