"""The audit log for administrators: a page with filters and keyset pages, its CSV export
(every cell formula-safe) and the same rows as JSON under /api/audit (web.api_audit).

Exporting the log is itself an audit row: who took a copy of who did what.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response, StreamingResponse

from dispatch import audit, audit_search
from dispatch.db import committing
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import AdminUser
from dispatch.web.deps import DbSession
from dispatch.web.templating import render_page

router = APIRouter(include_in_schema=False)

ActorQ = Annotated[str, Query(max_length=254)]
ActionQ = Annotated[str, Query(max_length=32)]
DayQ = Annotated[str, Query(max_length=10)]  # YYYY-MM-DD, or empty (the form sends that)
BeforeQ = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


def _day(name: str, value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        raise HTTPException(status_code=422, detail=f"{name}: not a date (YYYY-MM-DD)") from None


def audit_filter(
    actor: ActorQ = "", action: ActionQ = "", since: DayQ = "", until: DayQ = ""
) -> audit_search.AuditFilter:
    """The filters of the page, its CSV and the API (one query-string dependency)."""
    if action and action not in set(AuditAction):
        raise HTTPException(status_code=422, detail=f"action: unknown value {action!r}")
    return audit_search.AuditFilter(
        actor=actor, action=action, since=_day("since", since), until=_day("until", until)
    )


AuditWhere = Annotated[audit_search.AuditFilter, Depends(audit_filter)]


@router.get("/admin/audit")
def audit_page(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    where: AuditWhere,
    before: BeforeQ = None,
) -> Response:
    result = audit_search.page(session, where, before=before)
    days = {
        k: d.isoformat() if d else "" for k, d in (("since", where.since), ("until", where.until))
    }
    query = {"actor": where.actor, "action": where.action, **days}
    return render_page(
        request,
        "admin/audit.html",
        {
            "rows": result.rows,
            "next_before": result.next_before,
            "query": query,
            "actions": list(AuditAction),
            "first_page": before is None,
        },
    )


def csv_response(request: Request, principal: Any, where: audit_search.AuditFilter) -> Response:
    with committing(request.app.state.session_factory()) as session:
        audit.record(
            session,
            request_actor(request, principal),
            AuditAction.EXPORT,
            AuditTarget.AUDIT,
            after={k: v for k, v in where.__dict__.items() if v},
        )
    session = request.app.state.session_factory()

    def chunks() -> Any:
        try:
            yield from audit_search.csv_chunks(session, where)
        finally:
            session.close()

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
    )


@router.get("/admin/audit.csv")
def audit_csv(request: Request, principal: AdminUser, where: AuditWhere) -> Response:
    return csv_response(request, principal, where)
