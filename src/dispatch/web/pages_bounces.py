"""Admin pages for bounces: the suppression list (search, reason, source, date, the raw bounce
behind an entry, remove with a note, CSV import, export), one bounce's raw message, and the
campaign page's "retry failed" button. Same functions as the API (dispatch.bounces)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dispatch.bounces import suppressions
from dispatch.db import committing
from dispatch.delivery import campaigns as engine_campaigns
from dispatch.errors import DispatchError
from dispatch.web import api_suppressions
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import AdminUser
from dispatch.web.deps import DbSession, RowId
from dispatch.web.queueing import batch_queue
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin", include_in_schema=False)
FLASH = {"saved", "done", "removed"}


def _page(
    request: Request,
    session,
    *,
    q: str | None = None,
    reason: str | None = None,
    page: int = 1,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    result = suppressions.search(session, q=q, reason=reason or None, page=page, per_page=50)
    context: dict[str, Any] = {
        "result": result,
        "q": q or "",
        "reason": reason or "",
        "reasons": suppressions.REASONS,
        "pages": max(1, -(-result["total"] // 50)),
    }
    key = request.query_params.get("msg")
    if key in FLASH:
        context.update(flash=TEXTS.get(key, request_locale(request)), flash_kind="ok")
    context.update(extra or {})
    return render_page(request, "admin/suppressions.html", context, status_code=status_code)


def _failed(request: Request, exc: Exception) -> dict[str, Any]:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {"flash": TEXTS.get("action_failed", request_locale(request), reason=reason)}


@router.get("/suppressions")
def suppressions_page(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    q: str | None = None,
    reason: str | None = None,
    page: int = 1,
) -> Response:
    reason = reason if reason in suppressions.REASONS else None
    return _page(
        request, session, q=(q or "")[:200], reason=reason, page=max(1, min(page, 100_000))
    )


@router.post("/suppressions")
def suppressions_add(
    request: Request,
    principal: AdminUser,
    email: Annotated[str, Form(max_length=320)],
    reason: Annotated[str, Form(max_length=32)] = "manual",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        with committing(request.app.state.session_factory()) as session:
            api_suppressions.add(session, request_actor(request, principal), email, reason, note)
    except DispatchError as exc:
        with request.app.state.session_factory() as session:
            return _page(request, session, extra=_failed(request, exc), status_code=422)
    return RedirectResponse("/admin/suppressions?msg=saved", status_code=303)


@router.post("/suppressions/{suppression_id}/remove")
def suppressions_remove(
    request: Request,
    principal: AdminUser,
    suppression_id: RowId,
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    try:
        with committing(request.app.state.session_factory()) as session:
            api_suppressions.remove(
                session, request_actor(request, principal), suppression_id, note
            )
    except DispatchError as exc:
        with request.app.state.session_factory() as session:
            return _page(request, session, extra=_failed(request, exc), status_code=422)
    return RedirectResponse("/admin/suppressions?msg=removed", status_code=303)


@router.post("/suppressions/import")
async def suppressions_import(
    request: Request, principal: AdminUser, file: Annotated[UploadFile, File()]
) -> Response:
    data = await file.read(api_suppressions.MAX_IMPORT_BYTES + 1)
    extra: dict[str, Any]
    status_code = 200
    try:
        if len(data) > api_suppressions.MAX_IMPORT_BYTES:
            raise ValueError(f"CSV larger than {api_suppressions.MAX_IMPORT_BYTES} bytes")
        report = await run_in_threadpool(api_suppressions.import_bytes, request, data)
        extra = {
            "flash": TEXTS.get(
                "supp_import_done",
                request_locale(request),
                added=report["added"],
                already=report["already"],
                problems=len(report["problems"]),
            ),
            "flash_kind": "ok" if not report["problems"] else "",
            "problems": report["problems"],
        }
    except (DispatchError, ValueError, HTTPException) as exc:
        detail = getattr(exc, "detail", None) or str(exc)
        extra, status_code = _failed(request, ValueError(detail)), 422
    with request.app.state.session_factory() as session:
        return _page(request, session, extra=extra, status_code=status_code)


@router.get("/suppressions/export")
def suppressions_export(request: Request, principal: AdminUser, session: DbSession) -> Response:
    return api_suppressions.export(session, request_actor(request, principal))


@router.get("/bounces/{bounce_id}")
def bounce_page(
    request: Request, principal: AdminUser, session: DbSession, bounce_id: RowId
) -> Response:
    view = suppressions.bounce_view(session, bounce_id)
    if view is None:
        raise HTTPException(404, f"no bounce #{bounce_id}")
    return render_page(request, "admin/bounce.html", {"bounce": view})


@router.post("/campaigns/{campaign_id}/retry-failed")
async def campaign_retry_failed(
    request: Request, principal: AdminUser, campaign_id: RowId
) -> Response:
    settings, engine = request.app.state.settings, request.app.state.engine
    try:
        result = await run_in_threadpool(
            engine_campaigns.retry_failed, engine, settings, campaign_id, batch_queue(request)
        )
    except DispatchError as exc:
        from dispatch.web.errors import http_status

        raise HTTPException(http_status(exc), str(exc)) from None
    await run_in_threadpool(api_suppressions.audit_retry, request, campaign_id, result)
    return RedirectResponse(
        f"/admin/campaigns/{campaign_id}?msg=done&retried={result['retried']}", status_code=303
    )
