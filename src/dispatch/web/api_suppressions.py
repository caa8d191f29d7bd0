"""Admin API: the suppression list (search, add, remove with a note, CSV import/export), the
raw bounce behind an entry, and "retry failed and deferred" for a finished campaign."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.audit import Actor
from dispatch.bounces import suppressions
from dispatch.delivery import campaigns as engine_campaigns
from dispatch.models.subscriber import Suppression
from dispatch.subscribers import service
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.audit_actor import record_for_request, request_actor
from dispatch.web.auth import AdminUser, require_admin
from dispatch.web.deps import DbSession, RowId
from dispatch.web.queueing import batch_queue

router = APIRouter(prefix="/api", tags=["suppressions"], dependencies=[Depends(require_admin)])
MAX_IMPORT_BYTES = 5 * 1024 * 1024
Reason = Literal[suppressions.REASONS]  # type: ignore[valid-type]


class SuppressionIn(BaseModel):
    email: str = Field(min_length=3, max_length=320)
    reason: Reason = "manual"  # type: ignore[valid-type]
    note: str = Field(default="", max_length=500)


class RemoveIn(BaseModel):
    note: str = Field(min_length=1, max_length=500, description="why it is lifted (kept)")


@router.get("/suppressions")
def suppressions_search(
    session: DbSession,
    q: Annotated[str | None, Query(max_length=200)] = None,
    reason: Reason | None = None,  # type: ignore[valid-type]
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    return suppressions.search(session, q=q, reason=reason, page=page, per_page=per_page)


def add(session: Session, actor: Actor, email: str, reason: str, note: str) -> Suppression:
    """Suppress an address by hand with a note, audited in the same transaction (the admin
    page and the API)."""
    reason = reason if reason in suppressions.REASONS else "manual"
    row = service.suppress(session, email=email, reason=reason, source="admin")
    row.note = note.strip()
    session.flush()
    after = {"reason": reason, "note": row.note}
    audit.record(
        session, actor, AuditAction.SUPPRESS, AuditTarget.SUPPRESSION, row.email, after=after
    )
    return row


def remove(session: Session, actor: Actor, suppression_id: int, note: str) -> dict[str, Any]:
    """Lift a suppression with a note, audited with what it was (the page and the API)."""
    view = suppressions.remove(session, suppression_id, note=note, by=actor.name)
    audit.record(
        session,
        actor,
        AuditAction.UNSUPPRESS,
        AuditTarget.SUPPRESSION,
        view["email"] or view["openid"],
        before={"reason": view["reason"], "source": view["source"]},
        after={"note": note.strip()},
    )
    return view


@router.post("/suppressions", status_code=201)
def suppressions_add(
    request: Request, principal: AdminUser, session: DbSession, body: SuppressionIn
) -> dict[str, Any]:
    actor = request_actor(request, principal)
    try:
        row = add(session, actor, body.email, body.reason, body.note)
    except service.SubscriberError as exc:
        raise HTTPException(422, str(exc)) from None
    return suppressions.suppression_view(row)


@router.post("/suppressions/{suppression_id}/remove")
def suppressions_remove(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    suppression_id: RowId,
    body: RemoveIn,
) -> dict[str, Any]:
    return {
        "removed": remove(session, request_actor(request, principal), suppression_id, body.note)
    }


@router.post("/suppressions/import")
async def suppressions_import(request: Request) -> dict[str, Any]:
    """Body: a CSV (text/csv) with an `email` column, optional `reason` and `note` columns."""
    data = await request.body()
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(413, f"CSV larger than {MAX_IMPORT_BYTES} bytes")
    return await run_in_threadpool(import_bytes, request, data)


def import_bytes(request: Request, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("gb18030", "replace")
    from dispatch.db import committing

    actor = request_actor(request, request.state.principal)
    with committing(request.app.state.session_factory()) as session:
        report = suppressions.import_csv(session, text, by=actor.name).as_dict()
        after = {"added": report["added"], "already": report["already"]}
        after["problems"] = len(report["problems"])
        audit.record(session, actor, AuditAction.IMPORT, AuditTarget.SUPPRESSION, after=after)
        return report


def export(session: Session, actor: Actor) -> Response:
    """The suppression list as CSV, its download audited (the page and the API)."""
    audit.record(session, actor, AuditAction.EXPORT, AuditTarget.SUPPRESSION)
    return Response(
        suppressions.export_csv(session),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@router.get("/suppressions/export")
def suppressions_export(request: Request, principal: AdminUser, session: DbSession) -> Response:
    return export(session, request_actor(request, principal))


@router.get("/bounces/{bounce_id}")
def bounce_detail(session: DbSession, bounce_id: RowId) -> dict[str, Any]:
    view = suppressions.bounce_view(session, bounce_id)
    if view is None:
        raise HTTPException(404, f"no bounce #{bounce_id}")
    return view


@router.post("/campaigns/{campaign_id}/retry-failed")
async def campaign_retry_failed(request: Request, campaign_id: RowId) -> dict[str, Any]:
    """Send again to a finished campaign's failed and deferred recipients (never to anyone
    already delivered); suppressed addresses are skipped."""
    settings, engine = request.app.state.settings, request.app.state.engine
    # a CampaignError (not found, not finished) maps to its status in dispatch.web.errors
    result = await run_in_threadpool(
        engine_campaigns.retry_failed, engine, settings, campaign_id, batch_queue(request)
    )
    await run_in_threadpool(audit_retry, request, campaign_id, result)
    return result


def audit_retry(request: Request, campaign_id: int, result: dict[str, Any]) -> None:
    """The `send` row of a retry, once the engine committed it (the page and the API)."""
    after = {"retry_failed": result["retried"], "skipped": result["skipped"]}
    record_for_request(request, AuditAction.SEND, AuditTarget.CAMPAIGN, campaign_id, after=after)
