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
from fastapi.responses import Response

from dispatch.web import pages_reports
from dispatch.web.auth import require_editor
from dispatch.web.deps import DbSession, RowId

router = APIRouter(prefix="/api", tags=["reports"], dependencies=[Depends(require_editor)])


@router.get("/campaigns/{campaign_id}/report", summary="A campaign's report")
def api_campaign_report(campaign_id: RowId, session: DbSession) -> dict[str, Any]:
    return pages_reports.load(session, "campaign", campaign_id)[0]


@router.get("/campaigns/{campaign_id}/report.csv", summary="A campaign's report as CSV")
def api_campaign_report_csv(request: Request, campaign_id: RowId, session: DbSession) -> Response:
    return pages_reports.csv_response(request, session, "campaign", campaign_id)


@router.get("/issues/{issue_id}/report", summary="An issue's report across its campaigns")
def api_issue_report(issue_id: RowId, session: DbSession) -> dict[str, Any]:
    return pages_reports.load(session, "issue", issue_id)[0]


@router.get("/issues/{issue_id}/report.csv", summary="An issue's report as CSV")
def api_issue_report_csv(request: Request, issue_id: RowId, session: DbSession) -> Response:
    return pages_reports.csv_response(request, session, "issue", issue_id)


@router.get("/reports/trends", summary="The last issues compared, and monthly joins and leaves")
def api_trends(
    session: DbSession, list_id: int | None = Query(default=None, ge=1, le=2**31 - 1)
) -> dict[str, Any]:
    from dispatch.reports.trends import trends

    return trends(session, list_id)
