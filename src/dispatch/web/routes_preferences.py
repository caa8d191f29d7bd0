"""The preference centre: /p/{token}, reached from every email (the footer's preferences
link, the unsubscribe page) with a signed link that is the only authorisation needed.

GET shows; only POSTs change anything. Inside WeChat the page offers one-tap binding through
the Official Account's web authorisation (snsapi_base); elsewhere a one-time code to send to
the account. Email changes are confirmed at the new address (/p/email/{token}, a button).
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from dispatch.config import Settings
from dispatch.subscribers import binding, preferences, service
from dispatch.tokens import TokenError, make_prefs_token
from dispatch.web.templating import message_page, render_page

router = APIRouter(include_in_schema=False)
NO_STORE = {"Cache-Control": "no-store", "X-Robots-Tag": "noindex"}


def _invalid(request: Request) -> Response:
    return message_page(request, "prefs_title", "prefs_invalid", status_code=404)


def _in_wechat(request: Request) -> bool:
    return "micromessenger" in request.headers.get("user-agent", "").lower()


def _page(
    request: Request,
    token: str,
    *,
    flash: str | None = None,
    extra: dict | None = None,
    status_code: int = 200,
) -> Response:
    settings: Settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        try:
            person = preferences.subscriber_from_link(session, settings, token)
        except TokenError:
            return _invalid(request)
        lists = [
            {"id": m.id, "name": m.name, "status": status, "public": m.public}
            for m, status in preferences.visible_lists(session, person)
        ]
        ctx = {
            "token": token,
            "person": {
                "email": person.email,
                "openid_bound": bool(person.openid),
                "name": person.name,
                "locale": person.locale,
                "channel": person.preferred_channel,
                "status": person.status,
            },
            "lists": lists,
            "flash": flash,
            "in_wechat": _in_wechat(request),
            "wechat_enabled": bool(settings.wechat_app_id),
            **(extra or {}),
        }
        locale = person.locale
    return render_page(
        request,
        "public/preferences.html",
        ctx,
        locale=locale,
        status_code=status_code,
        headers=NO_STORE,
    )


@router.get("/p/{token}")
def preferences_page(token: str, request: Request) -> Response:
    flash = {"bound": "prefs_wechat_bound", "saved": "prefs_saved"}.get(
        request.query_params.get("done", "")
    )
    return _page(request, token, flash=flash)


async def _with_person(request: Request, token: str, action) -> Response:
    """Run `action(session, settings, person)` in one transaction; TokenError → 404 page."""
    settings: Settings = request.app.state.settings

    def work():
        with request.app.state.session_factory() as session, session.begin():
            person = preferences.subscriber_from_link(session, settings, token)
            return action(session, settings, person)

    try:
        return await run_in_threadpool(work)
    except TokenError:
        return _invalid(request)


@router.post("/p/{token}")
async def preferences_save(token: str, request: Request) -> Response:
    form = await request.form()
    wanted = set()
    for value in form.getlist("lists"):
        if str(value).isdigit():
            wanted.add(int(str(value)))

    def action(session, settings, person):
        preferences.update_preferences(
            session,
            person,
            list_ids=wanted,
            locale=str(form.get("locale") or person.locale),
            channel=str(form.get("channel") or person.preferred_channel),
            name=str(form.get("name") if form.get("name") is not None else person.name),
        )
        return None

    try:
        answer = await _with_person(request, token, action)
    except service.SubscriberError as exc:
        return _page(request, token, flash=None, extra={"error": str(exc)}, status_code=400)
    return answer or RedirectResponse(f"/p/{token}?done=saved", status_code=303)


@router.post("/p/{token}/unsubscribe")
async def preferences_unsubscribe(token: str, request: Request) -> Response:
    def action(session, settings, person):
        service.unsubscribe(session, person.id, None, source="preference-centre", channel="web")
        return None

    answer = await _with_person(request, token, action)
    return answer or message_page(request, "unsub_title", "unsub_done")


@router.post("/p/{token}/email")
async def preferences_email(token: str, request: Request) -> Response:
    form = await request.form()
    new_email = str(form.get("email") or "")
    if "\r" in new_email or "\n" in new_email:
        return _page(request, token, extra={"error_key": "prefs_email_taken"}, status_code=400)

    def action(session, settings, person):
        preferences.request_email_change(session, settings, person, new_email)
        return None

    try:
        answer = await _with_person(request, token, action)
    except service.SubscriberError:
        # the same answer whether the address is taken or blocked: no probing through here
        return _page(request, token, extra={"error_key": "prefs_email_taken"}, status_code=400)
    return answer or _page(request, token, flash="prefs_email_change_sent")


@router.get("/p/{token}/data.json")
async def preferences_export(token: str, request: Request) -> Response:
    from dispatch import events

    def action(session, settings, person):
        data = preferences.export_data(session, person)
        events.record(
            session,
            "exported",
            channel="web",
            subscriber_id=person.id,
            data={"source": "preference-centre"},
        )
        return Response(
            json.dumps(data, ensure_ascii=False, indent=2, default=str),
            media_type="application/json; charset=utf-8",
            headers={**NO_STORE, "Content-Disposition": 'attachment; filename="my-data.json"'},
        )

    return await _with_person(request, token, action)


@router.post("/p/{token}/delete")
async def preferences_delete(token: str, request: Request) -> Response:
    form = await request.form()
    if form.get("confirm") != "yes":
        return _page(request, token, extra={"error_key": "prefs_delete_warning"}, status_code=400)

    def action(session, settings, person):
        preferences.forget(session, person)
        return None

    answer = await _with_person(request, token, action)
    return answer or message_page(request, "prefs_title", "prefs_deleted")


@router.get("/p/email/{token}")
def email_change_page(token: str, request: Request) -> Response:
    return render_page(request, "public/email_change.html", {"token": token}, headers=NO_STORE)


@router.post("/p/email/{token}")
async def email_change_confirm(token: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings

    def work() -> str:
        with request.app.state.session_factory() as session, session.begin():
            person = preferences.apply_email_change(session, settings, token)
            return person.locale

    try:
        locale = await run_in_threadpool(work)
    except (TokenError, service.SubscriberError):
        return _invalid(request)
    return message_page(request, "prefs_title", "prefs_email_changed", locale=locale)


@router.post("/p/{token}/wechat-code")
async def preferences_wechat_code(token: str, request: Request) -> Response:
    def action(session, settings, person):
        return binding.issue_message_code(session, person)

    code = await _with_person(request, token, action)
    if isinstance(code, Response):
        return code
    return _page(request, token, extra={"bind_code": code})


@router.get("/p/{token}/wechat")
async def preferences_wechat_oauth(token: str, request: Request) -> Response:
    """Inside WeChat: off to the web authorisation; WeChat comes back to /p/wechat/callback."""

    def action(session, settings, person):
        return RedirectResponse(binding.oauth_url(session, settings, person), status_code=302)

    try:
        return await _with_person(request, token, action)
    except binding.BindError as exc:
        return _page(request, token, extra={"error": str(exc)}, status_code=400)


@router.get("/p/wechat/callback")
async def preferences_wechat_callback(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    state = request.query_params.get("state", "")
    code = request.query_params.get("code", "")

    def work() -> int:
        with request.app.state.session_factory() as session, session.begin():
            return binding.bind_by_oauth(session, settings, state, code).id

    try:
        subscriber_id = await run_in_threadpool(work)
    except binding.BindError as exc:
        return render_page(
            request,
            "public/message.html",
            {"title_key": "prefs_wechat_title", "message": str(exc)},
            status_code=400,
        )
    return RedirectResponse(
        f"/p/{make_prefs_token(settings, subscriber_id)}?done=bound", status_code=303
    )
