"""Admin pages for one subscriber and for many at once (issue 13, item 6).

A person's page shows everything an administrator needs before answering them: their
addresses and preferred channel, each list with how and when they consented, every event,
their deliveries; and the actions the person could take themselves (edit, unsubscribe,
delete, export). Bulk actions on the subscriber list always show the count and ask once
more before they run.
"""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from dispatch import audit, events
from dispatch.models import utcnow
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.event import Event
from dispatch.models.subscriber import PREFERRED_CHANNELS, MailingList, Subscriber, Subscription
from dispatch.subscribers import audit_rows, preferences, service
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import AdminUser
from dispatch.web.deps import DbSession, RowId
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS

router = APIRouter(prefix="/admin", include_in_schema=False)
BULK_ACTIONS = ("add_to_list", "remove_from_list", "unsubscribe", "delete")
BULK_MAX = 500  # one page of checkboxes at most


def _person_or_404(session, subscriber_id: int) -> Subscriber:
    person = session.get(Subscriber, subscriber_id)
    if person is None:
        raise HTTPException(status_code=404, detail=f"subscriber {subscriber_id} not found")
    return person


def _detail(
    request: Request, session, person: Subscriber, extra: dict | None = None, status_code: int = 200
) -> Response:
    lists = [
        {
            "slug": m.slug,
            "name": m.name,
            "status": s.status,
            "source": s.source,
            "created_at": s.created_at,
            "confirmed_at": s.confirmed_at,
            "unsubscribed_at": s.unsubscribed_at,
        }
        for m, s in service.subscriptions_of(session, person.id)
    ]
    history = list(
        session.scalars(
            select(Event)
            .where(Event.subscriber_id == person.id)
            .order_by(Event.id.desc())
            .limit(500)
        )
    )
    deliveries = session.execute(
        select(Delivery, Campaign.channel)
        .join(Campaign, Campaign.id == Delivery.campaign_id)
        .where(Delivery.subscriber_id == person.id)
        .order_by(Delivery.id.desc())
        .limit(200)
    ).all()
    return render_page(
        request,
        "admin/subscriber.html",
        {
            "person": person,
            "lists": lists,
            "events": history,
            "deliveries": deliveries,
            "channels": PREFERRED_CHANNELS,
            "suppressed": service.is_suppressed(session, email=person.email, openid=person.openid),
            **(extra or {}),
        },
        status_code=status_code,
    )


@router.get("/subscribers/{subscriber_id}")
def subscriber_page(
    request: Request, principal: AdminUser, session: DbSession, subscriber_id: RowId
) -> Response:
    extra = {}
    if request.query_params.get("msg") == "saved":
        extra = {"flash": TEXTS.get("saved", request_locale(request)), "flash_kind": "ok"}
    return _detail(request, session, _person_or_404(session, subscriber_id), extra)


@router.post("/subscribers/{subscriber_id}/edit")
def subscriber_edit(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    subscriber_id: RowId,
    name: Annotated[str, Form(max_length=200)] = "",
    email: Annotated[str, Form(max_length=320)] = "",
    locale: Annotated[str, Form(max_length=8)] = "zh-CN",
    channel: Annotated[str, Form(max_length=8)] = "email",
) -> Response:
    person = _person_or_404(session, subscriber_id)
    try:
        if "\r" in name or "\n" in name or "\r" in email or "\n" in email:
            raise service.SubscriberError("bad_status", value="line break", allowed="plain text")
        before = {"email": person.email, "name": person.name}
        fields = audit_rows.person_fields(person)
        if email.strip() and email.strip() != (person.email or ""):
            service.update_subscriber(session, person, email=email)
        preferences.update_preferences(
            session,
            person,
            name=name,
            locale=locale,
            channel=channel,
            source=f"admin:{principal.email}",
        )
        if before["email"] != person.email:
            events.record(
                session,
                "email_changed",
                channel="web",
                subscriber_id=person.id,
                data={
                    "source": f"admin:{principal.email}",
                    "from": before["email"],
                    "to": person.email,
                },
            )
        session.flush()
        audit_rows.changed_person(session, request_actor(request, principal), person, fields)
    except ValueError as exc:
        session.rollback()
        person = _person_or_404(session, subscriber_id)
        reason = str(exc).splitlines()[0]
        flash = TEXTS.get("action_failed", request_locale(request), reason=reason)
        return _detail(request, session, person, {"flash": flash, "flash_kind": ""}, 422)
    return RedirectResponse(f"/admin/subscribers/{subscriber_id}?msg=saved", status_code=303)


@router.post("/subscribers/{subscriber_id}/unsubscribe")
def subscriber_unsubscribe(
    request: Request, principal: AdminUser, session: DbSession, subscriber_id: RowId
) -> Response:
    person = _person_or_404(session, subscriber_id)
    source = f"admin:{principal.email}"
    if service.unsubscribe(session, person.id, None, source=source, channel="web"):
        audit_rows.unsubscribed(session, request_actor(request, principal), person.id, None)
    return RedirectResponse(f"/admin/subscribers/{subscriber_id}?msg=saved", status_code=303)


@router.post("/subscribers/{subscriber_id}/delete")
def subscriber_delete(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    subscriber_id: RowId,
    confirm: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    person = _person_or_404(session, subscriber_id)
    if confirm != "yes":
        flash = TEXTS.get("prefs_delete_warning", request_locale(request))
        return _detail(request, session, person, {"flash": flash, "flash_kind": ""}, 422)
    person_id = person.id
    preferences.forget(session, person, source=f"admin:{principal.email}")
    audit_rows.deleted(session, request_actor(request, principal), person_id)
    return RedirectResponse("/admin/subscribers?msg=done", status_code=303)


@router.get("/subscribers/{subscriber_id}/data.json")
def subscriber_export(
    request: Request, principal: AdminUser, session: DbSession, subscriber_id: RowId
) -> Response:
    person = _person_or_404(session, subscriber_id)
    data = preferences.export_data(session, person)
    actor = request_actor(request, principal)
    audit.record(session, actor, AuditAction.EXPORT, AuditTarget.SUBSCRIBER, person.id)
    return Response(
        json.dumps(data, ensure_ascii=False, indent=2, default=str),
        media_type="application/json; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="subscriber-{person.id}.json"',
            "Cache-Control": "no-store",
        },
    )


# -- bulk actions --------------------------------------------------------------------------


def _bulk_apply(session, action: str, ids: list[int], list_id: int | None, actor: str) -> list[int]:
    people = [p for p in (session.get(Subscriber, i) for i in ids) if p is not None]
    done = [p.id for p in people]
    source = f"admin-bulk:{actor}"
    now = utcnow()
    for person in people:
        if action == "add_to_list" and list_id is not None:
            sub = session.get(Subscription, (person.id, list_id))
            if sub is None:
                sub = Subscription(subscriber_id=person.id, list_id=list_id, created_at=now)
                session.add(sub)
            if sub.status != "confirmed":
                sub.status, sub.confirmed_at, sub.unsubscribed_at = "confirmed", now, None
                sub.source = source
                events.record(
                    session,
                    "subscribed",
                    channel="web",
                    subscriber_id=person.id,
                    list_id=list_id,
                    data={"source": source},
                )
        elif action == "remove_from_list" and list_id is not None:
            service.unsubscribe(session, person.id, list_id, source=source, channel="web")
        elif action == "unsubscribe":
            service.unsubscribe(session, person.id, None, source=source, channel="web")
        elif action == "delete":
            preferences.forget(session, person, source=source)
    session.flush()
    return done


def _audit_bulk(
    request: Request, principal, session, action: str, list_id: int | None, ids: list[int]
) -> None:
    """One row for the whole action: what, on which list, how many, whom (ids, no address)."""
    target = session.get(MailingList, list_id) if list_id is not None else None
    slug = target.slug if target is not None else None
    after = {"action": action, "list": slug, "count": len(ids), "ids": ids}
    kind = AuditTarget.LIST if slug else AuditTarget.SUBSCRIBER
    actor = request_actor(request, principal)
    audit.record(session, actor, AuditAction.BULK_ACTION, kind, slug, after=after)


@router.post("/subscribers/bulk")
async def subscribers_bulk(request: Request, principal: AdminUser, session: DbSession) -> Response:
    form = await request.form()
    action = str(form.get("action") or "")
    raw_ids = [str(v) for v in form.getlist("ids")]
    ids = sorted({int(v) for v in raw_ids if v.isdigit() and 0 < int(v) < 2**31})
    raw_list = str(form.get("list_id") or "")
    list_id = int(raw_list) if raw_list.isdigit() and 0 < int(raw_list) < 2**31 else None
    locale = request_locale(request)
    needs_list = action in ("add_to_list", "remove_from_list")
    problem = None
    if action not in BULK_ACTIONS:
        problem = TEXTS.get("bulk_choose_action", locale)
    elif not ids or len(ids) > BULK_MAX:
        problem = TEXTS.get("bulk_choose_people", locale, max=BULK_MAX)
    elif needs_list and (list_id is None or session.get(MailingList, list_id) is None):
        problem = TEXTS.get("import_needs_list", locale)
    if problem is not None:
        return render_page(
            request,
            "admin/bulk_confirm.html",
            {
                "problem": problem,
                "ids": ids,
                "action": action,
                "list_id": list_id,
                "count": len(ids),
            },
            status_code=422,
        )
    if form.get("confirm") != "yes":  # first post: say how many and what, ask once more
        target = session.get(MailingList, list_id) if list_id else None
        return render_page(
            request,
            "admin/bulk_confirm.html",
            {
                "ids": ids,
                "action": action,
                "list_id": list_id,
                "list_name": target.name if target else "",
                "count": len(ids),
            },
        )
    done = _bulk_apply(session, action, ids, list_id, principal.email)
    _audit_bulk(request, principal, session, action, list_id, done)
    return RedirectResponse(f"/admin/subscribers?msg=done&n={len(done)}", status_code=303)


# -- lists: public or not, and the form an institution pastes into its own site -------------


@router.post("/lists/{list_id}/public")
def list_public(
    request: Request,
    principal: AdminUser,
    session: DbSession,
    list_id: RowId,
    public: Annotated[str, Form(max_length=1)] = "0",
) -> Response:
    mailing_list = session.get(MailingList, list_id)
    if mailing_list is None:
        raise HTTPException(status_code=404, detail=f"list {list_id} not found")
    before = audit_rows.list_fields(mailing_list)
    mailing_list.public = public == "1"
    audit_rows.changed_list(session, request_actor(request, principal), mailing_list, before)
    return RedirectResponse("/admin/lists?msg=saved", status_code=303)


def embed_snippet(base_url: str, slug: str) -> str:
    """The HTML an institution pastes into its own page: a plain form posting to /subscribe,
    with the proof-of-work script (it fetches a fresh challenge); no third-party resource."""
    base = base_url.rstrip("/")
    return (
        f'<form method="post" action="{base}/subscribe" data-dispatch-subscribe>\n'
        f'  <input type="hidden" name="lists" value="{slug}">\n'
        '  <input type="email" name="email" required placeholder="邮箱 / Email">\n'
        '  <input type="text" name="name" placeholder="姓名 / Name">\n'
        '  <select name="locale"><option value="zh-CN">中文</option>'
        '<option value="en">English</option></select>\n'
        '  <input type="text" name="website" tabindex="-1" autocomplete="off" '
        'style="position:absolute;left:-10000px" aria-hidden="true">\n'
        '  <button type="submit">订阅 / Subscribe</button>\n'
        "</form>\n"
        f'<script src="{base}/subscribe/pow.js" defer></script>'
    )
