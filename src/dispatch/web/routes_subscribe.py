"""The public subscription form and the double opt-in confirmation page.

GET /subscribe shows the form (public lists, language) with a signed proof-of-work challenge
that /subscribe/pow.js solves before posting; POST /subscribe applies the rules of
dispatch.subscribers.signup and answers the same page whatever the address's history. The
confirmation email is sent after the response (the request never waits for SMTP).
GET /confirm/{token} only shows a button: mail scanners fetch links, people press buttons.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from markupsafe import escape
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from dispatch.config import Settings
from dispatch.i18n import normalise_locale
from dispatch.log import get_logger
from dispatch.subscribers import maildomain, optin, proof, signup
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


class SignupRunner:
    """Where a post's work runs, instead of the shared request thread pool.

    Why: on SQLite the writes serialise anyway, so forty pool threads each holding a post only
    queue for the write turn and trade the GIL (a thread that wants it back waits up to the
    5 ms switch interval): that is where the slowest posts lost their time. So on SQLite the
    post's transaction (about a millisecond) runs on the event loop itself, as the tracking
    hits do (routes_tracking), and so does writing a confirmation into the local outbox after
    the answer is sent. A PostgreSQL database gets a few threads of its own, and an SMTP
    conversation (network waits) one mail thread, posts in order.
    """

    def __init__(self, *, sqlite: bool, smtp: bool) -> None:
        self.db = None if sqlite else ThreadPoolExecutor(4, thread_name_prefix="signup-db")
        self.mail = ThreadPoolExecutor(1, thread_name_prefix="signup-mail") if smtp else None

    async def run(self, fn: Callable[[], signup.SignupResult]) -> signup.SignupResult:
        if self.db is None:
            return fn()
        return await asyncio.get_running_loop().run_in_executor(self.db, fn)

    async def send(self, settings: Settings, message, subscriber_id: int) -> None:
        if self.mail is None:
            _send_later(settings, message, subscriber_id)
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.mail, _send_later, settings, message, subscriber_id)

    def close(self) -> None:
        """At shutdown: the emails of posts already answered are still sent."""
        for pool in (self.db, self.mail):
            if pool is not None:
                pool.shutdown(wait=True)


class ThanksPage:
    """The one answer to an accepted post, rendered once per language: only the address
    differs between visitors, so it is put into the cached page (escaped as the template
    would) instead of running the template for every post."""

    MARK = "dispatchsignupaddressmark"

    def __init__(self) -> None:
        self._parts: dict[str, list[bytes]] = {}

    def response(self, request: Request, locale: str, email: str) -> Response:
        parts = self._parts.get(locale)
        if parts is None:
            page = render_page(
                request,
                "public/message.html",
                {
                    "title_key": "signup_done_title",
                    "message": signup_done_text(locale, self.MARK),
                },
                locale=locale,
            )
            parts = self._parts[locale] = bytes(page.body).split(self.MARK.encode())
        body = str(escape(email.strip()[:254])).encode().join(parts)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})


THANKS = ThanksPage()


def signup_form(fields: Mapping[str, str], lists: list[str], ip: str) -> signup.SignupForm:
    return signup.SignupForm(
        email=fields.get("email") or "",
        name=fields.get("name") or "",
        lists=lists,
        locale=fields.get("locale") or "",
        honeypot=fields.get("website") or "",
        challenge=fields.get("challenge") or "",
        pow=fields.get("pow") or "",
        client_ip=ip,
    )


async def answer_signup(
    request: Request, form: signup.SignupForm
) -> tuple[Response, Callable[[], Awaitable[None]] | None]:
    """Apply the post; the page to answer and, when granted, the confirmation email to send
    once the answer is out (the visitor never waits for it)."""
    settings: Settings = request.app.state.settings
    found = guards(request)
    runner: SignupRunner = request.app.state.signup_runner
    session_factory = request.app.state.session_factory

    def work() -> signup.SignupResult:
        with session_factory() as session, session.begin():
            return signup.process(session, settings, found.limiter, found.ledger, form)

    domain = signup.uncached_mx_domain(settings, form) if runner.db is None else None
    if domain:  # the post's work runs on the event loop: DNS is asked from a thread first
        await run_in_threadpool(maildomain.accepts_mail, settings, domain)
    result = await runner.run(work)
    locale = normalise_locale(form.locale) or request_locale(request)
    if result.outcome == "accepted":
        job = None
        if result.confirmation is not None:
            job = functools.partial(runner.send, settings, result.email, result.confirmation[0])
        return THANKS.response(request, locale, form.email), job
    values = {"email": form.email, "name": form.name, "lists": form.lists, "locale": form.locale}
    page = _form_page(
        request,
        values=values,
        error=result.message(locale),
        error_field=result.field_name,
        status_code=429 if result.outcome == "limited" else 400,
    )
    return page, None


@router.post("/subscribe")
async def subscribe_post(request: Request) -> Response:
    """A post the shortcut below did not take (a multipart form, an app built without it)."""
    data = await request.form()
    fields = {k: v for k, v in data.items() if isinstance(v, str)}
    lists = [str(v) for v in data.getlist("lists")]
    form = signup_form(fields, lists, client_ip(request))
    response, job = await answer_signup(request, form)
    if job is not None:
        response.background = BackgroundTask(job)
    return response


FORM_TYPE = b"application/x-www-form-urlencoded"
MAX_FIELDS = 1000  # as Starlette's form parser


class SubscribeShortcut:
    """ASGI middleware: a url-encoded POST /subscribe (what the form and the pasted snippet
    send) is answered here, past the framework's router, request and form parser, which cost
    about as much as the signup rules themselves; anything else goes on to the app.

    Installed inside RequestGuard (body caps) and SecurityHeaders, like TrackingShortcut.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope.get("path") == "/subscribe"
            and _content_type(scope).startswith(FORM_TYPE)
        ):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        try:
            pairs = parse_qsl(
                body.decode("latin-1"), keep_blank_values=True, max_num_fields=MAX_FIELDS
            )
        except ValueError:
            pairs = []  # too many fields: answered as an empty form
        fields = dict(pairs)  # the last value of a repeated field, as Starlette's form.get
        lists = [value for name, value in pairs if name == "lists"]
        request = Request(scope)
        form = signup_form(fields, lists, client_ip(request))
        response, job = await answer_signup(request, form)
        await response(scope, receive, send)
        if job is not None:
            await job()


def _content_type(scope: dict[str, Any]) -> bytes:
    for name, value in scope.get("headers") or ():
        if name == b"content-type":
            return value.lower()
    return b""


async def _read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # http.disconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


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
