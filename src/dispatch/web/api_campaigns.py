"""Admin API: campaigns (create, test send, start, pause, resume, cancel, progress), their
per-recipient deliveries with events, and stats. Every state change is a call into
dispatch.delivery.campaigns; nothing here decides what a transition means.

Roles: editors create, test-send, start and watch; pause, resume, cancel and the
per-recipient list (personal data) are for admins.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.delivery import campaigns as engine_campaigns
from dispatch.models import Event
from dispatch.models.delivery import CHANNEL_KINDS, DELIVERY_STATUSES, Campaign, Delivery
from dispatch.models.web import TrackingHit
from dispatch.vocabulary import AuditAction, AuditTarget, Channel
from dispatch.web.audit_actor import record_for_request, request_actor
from dispatch.web.auth import require_admin, require_editor
from dispatch.web.deps import BodyId, DbSession, RowId
from dispatch.web.queueing import batch_queue
from dispatch.web.stats import campaign_progress, campaign_stats

router = APIRouter(prefix="/api/campaigns", tags=["campaigns"])
editor = [Depends(require_editor)]
admin = [Depends(require_admin)]


class CampaignIn(BaseModel):
    issue_id: int = Field(ge=1, le=2**31 - 1)
    channel: Literal[CHANNEL_KINDS] = Channel.EMAIL.value  # type: ignore[valid-type]
    list_ids: list[BodyId] = Field(min_length=1, max_length=100)
    tracking: bool = True


class TestSendIn(BaseModel):
    issue_id: int = Field(ge=1, le=2**31 - 1)
    channel: Literal[CHANNEL_KINDS] = Channel.EMAIL.value  # type: ignore[valid-type]
    addresses: list[str] = Field(
        min_length=1, max_length=20, description="emails, or openids for WeChat"
    )
    tracking: bool = False


def campaign_out(campaign: Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "issue_id": campaign.issue_id,
        "channel": campaign.channel,
        "list_ids": list(campaign.list_ids or []),
        "status": campaign.status,
        "is_test": campaign.is_test,
        "tracking": campaign.tracking,
        "total": campaign.total,
        "paused_reason": campaign.paused_reason,
        "created_at": campaign.created_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
    }


def get_campaign_or_404(session: Session, campaign_id: RowId) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise HTTPException(status_code=404, detail=f"campaign {campaign_id} not found")
    return campaign


@router.get("", dependencies=editor, summary="Recent campaigns")
def campaigns_index(
    session: DbSession, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[dict]:
    return [campaign_out(c) for c in engine_campaigns.list_campaigns(session, limit=limit)]


@router.post(
    "",
    status_code=201,
    dependencies=editor,
    summary="Create (or find) the campaign for issue × channel × lists",
)
def campaigns_create(body: CampaignIn, request: Request, session: DbSession) -> dict:
    from dispatch.models.subscriber import MailingList

    for list_id in body.list_ids:
        if session.get(MailingList, list_id) is None:
            raise HTTPException(status_code=404, detail=f"list {list_id} not found")
    if body.channel == "wechat":  # before anything is stored: a send that cannot happen
        from dispatch.wechat.client import WechatSettingsMissing, check_wechat_settings

        try:
            check_wechat_settings(request.app.state.settings)
        except WechatSettingsMissing as exc:
            raise HTTPException(status_code=409, detail=str(exc)) from None
    campaign, created = engine_campaigns.create_or_get(
        session,
        issue_id=body.issue_id,
        channel=body.channel,
        list_ids=body.list_ids,
        tracking=body.tracking,
    )
    return {**campaign_out(campaign), "created": created}


@router.post(
    "/test", status_code=201, dependencies=editor, summary="Test send an issue to a few addresses"
)
async def campaigns_test_send(body: TestSendIn, request: Request, session: DbSession) -> dict:
    campaign = engine_campaigns.create_test_send(
        session,
        issue_id=body.issue_id,
        channel=body.channel,
        addresses=body.addresses,
        tracking=body.tracking,
    )
    actor = request_actor(request, request.state.principal)
    after = {"addresses": body.addresses, "channel": body.channel}
    audit.record(
        session, actor, AuditAction.TEST_SEND, AuditTarget.CAMPAIGN, campaign.id, after=after
    )
    session.commit()
    settings, engine = request.app.state.settings, request.app.state.engine
    await run_in_threadpool(
        engine_campaigns.start, engine, settings, campaign.id, batch_queue(request)
    )
    session.refresh(campaign)
    return campaign_out(campaign)


@router.get("/{campaign_id}", dependencies=editor, summary="A campaign and its progress")
def campaigns_show(campaign_id: RowId, session: DbSession) -> dict:
    return campaign_progress(session, get_campaign_or_404(session, campaign_id))


@router.get(
    "/{campaign_id}/progress", dependencies=editor, summary="Progress: counts by status, done, rate"
)
def campaigns_progress(campaign_id: RowId, session: DbSession) -> dict:
    return campaign_progress(session, get_campaign_or_404(session, campaign_id))


@router.post("/{campaign_id}/start", dependencies=editor, summary="Start sending now")
async def campaigns_start(campaign_id: RowId, request: Request, session: DbSession) -> dict:
    from dispatch.deliverability.preflight import for_campaign

    campaign = get_campaign_or_404(session, campaign_id)
    settings, engine = request.app.state.settings, request.app.state.engine
    check = await run_in_threadpool(for_campaign, session, settings, campaign)
    if check.refused:
        raise HTTPException(status_code=409, detail=check.refused)
    session.close()
    batches = await run_in_threadpool(
        engine_campaigns.start, engine, settings, campaign_id, batch_queue(request)
    )
    await run_in_threadpool(
        record_for_request, request, AuditAction.SEND, AuditTarget.CAMPAIGN, campaign_id
    )
    with request.app.state.session_factory() as fresh:
        return {
            **engine_campaigns.progress(fresh, campaign_id),
            "batches": len(batches),
            "warnings": check.warnings,
        }


@router.post("/{campaign_id}/pause", dependencies=admin, summary="Pause sending")
def campaigns_pause(campaign_id: RowId, request: Request, session: DbSession) -> dict:
    get_campaign_or_404(session, campaign_id)
    out = campaign_out(engine_campaigns.pause(session, campaign_id))
    actor = request_actor(request, request.state.principal)
    audit.record(session, actor, AuditAction.PAUSE, AuditTarget.CAMPAIGN, campaign_id)
    return out


@router.post("/{campaign_id}/resume", dependencies=admin, summary="Resume a paused campaign")
async def campaigns_resume(campaign_id: RowId, request: Request, session: DbSession) -> dict:
    get_campaign_or_404(session, campaign_id)
    session.close()
    settings, engine = request.app.state.settings, request.app.state.engine
    await run_in_threadpool(
        engine_campaigns.resume, engine, settings, campaign_id, batch_queue(request)
    )
    await run_in_threadpool(
        record_for_request, request, AuditAction.RESUME, AuditTarget.CAMPAIGN, campaign_id
    )
    with request.app.state.session_factory() as fresh:
        return engine_campaigns.progress(fresh, campaign_id)


@router.post("/{campaign_id}/cancel", dependencies=admin, summary="Cancel for good")
def campaigns_cancel(campaign_id: RowId, request: Request, session: DbSession) -> dict:
    get_campaign_or_404(session, campaign_id)
    out = campaign_out(engine_campaigns.cancel(session, campaign_id))
    actor = request_actor(request, request.state.principal)
    audit.record(session, actor, AuditAction.CANCEL, AuditTarget.CAMPAIGN, campaign_id)
    return out


@router.get(
    "/{campaign_id}/stats", dependencies=editor, summary="Counts, rates and opens/clicks over time"
)
def campaigns_stats(campaign_id: RowId, session: DbSession) -> dict:
    return campaign_stats(session, get_campaign_or_404(session, campaign_id))


def _events_and_hits(
    session: Session, ids: list[int]
) -> tuple[dict[int, list[dict]], dict[int, dict[str, int]]]:
    """Each delivery's events (in order) and its open and click counts."""
    events: dict[int, list[dict]] = {i: [] for i in ids}
    hits: dict[int, dict[str, int]] = {i: {"opens": 0, "clicks": 0} for i in ids}
    if ids:
        for ev in session.scalars(
            select(Event).where(Event.delivery_id.in_(ids)).order_by(Event.occurred_at, Event.id)
        ):
            events[int(ev.delivery_id or 0)].append(
                {"kind": ev.kind, "at": ev.occurred_at, "data": ev.data}
            )
        for delivery_id, link_index, count in session.execute(
            select(TrackingHit.delivery_id, TrackingHit.link_index, TrackingHit.count).where(
                TrackingHit.delivery_id.in_(ids)
            )
        ):
            hits[delivery_id]["opens" if link_index < 0 else "clicks"] += count
    return events, hits


@router.get(
    "/{campaign_id}/deliveries",
    dependencies=admin,
    summary="Per-recipient deliveries with their events",
)
def campaigns_deliveries(
    session: DbSession,
    campaign_id: RowId,
    status: Literal[DELIVERY_STATUSES] | None = None,  # type: ignore[valid-type]
    q: Annotated[
        str | None, Query(max_length=200, description="part of the address or name")
    ] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        int | None, Query(ge=0, le=2**63 - 1, description="the page after this id (keyset)")
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="the page before this id (keyset)")
    ] = None,
) -> dict:
    """`after`/`before` a delivery id walk the pages by key (the same cost at the millionth
    row); `page` alone still offsets, for old clients. `total` counts up to 10,000."""
    from dispatch.web.api_subscribers import paged

    get_campaign_or_404(session, campaign_id)
    query = select(Delivery).where(Delivery.campaign_id == campaign_id)
    if status:
        query = query.where(Delivery.status == status)
    q = (q or "").replace("\x00", "").strip()
    if q:
        pattern = f"%{q.lower()}%"
        query = query.where(
            func.lower(Delivery.email).like(pattern) | func.lower(Delivery.name).like(pattern)
        )
    rows, pager = paged(
        session, query, Delivery.id, page=page, per_page=per_page, after=after, before=before
    )
    events, hits = _events_and_hits(session, [d.id for d in rows])
    return {
        **pager,
        "items": [
            {
                "id": d.id,
                "subscriber_id": d.subscriber_id,
                "email": d.email,
                "openid": d.openid,
                "name": d.name,
                "status": d.status,
                "attempts": d.attempts,
                "last_code": d.last_code,
                "last_text": d.last_text,
                "sent_at": d.sent_at,
                **hits[d.id],
                "events": events[d.id],
            }
            for d in rows
        ],
    }
