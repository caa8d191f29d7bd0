"""The audit log in the admin API: JSON keyset pages and the CSV export (admins only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from dispatch import audit_search
from dispatch.web.auth import AdminUser
from dispatch.web.deps import DbSession
from dispatch.web.pages_audit import AuditWhere, BeforeQ, csv_response

router = APIRouter(prefix="/api/audit", tags=["audit"])


@router.get("", summary="The audit log, newest first (keyset pages: pass next_before as before)")
def audit_api(
    principal: AdminUser,
    session: DbSession,
    where: AuditWhere,
    before: BeforeQ = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    result = audit_search.page(session, where, before=before, size=limit)
    return {
        "items": [audit_search.entry_dict(e) for e in result.rows],
        "next_before": result.next_before,
    }


@router.get("/export", summary="The audit log as CSV (same filters; cells formula-safe)")
def audit_api_csv(request: Request, principal: AdminUser, where: AuditWhere) -> Response:
    return csv_response(request, principal, where)
