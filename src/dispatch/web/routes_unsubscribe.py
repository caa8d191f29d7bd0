"""Unsubscribe: public, no login and no cookie needed (confirmation: routes_subscribe).

The signed token in the path is the authorisation, so these forms carry no CSRF token.
GET never changes anything (link scanners prefetch it); POST with `List-Unsubscribe=One-Click`
(RFC 8058) unsubscribes at once and answers 200 with no page; the page's own form posts the
reader's choice (this list or all lists). Every path is idempotent and the subscriber service
records the events.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch.config import Settings
from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.tokens import TokenError, verify_unsubscribe_token
from dispatch.web.templating import message_page, render_page

router = APIRouter(include_in_schema=False)


def _mask(email: str | None) -> str:
    """a***@example.org: enough for the reader to recognise, little for a leaked link."""
    if not email or "@" not in email:
        return email or ""
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


def _page_context(session: Session, subscriber_id: int, list_id: int | None) -> dict | None:
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    mailing_list = session.get(MailingList, list_id) if list_id is not None else None
    return {
        "email": _mask(subscriber.email),
        "subscriber_locale": subscriber.locale,
        "list_name": mailing_list.name if mailing_list is not None else None,
    }


def _unsubscribe(session: Session, settings: Settings, token: str, scope: str, source: str) -> None:
    """Apply the unsubscribe: the token's own scope, or every list when the reader chose all."""
    from dispatch.subscribers import service

    target = verify_unsubscribe_token(settings, token)
    if scope == "all" and target.list_id is not None:
        service.unsubscribe(session, target.subscriber_id, None, source=source)
    else:
        service.unsubscribe_by_token(session, settings, token, source=source)


@router.get("/u/{token}")
def unsubscribe_page(token: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    if request.query_params.get("prefs"):  # the footer's "preferences" link: same token
        return RedirectResponse(f"/p/{token}", status_code=303)
    try:
        target = verify_unsubscribe_token(settings, token)
    except TokenError:
        return message_page(request, "unsub_title", "unsub_invalid", status_code=404)
    with request.app.state.session_factory() as session:
        ctx = _page_context(session, target.subscriber_id, target.list_id)
    if ctx is None:
        return message_page(request, "unsub_title", "unsub_invalid", status_code=404)
    return render_page(
        request,
        "public/unsubscribe.html",
        {**ctx, "token": token},
        locale=ctx["subscriber_locale"],
        headers={"Cache-Control": "no-store"},
    )


@router.post("/u/{token}")
async def unsubscribe_post(token: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        target = verify_unsubscribe_token(settings, token)
    except TokenError:
        raise HTTPException(status_code=404, detail="invalid unsubscribe link") from None
    form = await request.form()
    one_click = form.get("List-Unsubscribe") == "One-Click"
    scope = "all" if form.get("scope") == "all" else "one"

    def work() -> dict | None:
        with request.app.state.session_factory() as session, session.begin():
            ctx = _page_context(session, target.subscriber_id, target.list_id)
            if ctx is not None:
                _unsubscribe(
                    session,
                    settings,
                    token,
                    "token" if one_click else scope,
                    "list-unsubscribe" if one_click else "unsubscribe-page",
                )
            return ctx

    try:
        ctx = await run_in_threadpool(work)
    except TokenError:  # the token names a list or person that no longer exists
        ctx = None
    if one_click:
        if ctx is None:
            raise HTTPException(status_code=404, detail="invalid unsubscribe link")
        return PlainTextResponse("", status_code=200)
    if ctx is None:
        return message_page(request, "unsub_title", "unsub_invalid", status_code=404)
    return message_page(request, "unsub_title", "unsub_done", locale=ctx["subscriber_locale"])
