"""Who is asking: session cookies for the admin pages, bearer tokens for the API, and roles.

Roles: `editor` (issues, previews, test sends, submitting for review), `reviewer` (also
approving versions and starting campaigns) and `admin` (everything).
Every protected route depends on `require_role(...)`; the guard answers 401 to anonymous
requests and 403 to the wrong role, and checks CSRF for cookie-authenticated unsafe methods.
The guard carries its role as an attribute so tests can find each route's required role.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.models.web import User
from dispatch.web.csrf import check_csrf, new_csrf_token
from dispatch.web.users import user_for_token

SESSION_COOKIE = "dispatch_session"
SESSION_MAX_AGE = 14 * 24 * 3600
ROLE_RANK = {"editor": 1, "reviewer": 2, "admin": 3}  # vocabulary.UserRole, in order


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    role: str
    locale: str
    via: str  # "session" | "token"
    csrf: str | None = None  # the session's CSRF token (None for bearer tokens)

    def has_role(self, role: str) -> bool:
        return ROLE_RANK.get(self.role, 0) >= ROLE_RANK[role]


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.signing_key(), salt="dispatch.web.session")


def cookie_secure(settings: Settings) -> bool:
    return settings.public_base_url.startswith("https://")


def start_session(response: Response, settings: Settings, user: User) -> str:
    """Set the signed session cookie for `user`; returns the session's CSRF token."""
    csrf = new_csrf_token()
    # the hash tail ties the session to the password: changing it logs every session out
    payload = {"u": user.id, "c": csrf, "p": user.password_hash[-12:]}
    response.set_cookie(
        SESSION_COOKIE,
        _serializer(settings).dumps(payload),
        max_age=SESSION_MAX_AGE,
        httponly=True,
        secure=cookie_secure(settings),
        samesite="lax",
        path="/",
    )
    return csrf


def end_session(response: Response, settings: Settings) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path="/", secure=cookie_secure(settings), httponly=True, samesite="lax"
    )


def _session_payload(request: Request, settings: Settings) -> dict[str, Any] | None:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        return None
    try:
        payload = _serializer(settings).loads(raw, max_age=SESSION_MAX_AGE)
    except BadSignature:
        return None
    return payload if isinstance(payload, dict) else None


def resolve_principal(request: Request, session: Session) -> Principal | None:
    """The authenticated caller of this request, from a bearer token or the session cookie."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    settings: Settings = request.app.state.settings
    principal: Principal | None = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        from dispatch.web import throttle

        client = throttle.client_address(request)
        verdict = throttle.check(session, settings, kind="token", client=client)
        if not verdict.allowed:  # refused before the token is even looked up
            raise HTTPException(
                status_code=429,
                detail=f"too many failed API tokens: try again in {verdict.retry_after} seconds",
                headers={"Retry-After": str(verdict.retry_after)},
            )
        user = user_for_token(session, auth[7:].strip())
        if user is None:
            throttle.record(session, kind="token", client=client, ok=False)
        session.commit()
        if user is not None:
            principal = Principal(user.id, user.email, user.role, user.locale, "token")
    else:
        payload = _session_payload(request, settings)
        if payload and isinstance(payload.get("u"), int):
            user = session.get(User, payload["u"])
            if (
                user is not None
                and user.disabled_at is None
                and user.password_hash[-12:] == payload.get("p")
            ):
                principal = Principal(
                    user.id, user.email, user.role, user.locale, "session", payload.get("c")
                )
    request.state.principal = principal
    return principal


def optional_principal(request: Request) -> Principal | None:
    with request.app.state.session_factory() as session:
        return resolve_principal(request, session)


def require_role(role: str) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """A dependency admitting users of `role` or higher: 401 anonymous, 403 wrong role or CSRF."""
    if role not in ROLE_RANK:
        raise ValueError(f"unknown role {role!r}")

    async def guard(request: Request) -> Principal:
        principal = optional_principal(request)
        if principal is None:
            raise HTTPException(
                status_code=401,
                detail="authentication required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not principal.has_role(role):
            raise HTTPException(status_code=403, detail=f"role {role} required")
        if principal.via == "session":
            await check_csrf(request, principal.csrf)
        return principal

    guard.role = role  # type: ignore[attr-defined]
    return guard


require_editor = require_role("editor")
require_reviewer = require_role("reviewer")
require_admin = require_role("admin")
EditorUser = Annotated[Principal, Depends(require_editor)]
ReviewerUser = Annotated[Principal, Depends(require_reviewer)]
AdminUser = Annotated[Principal, Depends(require_admin)]
