"""Reports from the API: the same figures as the report pages, as JSON and CSV.

GET /api/campaigns/{id}/report        JSON (keys: docs/reports.md)
GET /api/campaigns/{id}/report.csv    CSV (?lang=zh-CN|en for the label column)
GET /api/issues/{id}/report           JSON over the issue's email campaigns, with "wechat"
GET /api/issues/{id}/report.csv
GET /api/reports/trends               the last 12 issues per list and monthly joins/leaves
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.orm import Session

from dispatch.web import pages_reports
from dispatch.web.auth import require_editor
from dispatch.web.deps import DbSession

router = APIRouter(prefix="/api", tags=["reports"], dependencies=[Depends(require_editor)])


def _json(request: Request, session: Session, kind: str, row_id: int) -> dict[str, Any]:
    return pages_reports.load(session, kind, row_id)[0]


pages_reports.add_report_routes(
    router,
    {
        "": (_json, "A {kind}'s report (an issue's: across its email campaigns, with WeChat's)"),
        ".csv": (pages_reports.csv_response, "A {kind}'s report as CSV"),
    },
)


@router.get("/reports/trends", summary="The last issues compared, and monthly joins and leaves")
def api_trends(
    session: DbSession, list_id: int | None = Query(default=None, ge=1, le=2**31 - 1)
) -> dict[str, Any]:
    from dispatch.reports.trends import trends

    return trends(session, list_id)
