"""CSRF protection for cookie-authenticated requests.

Why two forms: a logged-in user's CSRF token lives inside the signed session cookie (bound to
that session); before login (the login form) a double-submit cookie carries a signed random
token that the form must echo. Requests authenticated by an API bearer token carry no ambient
credential and need no CSRF token.
"""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request
from itsdangerous import BadSignature, URLSafeSerializer

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
LOGIN_CSRF_COOKIE = "dispatch_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def new_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def _login_serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt="dispatch.web.login-csrf")


def sign_login_token(key: str, token: str) -> str:
    return _login_serializer(key).dumps(token)


def read_login_token(key: str, cookie: str | None) -> str | None:
    if not cookie:
        return None
    try:
        value = _login_serializer(key).loads(cookie)
    except BadSignature:
        return None
    return value if isinstance(value, str) else None


async def submitted_token(request: Request) -> str | None:
    """The token a request presents: the X-CSRF-Token header, else the form field."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


def tokens_match(expected: str | None, presented: str | None) -> bool:
    return (
        bool(expected) and bool(presented) and secrets.compare_digest(str(expected), str(presented))
    )


async def check_csrf(request: Request, expected: str | None) -> None:
    """Refuse (403) an unsafe request whose CSRF token is missing or wrong."""
    if request.method not in UNSAFE_METHODS:
        return
    if not tokens_match(expected, await submitted_token(request)):
        raise HTTPException(status_code=403, detail="CSRF token missing or invalid")
