"""The public subscription form and the double opt-in confirmation page.

GET /subscribe shows the form (public lists, language) with a signed proof-of-work challenge
that /subscribe/pow.js solves before posting; POST /subscribe applies the rules of
dispatch.subscribers.signup and answers the same page whatever the address's history. The
confirmation email is sent after the response (the request never waits for SMTP).
GET /confirm/{token} only shows a button: mail scanners fetch links, people press buttons.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dispatch.config import Settings
from dispatch.i18n import normalise_locale
from dispatch.log import get_logger
from dispatch.subscribers import optin, proof, signup
from dispatch.tokens import TokenError
from dispatch.transactional import send_transactional
from dispatch.web.signup_guards import client_ip, guards
from dispatch.web.templating import message_page, render_page, request_locale

router = APIRouter(include_in_schema=False)
log = get_logger(__name__)
POW_JS = Path(__file__).resolve().parent / "static" / "pow.js"


def _form_page(
    request: Request,
    *,
    values: dict | None = None,
    error: str | None = None,
    error_field: str | None = None,
    status_code: int = 200,
) -> Response:
    settings: Settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        lists = [
            {"slug": m.slug, "name": m.name, "description": m.description}
            for m in signup.public_lists(session)
        ]
    values = values or {}
    wanted = values.get("lists") or request.query_params.getlist("lists")
    return render_page(
        request,
        "public/subscribe.html",
        {
            "lists": lists,
            "chosen": set(wanted) if wanted else {m["slug"] for m in lists[:1]},
            "values": values,
            "error": error,
            "error_field": error_field,
            "challenge": proof.new_challenge(settings),
            "bits": settings.signup_pow_bits,
        },
        status_code=status_code,
        headers={"Cache-Control": "no-store"},
    )


@router.get("/subscribe")
def subscribe_page(request: Request) -> Response:
    return _form_page(request)


@router.get("/subscribe/challenge")
def subscribe_challenge(request: Request) -> Response:
    """For a form pasted into another site: a fresh challenge (readable cross-origin)."""
    settings: Settings = request.app.state.settings
    return JSONResponse(
        {"challenge": proof.new_challenge(settings), "bits": settings.signup_pow_bits},
        headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "no-store"},
    )


@router.get("/subscribe/pow.js")
def subscribe_script() -> Response:
    return FileResponse(
        POW_JS,
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=3600", "Access-Control-Allow-Origin": "*"},
    )


def _send_later(settings: Settings, message, subscriber_id: int) -> None:
    try:
        send_transactional(settings, message, subscriber_id=subscriber_id)
    except Exception as exc:  # noqa: BLE001 - the visitor has their answer; log and move on
        log.warning("signup.confirmation_failed", subscriber_id=subscriber_id, error=str(exc))


@router.post("/subscribe")
async def subscribe_post(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    data = await request.form()
    form = signup.SignupForm(
        email=str(data.get("email") or ""),
        name=str(data.get("name") or ""),
        lists=[str(v) for v in data.getlist("lists")],
        locale=str(data.get("locale") or ""),
        honeypot=str(data.get("website") or ""),
        challenge=str(data.get("challenge") or ""),
        pow=str(data.get("pow") or ""),
        client_ip=client_ip(request),
    )
    found = guards(request)

    def work() -> signup.SignupResult:
        with request.app.state.session_factory() as session, session.begin():
            return signup.process(session, settings, found.limiter, found.ledger, form)

    result = await run_in_threadpool(work)
    locale = normalise_locale(form.locale) or request_locale(request)
    if result.outcome == "accepted":
        task = None
        if result.confirmation is not None:
            task = BackgroundTask(_send_later, settings, result.email, result.confirmation[0])
        response = render_page(
            request,
            "public/message.html",
            {
                "title_key": "signup_done_title",
                "message": signup_done_text(locale, form.email),
            },
            locale=locale,
            headers={"Cache-Control": "no-store"},
        )
        response.background = task
        return response
    values = {"email": form.email, "name": form.name, "lists": form.lists, "locale": form.locale}
    return _form_page(
        request,
        values=values,
        error=result.message(locale),
        error_field=result.field_name,
        status_code=429 if result.outcome == "limited" else 400,
    )


def signup_done_text(locale: str, email: str) -> str:
    from dispatch.web.texts import TEXTS

    return TEXTS.get("signup_done", locale, email=email.strip()[:254])


@router.get("/confirm/{token}")
def confirm_page(token: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        with request.app.state.session_factory() as session:
            subscriber, lists = optin.peek(session, settings, token)
            from dispatch.models.subscriber import Subscription

            waiting = [
                m
                for m in lists
                if (s := session.get(Subscription, (subscriber.id, m.id))) is not None
                and s.status == "unconfirmed"
            ]
            ctx = {
                "email": subscriber.email or "",
                "lists": ", ".join(m.name for m in lists),
                "already": not waiting,
                "token": token,
            }
            locale = subscriber.locale
    except TokenError:
        return message_page(request, "confirm_title", "confirm_invalid", status_code=404)
    return render_page(
        request,
        "public/confirm.html",
        ctx,
        locale=locale,
        headers={"Cache-Control": "no-store", "X-Robots-Tag": "noindex"},
    )


@router.post("/confirm/{token}")
async def confirm_post(token: str, request: Request) -> Response:
    settings: Settings = request.app.state.settings
    ip = client_ip(request)

    def work() -> str:
        with request.app.state.session_factory() as session, session.begin():
            subscriber, _lists = optin.peek(session, settings, token)
            optin.confirm_token(session, settings, token, ip=ip)
            return subscriber.locale

    try:
        locale = await run_in_threadpool(work)
    except TokenError:
        return message_page(request, "confirm_title", "confirm_invalid", status_code=404)
    return message_page(request, "confirm_title", "confirm_done", locale=locale)
