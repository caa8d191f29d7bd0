"""Log in, log out and the language switch of the admin pages."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.config import Settings
from dispatch.i18n import normalise_locale
from dispatch.models.web import User
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web import throttle
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import EditorUser, cookie_secure, end_session, start_session
from dispatch.web.csrf import (
    LOGIN_CSRF_COOKIE,
    new_csrf_token,
    read_login_token,
    sign_login_token,
    tokens_match,
)
from dispatch.web.templating import LANG_COOKIE, render_page
from dispatch.web.users import authenticate

router = APIRouter(include_in_schema=False)


def safe_next(value: str | None, default: str = "/admin/") -> str:
    """Only a local path may be a redirect target (never //host or a scheme)."""
    if (
        value
        and value.startswith("/")
        and not value.startswith(("//", "/\\"))
        and "\n" not in value
        and "\r" not in value
    ):
        return value
    return default


def login_page(
    request: Request,
    *,
    status_code: int = 200,
    message_key: str | None = None,
    email: str = "",
    message_args: dict[str, Any] | None = None,
) -> Response:
    """The login form with a fresh double-submit CSRF token (also the body of every 401 page)."""
    settings: Settings = request.app.state.settings
    token = new_csrf_token()
    next_path = request.query_params.get("next") or (
        request.url.path
        if request.method == "GET" and request.url.path != "/admin/login"
        else "/admin/"
    )
    response = render_page(
        request,
        "admin/login.html",
        {
            "login_csrf": token,
            "message_key": message_key,
            "message_args": message_args or {},
            "email": email,
            "next": safe_next(next_path),
        },
        status_code=status_code,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        sign_login_token(settings.signing_key(), token),
        httponly=True,
        secure=cookie_secure(settings),
        samesite="lax",
        path="/admin/login",
        max_age=3600,
    )
    return response


@router.get("/admin/login")
def login_form(request: Request) -> Response:
    return login_page(request)


@router.post("/admin/login")
async def login_submit(
    request: Request,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/admin/",
) -> Response:
    settings: Settings = request.app.state.settings
    expected = read_login_token(settings.signing_key(), request.cookies.get(LOGIN_CSRF_COOKIE))
    if not tokens_match(expected, csrf_token):
        return login_page(request, status_code=403, message_key="csrf_failed", email=email)

    client = throttle.client_address(request)
    account = throttle.account_key(email)

    def check() -> tuple[object, throttle.Verdict]:
        """Throttled clients are refused before the password is even looked at."""
        with request.app.state.session_factory() as session, session.begin():
            verdict = throttle.check(
                session, settings, kind="password", client=client, account=account
            )
            if not verdict.allowed:
                return None, verdict
            user = authenticate(session, email, password)
            throttle.record(
                session, kind="password", client=client, account=account, ok=user is not None
            )
            _audit_login(session, user, account, client)
            return user, verdict

    user, verdict = await run_in_threadpool(check)
    if not verdict.allowed:
        response = login_page(
            request,
            status_code=429,
            message_key="login_throttled",
            message_args={"seconds": verdict.retry_after},
            email=email,
        )
        response.headers["Retry-After"] = str(verdict.retry_after)
        return response
    if user is None:
        await asyncio.sleep(settings.login_failure_pause_seconds)  # every failure is slow
        return login_page(request, status_code=401, message_key="login_failed", email=email)
    response = RedirectResponse(safe_next(next), status_code=303)
    start_session(response, settings, user)  # type: ignore[arg-type]
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/admin/login")
    return response


def _audit_login(session: Session, user: User | None, account: str, client: str) -> None:
    """A log-in or a refused one, in the audit log (the throttled ones are not even tried)."""
    if user is None:
        actor = audit.Actor.anonymous(account, client)
        audit.record(session, actor, AuditAction.LOG_IN_FAILED, AuditTarget.USER, actor.name)
    else:
        actor = audit.Actor.user(user, client)
        audit.record(session, actor, AuditAction.LOG_IN, AuditTarget.USER, user.email)


@router.post("/admin/logout")
def logout(request: Request, principal: EditorUser) -> Response:
    with request.app.state.session_factory() as session, session.begin():
        actor = request_actor(request, principal)
        audit.record(session, actor, AuditAction.LOG_OUT, AuditTarget.USER, principal.email)
    response = RedirectResponse("/admin/login", status_code=303)
    end_session(response, request.app.state.settings)
    return response


@router.get("/lang/{code}")
def switch_language(code: str, request: Request, next: str = "/admin/") -> Response:
    locale = normalise_locale(code)
    response = RedirectResponse(safe_next(next), status_code=303)
    if locale:
        response.set_cookie(
            LANG_COOKIE,
            locale,
            max_age=365 * 24 * 3600,
            samesite="lax",
            path="/",
            secure=cookie_secure(request.app.state.settings),
        )
    return response
