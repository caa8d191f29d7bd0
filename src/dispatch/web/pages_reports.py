"""The report pages: a campaign's and an issue's report, its click map, CSV and A4 print page.

GET /admin/campaigns/{id}/report            the report (HTML, SVG charts, tables)
GET /admin/campaigns/{id}/report.csv        the same figures as CSV (?lang=zh-CN|en)
GET /admin/campaigns/{id}/report/print      print-ready A4 page (?lang=zh-CN|en)
GET /admin/campaigns/{id}/report/clickmap   the email with each link's clicks (sandboxed)
GET /admin/issues/{id}/report …             the same over the issue's email campaigns,
                                            with its WeChat numbers beside them
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.content.model import IssueDoc
from dispatch.i18n import LOCALES
from dispatch.log import get_logger
from dispatch.models import Issue
from dispatch.models.delivery import Campaign
from dispatch.reports import export, source
from dispatch.reports.clickmap import click_map_html
from dispatch.reports.report import campaign_report, issue_report
from dispatch.reports.wechat import issue_wechat
from dispatch.vocabulary import AuditAction, AuditTarget, Channel
from dispatch.web import report_view
from dispatch.web.api_issues import PREVIEW_CSP
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser
from dispatch.web.deps import DbSession, RowId
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

log = get_logger("dispatch.web.reports")
router = APIRouter(prefix="/admin", include_in_schema=False)


def doc_of(issue: Issue | None) -> IssueDoc | None:
    """The issue's parsed source (for link → article), or None if it cannot be read."""
    if issue is None:
        return None
    from dispatch.web.issuedocs import issue_doc

    try:
        return issue_doc(issue)
    except Exception:  # a report without article names beats no report
        log.warning("reports.issue_unreadable", exc_info=True, issue_id=issue.id)
        return None


def load(session: Session, kind: str, row_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(report, subject) of a campaign or an issue; 404 when there is none."""
    if kind == "campaign":
        campaign = source.campaign(session, row_id)
        if campaign is None:
            raise HTTPException(status_code=404, detail=f"campaign {row_id} not found")
        issue = source.issue(session, campaign.issue_id)
        report = campaign_report(session, campaign, doc_of(issue))
        return report, _subject(campaign, issue)
    issue = source.issue(session, row_id)
    if issue is None:
        raise HTTPException(status_code=404, detail=f"issue {row_id} not found")
    campaigns = source.issue_campaigns(session, issue.id, Channel.EMAIL)
    report = issue_report(session, campaigns, doc_of(issue))
    report["wechat"] = issue_wechat(session, issue.id)
    return report, _subject(None, issue)


def _subject(campaign: Campaign | None, issue: Issue | None) -> dict[str, Any]:
    return {
        "kind": "campaign" if campaign is not None else "issue",
        "id": campaign.id if campaign is not None else issue.id if issue else 0,
        "campaign": campaign,
        "issue": issue,
        "name": issue.title if issue is not None else f"#{campaign.id if campaign else ''}",
        "base": f"/admin/campaigns/{campaign.id}/report"
        if campaign is not None
        else f"/admin/issues/{issue.id if issue else 0}/report",
    }


def _lang(request: Request) -> str:
    asked = request.query_params.get("lang") or ""
    return asked if asked in LOCALES else request_locale(request)


def _page(request: Request, session: Session, kind: str, row_id: int, template: str) -> Response:
    locale = _lang(request)
    report, subject = load(session, kind, row_id)
    zone = request.app.state.settings.send_timezone
    context = report_view.context(report, locale, zone)
    context.update({"subject": subject, "locales": LOCALES})
    return render_page(request, template, context, locale=locale)


def csv_response(request: Request, session: Session, kind: str, row_id: int) -> Response:
    locale = _lang(request)
    report, subject = load(session, kind, row_id)
    body = export.to_csv(report, lambda key: TEXTS.get(key, locale))
    name = f"report-{subject['kind']}-{subject['id']}-{locale}.csv"
    _audit_export(request, session, subject, name)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def _audit_export(request: Request, session: Session, subject: dict[str, Any], name: str) -> None:
    """A report's CSV leaves the service: an `export` row on the campaign (its id) or the issue
    (its slug), in the request's transaction. The page, print view and JSON are reads."""
    issue = subject["issue"]
    if subject["kind"] == "campaign":
        kind, target = AuditTarget.CAMPAIGN, subject["id"]
    else:
        kind, target = AuditTarget.ISSUE, issue.slug if issue is not None else subject["id"]
    actor = request_actor(request, request.state.principal)
    after = {"report": "csv", "file": name}
    audit.record(session, actor, AuditAction.EXPORT, kind, target, after=after)


def clickmap_response(request: Request, session: Session, kind: str, row_id: int) -> Response:
    locale = _lang(request)
    report, subject = load(session, kind, row_id)
    doc = doc_of(subject["issue"])
    if doc is None:
        raise HTTPException(status_code=404, detail="the issue's source cannot be read")
    counts = {link["index"]: (link["clickers"]["person"], link["hits"]) for link in report["links"]}
    page = click_map_html(
        doc,
        request.app.state.settings,
        counts,
        lambda people, hits: TEXTS.get("report_clickmap_badge", locale, people=people, hits=hits),
    )
    return HTMLResponse(page, headers={"Content-Security-Policy": PREVIEW_CSP})


ReportView = Callable[[Request, Session, str, int], Any]


def _template(name: str) -> ReportView:
    def view(request: Request, session: Session, kind: str, row_id: int) -> Response:
        return _page(request, session, kind, row_id, name)

    return view


def add_report_routes(
    target: APIRouter, views: dict[str, tuple[ReportView, str]], **route: Any
) -> None:
    """Serve each view (report path suffix → (view, summary)) for a campaign and for an issue:
    GET /campaigns/{campaign_id}/report<suffix> and /issues/{issue_id}/report<suffix>.
    """
    for kind in ("campaign", "issue"):
        for suffix, (view, summary) in views.items():
            target.add_api_route(
                f"/{kind}s/{{{kind}_id}}/report{suffix}",
                _handler(kind, view),
                methods=["GET"],
                name=f"{kind}_report{suffix}",
                summary=summary.format(kind=kind),
                **route,
            )


def _handler(kind: str, view: ReportView) -> Callable[..., Any]:
    """The path parameter keeps its own name (campaign_id, issue_id) in the API's schema."""
    if kind == "campaign":

        def campaign(
            request: Request, principal: EditorUser, session: DbSession, campaign_id: RowId
        ) -> Any:
            return view(request, session, kind, campaign_id)

        return campaign

    def issue(request: Request, principal: EditorUser, session: DbSession, issue_id: RowId) -> Any:
        return view(request, session, kind, issue_id)

    return issue


add_report_routes(
    router,
    {
        "": (_template("admin/report.html"), "A {kind}'s report"),
        "/print": (_template("admin/report_print.html"), "A {kind}'s report, print-ready A4"),
        ".csv": (csv_response, "A {kind}'s report as CSV"),
        "/clickmap": (clickmap_response, "A {kind}'s click map"),
    },
)


@router.get("/reports/trends")
def trends_page(request: Request, principal: EditorUser, session: DbSession) -> Response:
    from dispatch.reports.trends import trends

    locale = request_locale(request)
    raw = request.query_params.get("list", "")
    list_id = int(raw) if raw.isdigit() else None
    data = trends(session, list_id)
    rows = data["issues"]
    svg = report_view.trends_chart(rows, locale)
    return render_page(
        request,
        "admin/report_trends.html",
        {"trends": data, "chart": svg, "percent": report_view.percent, "list_id": list_id},
    )
