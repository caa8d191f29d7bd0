"""Admin pages: server-rendered Jinja2 over the same functions the API uses.

Every page depends on a role guard (401 anonymous, 403 wrong role); every form post carries
the session's CSRF token, checked by the guard. After a successful post the page redirects
(303) with a catalog key in `?msg=`, so a reload never repeats the action.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.delivery import campaigns as engine_campaigns
from dispatch.log import get_logger
from dispatch.models.delivery import Campaign
from dispatch.models.issue import Issue
from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.subscribers import audit_rows, service
from dispatch.vocabulary import AuditAction, AuditTarget, CampaignStatus, IssueStatus
from dispatch.web import api_campaigns, api_issues, api_subscribers
from dispatch.web.audit_actor import record_for_request, request_actor
from dispatch.web.auth import AdminUser, EditorUser
from dispatch.web.chart import opens_clicks_svg
from dispatch.web.deps import BodyId, DbSession, RowId
from dispatch.web.issue_upload import publish_upload, store_upload
from dispatch.web.queueing import batch_queue
from dispatch.web.stats import campaign_progress, campaign_stats
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

log = get_logger("dispatch.web.pages")
router = APIRouter(prefix="/admin", include_in_schema=False)
FLASH_KEYS = {"saved", "done", "new_revision", "campaign_scheduled", "campaign_unscheduled"}


def _flash(request: Request) -> dict[str, Any]:
    key = request.query_params.get("msg")
    if key in FLASH_KEYS:
        return {"flash": TEXTS.get(key, request_locale(request)), "flash_kind": "ok"}
    return {}


def _error(request: Request, exc: Exception) -> dict[str, Any]:
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return {
        "flash": TEXTS.get("action_failed", request_locale(request), reason=reason),
        "flash_kind": "",
    }


def _redirect(path: str, msg: str = "saved") -> Response:
    return RedirectResponse(f"{path}?msg={msg}", status_code=303)


# -- overview ------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request, principal: EditorUser, session: DbSession) -> Response:
    counts = {
        "count_lists": session.scalar(select(func.count(MailingList.id))) or 0,
        "count_subscribers": session.scalar(select(func.count(Subscriber.id))) or 0,
        "count_issues": session.scalar(
            select(func.count(Issue.id)).where(Issue.status == IssueStatus.PUBLISHED)
        )
        or 0,
        "count_campaigns": session.scalar(select(func.count(Campaign.id))) or 0,
    }
    recent = engine_campaigns.list_campaigns(session, limit=5)
    from dispatch.models.wechat import WechatFollower, WechatSyncRun

    last_sync = session.scalars(select(WechatSyncRun).order_by(WechatSyncRun.id.desc())).first()
    if last_sync is not None:  # the Official Account's followers, as the last sync left them
        counts["count_wechat_followers"] = (
            session.scalar(
                select(func.count(WechatFollower.id)).where(WechatFollower.subscribed.is_(True))
            )
            or 0
        )
    return render_page(
        request,
        "admin/overview.html",
        {"counts": counts, "campaigns": recent, "wechat_sync": last_sync, **_flash(request)},
    )


# -- lists ---------------------------------------------------------------------------------


def _lists_page(
    request: Request, session, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    from dispatch.web.api_lists import list_out
    from dispatch.web.pages_subscribers import embed_snippet

    lists = [list_out(session, m, stored_counts=True) for m in service.all_lists(session)]
    base = request.app.state.settings.public_base_url
    for item in lists:
        item["embed"] = embed_snippet(base, item["slug"]) if item["public"] else ""
    return render_page(
        request,
        "admin/lists.html",
        {"lists": lists, **_flash(request), **(extra or {})},
        status_code=status_code,
    )


@router.get("/lists")
def lists_page(request: Request, principal: AdminUser, session: DbSession) -> Response:
    return _lists_page(request, session)


@router.post("/lists")
def lists_create(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    slug: Annotated[str, Form(max_length=64)],
    name: Annotated[str, Form(max_length=200)] = "",
    optin: Annotated[str, Form()] = "single",
    ad_marker: Annotated[str, Form()] = "",
    public: Annotated[str, Form()] = "",
) -> Response:
    try:
        created = service.create_list(session, slug, name, optin=optin)
        created.ad_marker = ad_marker == "1"  # NetEase's "(AD)" subject marker, off by default
        created.public = public == "1"  # offered on the public subscribe form
        audit_rows.created_list(session, request_actor(request, principal), created)
    except ValueError as exc:
        session.rollback()
        return _lists_page(request, session, _error(request, exc), status_code=422)
    return _redirect("/admin/lists")


# -- subscribers ---------------------------------------------------------------------------


def _subscribers_page(
    request: Request,
    session,
    q: str | None,
    list_id: int | None,
    page: int,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
    status: str | None = None,
    after: int | None = None,
    before: int | None = None,
) -> Response:
    from dispatch.models.subscriber import SUBSCRIBER_STATUSES

    status = status if status in SUBSCRIBER_STATUSES else None
    if after is None and before is None:
        page = 1  # pages move by key (after/before an id); the number is only shown
    result = api_subscribers.search_subscribers(
        session,
        q=q,
        list_id=list_id,
        status=status,
        page=page,
        per_page=50,
        after=after,
        before=before,
    )
    return render_page(
        request,
        "admin/subscribers.html",
        {
            "result": result,
            "q": q or "",
            "list_id": list_id,
            "lists": service.all_lists(session),
            "status": status,
            "statuses": SUBSCRIBER_STATUSES,
            "pages": max(1, -(-result["total"] // 50)),
            **_flash(request),
            **(extra or {}),
        },
        status_code=status_code,
    )


@router.get("/subscribers")
def subscribers_page(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    q: str | None = None,
    list_id: int | None = None,
    page: int = 1,
    status: str | None = None,
    after: int | None = None,
    before: int | None = None,
) -> Response:
    list_id = list_id if list_id and 0 < list_id < 2**31 else None
    page = max(1, min(page, 100_000))
    after = after if after is not None and 0 <= after < 2**31 else None
    before = before if before is not None and 0 < before < 2**31 else None
    return _subscribers_page(
        request, session, q, list_id, page, status=status, after=after, before=before
    )


# how consent is had for a double opt-in import: already collected elsewhere (recorded on
# each row), or asked now by a confirmation email to each person (a confirmation campaign)
CONSENT_CHOICES = ("elsewhere", "send")


@router.post("/subscribers/import")
async def subscribers_import(
    request: Request,
    principal: AdminUser,
    file: Annotated[UploadFile, File()],
    list_id: Annotated[str, Form(max_length=12)] = "",
    confirmed: Annotated[str, Form(max_length=8)] = "",
    consent: Annotated[str, Form(max_length=16)] = "",
) -> Response:
    # the list is an explicit choice (the form starts on "choose a list"), never a default
    chosen = int(list_id) if list_id.isdigit() and 0 < int(list_id) < 2**31 else None
    locale = request_locale(request)
    if chosen is None:
        needs = {"flash": TEXTS.get("import_needs_list", locale), "flash_kind": ""}
        with request.app.state.session_factory() as session:
            return _subscribers_page(request, session, None, None, 1, needs, 422)
    # a double opt-in list: the administrator says how consent is had, one of two ways
    # ("confirmed=yes" is the older form's checkbox, kept for scripts that post it)
    consent = "elsewhere" if confirmed == "yes" and not consent else consent
    with request.app.state.session_factory() as session:
        target = session.get(MailingList, chosen)
        if target is not None and target.optin == "double" and consent not in CONSENT_CHOICES:
            needs = {"flash": TEXTS.get("import_needs_consent", locale), "flash_kind": ""}
            return _subscribers_page(request, session, None, chosen, 1, needs, 422)
    data = await file.read(api_subscribers.MAX_IMPORT_BYTES + 1)
    extra: dict[str, Any]
    status_code = 200
    try:
        if len(data) > api_subscribers.MAX_IMPORT_BYTES:
            raise ValueError("CSV too large")
        report = await run_in_threadpool(
            api_subscribers.import_upload,
            request,
            data,
            file.filename or "upload.csv",
            chosen,
            False,
            consent == "elsewhere",
            consent == "send",
        )
        extra = {"report": report}
    except Exception as exc:  # every import problem is shown on the page, named
        if not isinstance(exc, ValueError | RuntimeError) and type(exc).__name__ != "HTTPException":
            raise
        extra, status_code = _error(request, exc), 422
    with request.app.state.session_factory() as session:
        return _subscribers_page(request, session, None, chosen, 1, extra, status_code)


# -- issues --------------------------------------------------------------------------------


def _issues_page(
    request: Request, session, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    from dispatch.content.store import list_issues
    from dispatch.web.editorial_views import review_states

    issues = list_issues(session)
    states = review_states(session, [i.id for i in issues], request_locale(request))
    return render_page(
        request,
        "admin/issues.html",
        {"issues": issues, "review_states": states, **_flash(request), **(extra or {})},
        status_code=status_code,
    )


@router.get("/issues")
def issues_page(request: Request, principal: EditorUser, session: DbSession) -> Response:
    return _issues_page(request, session)


@router.post("/issues")
async def issues_upload(
    request: Request,
    principal: EditorUser,
    session: DbSession,
    files: Annotated[list[UploadFile], File()],
) -> Response:
    payload = [(f.filename or "", await f.read()) for f in files]
    try:
        settings = request.app.state.settings
        folder = store_upload(settings, payload)
        issue = publish_upload(session, folder, settings, request_actor(request, principal))
    except ValueError as exc:
        session.rollback()
        problems = [str(p) for p in getattr(exc, "problems", ())]
        return _issues_page(
            request, session, {**_error(request, exc), "problems": problems}, status_code=422
        )
    # a changed source of an issue already sent became a new revision: say so on its page
    return _redirect(f"/admin/issues/{issue.id}", "new_revision" if issue.publish_note else "saved")


def _test_send_flash(request: Request, session, issue_id: int) -> dict[str, Any]:
    """After a test send (`?test=<campaign id>`): who it went to and which addresses were
    refused, with the reason, so the editor stays on the preview and knows what happened."""
    raw = request.query_params.get("test", "")
    campaign = session.get(Campaign, int(raw)) if raw.isdigit() and int(raw) < 2**31 else None
    if campaign is None or not campaign.is_test or campaign.issue_id != issue_id:
        return {}
    locale = request_locale(request)
    options = campaign.options or {}
    ids = list(options.get("test_subscriber_ids") or [])
    sent = session.scalars(select(Subscriber.email).where(Subscriber.id.in_(ids))).all()
    text = TEXTS.get("test_sent", locale, id=campaign.id, sent=", ".join(sorted(sent)))
    rejected = options.get("rejected_addresses") or []
    if rejected:
        named = "; ".join(f"{r['address']} ({r['reason']})" for r in rejected)
        text += " " + TEXTS.get("test_rejected", locale, rejected=named)
    return {"flash": text, "flash_kind": "" if rejected else "ok"}


def _issue_preview_page(
    request: Request,
    session,
    issue_id: int,
    extra: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    issue = api_issues.get_issue_or_404(session, issue_id)
    context: dict[str, Any] = {
        "issue": issue,
        "lists": service.all_lists(session),
        **_flash(request),
        **_test_send_flash(request, session, issue_id),
        **(extra or {}),
    }
    try:
        email = api_issues.preview_email(request, issue)
        context["email"] = {
            k: email[k] for k in ("subject", "preheader", "html_bytes", "shortened")
        }
    except Exception as exc:  # a preview problem is shown, never a 500 page
        log.error("web.preview_email_failed", exc_info=True, issue_id=issue_id)
        context["email_error"] = str(exc)
    try:
        context["wechat"] = api_issues.preview_wechat(request, issue)
    except Exception as exc:
        context["wechat_error"] = getattr(exc, "detail", None) or str(exc)
    return render_page(request, "admin/issue_preview.html", context, status_code=status_code)


@router.get("/issues/{issue_id}")
def issue_preview(
    request: Request, principal: EditorUser, session: DbSession, issue_id: RowId
) -> Response:
    return _issue_preview_page(request, session, issue_id)


# -- campaigns -----------------------------------------------------------------------------


@router.get("/campaigns")
def campaigns_page(request: Request, principal: EditorUser, session: DbSession) -> Response:
    from dispatch.content.store import list_issues

    campaigns = engine_campaigns.list_campaigns(session, limit=100)
    issues = {i.id: i for i in list_issues(session)}
    return render_page(
        request,
        "admin/campaigns.html",
        {
            "campaigns": campaigns,
            "issues": issues,
            "lists": service.all_lists(session),
            "preselect_issue": request.query_params.get("issue_id"),
            **_flash(request),
        },
    )


@router.post("/campaigns")
def campaigns_create(
    request: Request,
    principal: EditorUser,
    session: DbSession,
    issue_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    list_ids: Annotated[list[BodyId], Form()],
    channel: Annotated[str, Form()] = "email",
    tracking: Annotated[bool, Form()] = False,
) -> Response:
    try:
        if channel == "wechat":  # before anything is stored: a send that cannot happen
            from dispatch.wechat.client import check_wechat_settings

            check_wechat_settings(request.app.state.settings)
        campaign, _ = engine_campaigns.create_or_get(
            session, issue_id=issue_id, channel=channel, list_ids=list_ids, tracking=tracking
        )
    except ValueError as exc:
        session.rollback()
        from dispatch.content.store import list_issues

        return render_page(
            request,
            "admin/campaigns.html",
            {
                "campaigns": engine_campaigns.list_campaigns(session, limit=100),
                "issues": {i.id: i for i in list_issues(session)},
                "lists": service.all_lists(session),
                **_error(request, exc),
            },
            status_code=422,
        )
    return _redirect(f"/admin/campaigns/{campaign.id}")


def _send_confirmation(request: Request, session, campaign: Campaign) -> str:
    """“Send <title> to N subscribers of <lists>?” with the live list sizes; only while the
    campaign can still be started (counting a million eligible people takes about a second,
    and a sent campaign's page does not ask)."""
    if campaign.status not in (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED):
        return ""
    lists = [session.get(MailingList, i) for i in campaign.list_ids or []]
    sizes = {m.id: service.count_recipients(session, [m.id], campaign.channel) for m in lists if m}
    names = "、".join(f"{m.name} ({sizes[m.id]})" for m in lists if m)
    if len(sizes) == 1:  # one list: its count is the total
        total = next(iter(sizes.values()))
    else:
        total = (
            service.count_recipients(session, list(campaign.list_ids or []), campaign.channel)
            if lists
            else 0
        )
    issue = _issue_of(session, campaign)
    return TEXTS.get(
        "send_confirm",
        request_locale(request),
        lists=names,
        count=total,
        title=issue.title if issue else campaign.issue_id,
    )


def _issue_of(session, campaign: Campaign) -> Issue | None:
    """The issue a campaign sends; None for a confirmation campaign (an import's opt-ins)."""
    return session.get(Issue, campaign.issue_id) if campaign.issue_id is not None else None


def _process_warning(request: Request, session, campaign: Campaign) -> str | None:
    """ "No worker has been seen for N s…" in the reader's language, when the campaign waits."""
    from dispatch.delivery.heartbeat import missing_process_message

    settings = request.app.state.settings
    return missing_process_message(session, settings, campaign, locale=request_locale(request))


@router.get("/campaigns/{campaign_id}")
def campaign_page(
    request: Request, principal: EditorUser, session: DbSession, campaign_id: RowId
) -> Response:
    from dispatch.web.pages_schedule import schedule_context

    campaign = api_campaigns.get_campaign_or_404(session, campaign_id)
    stats = campaign_stats(session, campaign)
    locale = request_locale(request)
    chart = opens_clicks_svg(
        stats["timeline"], (TEXTS.get("stat_opened", locale), TEXTS.get("stat_clicked", locale))
    )
    deliveries = None
    if principal.role == "admin":
        deliveries = api_campaigns.campaigns_deliveries(
            session=session,
            campaign_id=campaign_id,
            status=None,
            q=None,
            page=1,
            per_page=50,
            after=None,
            before=None,
        )
    return render_page(
        request,
        "admin/campaign.html",
        {
            "campaign": campaign,
            "issue": _issue_of(session, campaign),
            "lists": [session.get(MailingList, i) for i in campaign.list_ids or []],
            "progress": campaign_progress(session, campaign),
            "stats": stats,
            "chart": Markup(chart),
            "confirm_text": _send_confirmation(request, session, campaign),
            "deliveries": deliveries,
            "process_warning": _process_warning(request, session, campaign),
            "preflight_warnings": _preflight_warnings(request, session, campaign),
            **_wechat_context(request, session, campaign),
            **_flash(request),
            **schedule_context(request, session, campaign),  # the confirmation, the schedule
            **getattr(request.state, "page_extra", {}),  # a refused schedule's message
        },
    )


def _wechat_context(request: Request, session, campaign: Campaign) -> dict[str, Any]:
    """A WeChat campaign shows WeChat's own numbers (mass-send counts, article reads) and,
    before sending, the account's limits, instead of email's opens and clicks."""
    if campaign.channel != "wechat":
        return {}
    from dispatch.wechat.account import campaign_send_options, limits
    from dispatch.wechat.stats import campaign_report

    return {
        "wechat": campaign_report(session, campaign.id),
        "wechat_limits": limits(request.app.state.settings),
        "wechat_mode": campaign_send_options(campaign.options, request.app.state.settings).mode,
    }


def _preflight_warnings(request: Request, session, campaign: Campaign) -> list[str]:
    """Domain and list warnings shown beside the send button (deliverability.preflight)."""
    if campaign.status not in ("draft", "scheduled"):
        return []
    from dispatch.deliverability.preflight import for_campaign

    return for_campaign(session, request.app.state.settings, campaign).warnings


def _refuse_if_enforced(request: Request, campaign_id: int) -> None:
    from dispatch.deliverability.preflight import SendRefused, for_campaign

    with request.app.state.session_factory() as session:
        campaign = api_campaigns.get_campaign_or_404(session, campaign_id)
        check = for_campaign(session, request.app.state.settings, campaign)
    if check.refused:
        raise SendRefused(check.refused)


# what each campaign button is in the audit log
CAMPAIGN_AUDIT = {
    "start": AuditAction.SEND,
    "include_new": AuditAction.SEND,
    "resume": AuditAction.RESUME,
    "pause": AuditAction.PAUSE,
    "cancel": AuditAction.CANCEL,
}


async def _campaign_action(request: Request, campaign_id: int, action: str) -> Response:
    settings, engine = request.app.state.settings, request.app.state.engine
    try:
        if action == "start":
            await run_in_threadpool(_refuse_if_enforced, request, campaign_id)
            await run_in_threadpool(
                engine_campaigns.start, engine, settings, campaign_id, batch_queue(request)
            )
        elif action == "resume":
            await run_in_threadpool(
                engine_campaigns.resume, engine, settings, campaign_id, batch_queue(request)
            )
        elif action == "include_new":
            await run_in_threadpool(
                engine_campaigns.include_new, engine, settings, campaign_id, batch_queue(request)
            )
        else:

            def change() -> None:
                with request.app.state.session_factory() as session, session.begin():
                    getattr(engine_campaigns, action)(session, campaign_id)

            await run_in_threadpool(change)
    except ValueError as exc:
        with request.app.state.session_factory() as session:
            campaign = api_campaigns.get_campaign_or_404(session, campaign_id)
            return render_page(
                request,
                "admin/campaign.html",
                {
                    "campaign": campaign,
                    "issue": _issue_of(session, campaign),
                    "lists": [session.get(MailingList, i) for i in campaign.list_ids or []],
                    "progress": engine_campaigns.progress(session, campaign_id),
                    "stats": campaign_stats(session, campaign),
                    "chart": "",
                    "confirm_text": _send_confirmation(request, session, campaign),
                    "deliveries": None,
                    **_error(request, exc),
                },
                status_code=409,
            )
    record_for_request(request, CAMPAIGN_AUDIT[action], AuditTarget.CAMPAIGN, campaign_id)
    return _redirect(f"/admin/campaigns/{campaign_id}", "done")


@router.post("/campaigns/{campaign_id}/start")
async def campaign_start(request: Request, principal: EditorUser, campaign_id: RowId) -> Response:
    with request.app.state.session_factory() as session:
        api_campaigns.get_campaign_or_404(session, campaign_id)
    return await _campaign_action(request, campaign_id, "start")


@router.post("/campaigns/{campaign_id}/include-new")
async def campaign_include_new(
    request: Request, principal: EditorUser, campaign_id: RowId
) -> Response:
    """“Send to those not yet reached”: people who joined the lists after the send."""
    with request.app.state.session_factory() as session:
        api_campaigns.get_campaign_or_404(session, campaign_id)
    return await _campaign_action(request, campaign_id, "include_new")


@router.post("/campaigns/{campaign_id}/pause")
async def campaign_pause(request: Request, principal: AdminUser, campaign_id: RowId) -> Response:
    return await _campaign_action(request, campaign_id, "pause")


@router.post("/campaigns/{campaign_id}/resume")
async def campaign_resume(request: Request, principal: AdminUser, campaign_id: RowId) -> Response:
    return await _campaign_action(request, campaign_id, "resume")


@router.post("/campaigns/{campaign_id}/cancel")
async def campaign_cancel(request: Request, principal: AdminUser, campaign_id: RowId) -> Response:
    return await _campaign_action(request, campaign_id, "cancel")


@router.post("/issues/{issue_id}/test")
async def issue_test_send(
    request: Request,
    principal: EditorUser,
    issue_id: RowId,
    emails: Annotated[str, Form(max_length=2000)],
) -> Response:
    addresses = [e.strip() for e in emails.replace(";", ",").split(",") if e.strip()][:20]

    settings, engine = request.app.state.settings, request.app.state.engine

    def create_and_start() -> int:
        with request.app.state.session_factory() as session, session.begin():
            api_issues.get_issue_or_404(session, issue_id)
            campaign_id = engine_campaigns.create_test_send(
                session, issue_id=issue_id, channel="email", addresses=addresses, tracking=False
            ).id
            actor, after = request_actor(request, principal), {"addresses": addresses}
            audit.record(
                session,
                actor,
                AuditAction.TEST_SEND,
                AuditTarget.CAMPAIGN,
                campaign_id,
                after=after,
            )
        engine_campaigns.start(engine, settings, campaign_id, batch_queue(request))
        return campaign_id

    try:
        campaign_id = await run_in_threadpool(create_and_start)
    except ValueError as exc:  # no usable address at all: back on the preview, each named
        with request.app.state.session_factory() as session:
            return _issue_preview_page(
                request, session, issue_id, _error(request, exc), status_code=422
            )
    # back to the preview, which names who got the test and which addresses were refused
    return RedirectResponse(f"/admin/issues/{issue_id}?test={campaign_id}", status_code=303)
