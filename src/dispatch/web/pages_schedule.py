"""Sending from the web (issue 19 item 5): schedule a campaign at a date and time in a chosen
zone (the `send_timezone` setting, Asia/Shanghai, by default, always shown with the time),
with an optional sending window (dispatch.delivery.windows), and take a schedule back.

The campaign page's confirmation names the lists, the people per channel and who approved the
issue (dispatch.editorial.guard); scheduling asks the same guard (campaigns.schedule), so an
unapproved issue cannot be scheduled either, and the sweep asks again when it comes due.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.config import Settings
from dispatch.delivery import campaigns as engine_campaigns
from dispatch.delivery.windows import WindowError, check_zone, parse_window
from dispatch.errors import DispatchError, ErrorKind
from dispatch.models.delivery import Campaign
from dispatch.models.issue import Issue
from dispatch.models.subscriber import MailingList
from dispatch.subscribers import service
from dispatch.vocabulary import DELIVERY_CHANNELS, AuditAction, AuditTarget, CampaignStatus
from dispatch.web.api_campaigns import get_campaign_or_404
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser
from dispatch.web.deps import DbSession, RowId
from dispatch.web.editorial_views import clearance
from dispatch.web.templating import request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin/campaigns", include_in_schema=False)
LOCAL_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends


class ScheduleError(DispatchError):
    kind = ErrorKind.INVALID


def local_time(value: str, zone: str, locale: str, now: datetime | None = None) -> datetime:
    """The form's date and time in `zone`, as an aware datetime; refused when past."""
    try:
        tz = ZoneInfo(check_zone(zone.strip()))
    except WindowError:
        raise ScheduleError(TEXTS.get("schedule_bad_zone", locale, zone=zone)) from None
    try:
        naive = datetime.strptime(value.strip()[:16], LOCAL_FORMAT)
    except ValueError:
        raise ScheduleError(TEXTS.get("schedule_bad_time", locale, value=value)) from None
    at = naive.replace(tzinfo=tz)
    if at <= (now or datetime.now(UTC)):
        raise ScheduleError(TEXTS.get("schedule_past", locale, at=f"{value} {zone}"))
    return at


def send_summary(
    session: Session, settings: Settings, campaign: Campaign, locale: str
) -> dict[str, Any]:
    """What the send confirmation names: the lists, the people per channel, the approver."""
    ids = list(campaign.list_ids or [])
    lists = [m.name for m in (session.get(MailingList, i) for i in ids) if m is not None]
    counts = {
        str(ch): service.count_recipients(session, ids, ch) if ids else 0
        for ch in DELIVERY_CHANNELS
    }
    issue = session.get(Issue, campaign.issue_id) if campaign.issue_id is not None else None
    review = clearance(session, settings, issue) if issue and not campaign.is_test else None
    people = "、".join(f"{TEXTS.get('channel_' + ch, locale)} {n}" for ch, n in counts.items())
    parts = [TEXTS.get("confirm_lists", locale, lists="、".join(lists) or "-")]
    parts.append(TEXTS.get("confirm_people", locale, counts=people))
    if review is not None and not review["sendable"]:
        parts.append(TEXTS.get("confirm_not_sendable", locale, reason=review["reason"]))
    elif review is not None and review["approvers"]:
        approvers = "、".join(review["approvers"])
        parts.append(
            TEXTS.get("confirm_approver", locale, approvers=approvers, number=review["version"])
        )
    elif review is not None:
        parts.append(TEXTS.get("confirm_unreviewed", locale))
    return {"lists": lists, "counts": counts, "review": review, "lines": parts}


def schedule_context(request: Request, session: Session, campaign: Campaign) -> dict[str, Any]:
    """The campaign page's schedule form and send confirmation."""
    settings = request.app.state.settings
    locale = request_locale(request)
    # only while it can be sent: counting a million eligible people per channel takes seconds,
    # and the page of a sent campaign shows no confirmation
    can_send = campaign.status in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED)
    summary = send_summary(session, settings, campaign, locale) if can_send else None
    options = campaign.options or {}
    zone = options.get("timezone") or settings.send_timezone
    context: dict[str, Any] = {
        "send_summary": summary,
        "schedule_zone": zone,
        "schedule_window": options.get("window") or settings.send_window,
        "confirm_text": " · ".join(summary["lines"]) if summary else "",
    }
    if campaign.scheduled_at is not None and campaign.status == CampaignStatus.SCHEDULED:
        local = campaign.scheduled_at.astimezone(ZoneInfo(zone))
        context["scheduled_local"] = local.strftime("%Y-%m-%d %H:%M")
    return context


def _back(campaign_id: int, msg: str) -> Response:
    return RedirectResponse(f"/admin/campaigns/{campaign_id}?msg={msg}", status_code=303)


def _refused(request: Request, campaign_id: int, exc: Exception) -> Response:
    from dispatch.web.pages import campaign_page

    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    request.state.page_extra = {
        "flash": TEXTS.get("action_failed", request_locale(request), reason=reason),
        "flash_kind": "",
    }
    with request.app.state.session_factory() as session:
        response = campaign_page(request, request.state.principal, session, campaign_id)
    response.status_code = 409 if getattr(exc, "kind", "") == ErrorKind.CONFLICT else 422
    return response


@router.post("/{campaign_id}/schedule")
def campaign_schedule(
    request: Request,
    principal: EditorUser,
    session: DbSession,
    campaign_id: RowId,
    at: Annotated[str, Form(max_length=40)],
    zone: Annotated[str, Form(max_length=64)] = "",
    window: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    settings = request.app.state.settings
    campaign = get_campaign_or_404(session, campaign_id)
    zone = zone.strip() or settings.send_timezone
    before = {"status": campaign.status, "scheduled_at": campaign.scheduled_at}
    try:
        when = local_time(at, zone, request_locale(request))
        options = dict(campaign.options or {})
        if parse_window(window, zone) is not None:
            options["window"] = window.strip()
        else:
            options.pop("window", None)
        options["timezone"] = zone
        campaign.options = options
        engine_campaigns.schedule(session, campaign_id, when, settings=settings)
        after = {"status": campaign.status, "scheduled_at": when, "zone": zone, **options}
        audit.record(
            session,
            request_actor(request, principal),
            AuditAction.SCHEDULE,
            AuditTarget.CAMPAIGN,
            campaign.id,
            before=before,
            after=after,
        )
    except ValueError as exc:
        session.rollback()
        return _refused(request, campaign_id, exc)
    return _back(campaign_id, "campaign_scheduled")


@router.post("/{campaign_id}/unschedule")
def campaign_unschedule(
    request: Request, principal: EditorUser, session: DbSession, campaign_id: RowId
) -> Response:
    campaign = get_campaign_or_404(session, campaign_id)
    try:
        was = campaign.scheduled_at
        engine_campaigns.transition(session, campaign, CampaignStatus.DRAFT, reason="")
        campaign.scheduled_at = None
        audit.record(
            session,
            request_actor(request, principal),
            AuditAction.UNSCHEDULE,
            AuditTarget.CAMPAIGN,
            campaign.id,
            before={"status": CampaignStatus.SCHEDULED.value, "scheduled_at": was},
            after={"status": campaign.status, "scheduled_at": None},
        )
    except ValueError as exc:
        session.rollback()
        return _refused(request, campaign_id, exc)
    return _back(campaign_id, "campaign_unscheduled")
