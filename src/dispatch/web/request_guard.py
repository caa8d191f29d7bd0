"""Bounded, authenticated-first requests: the cheap refusals happen before a body is read.

Why a middleware: FastAPI reads (and, for malformed JSON, judges) a request's body before any
route dependency runs, so an anonymous client could make the server hold a large body, or
get a 422 describing the API, before the guard said 401. Here, before the app sees anything:

1. every route has a body cap (`limit_for`): uploads `upload_max_bytes`, bounce webhooks
   `webhook_max_bytes`, everything else (forms, JSON, the WeChat callback, one-click
   unsubscribe) `request_max_bytes`. A declared Content-Length over the cap is answered 413
   without reading; a chunked body is counted as it streams and stopped at the cap (413).
2. an unsafe request (POST, PUT, PATCH, DELETE) to /api/ or /admin/ (log-in aside) must carry
   a valid API token or session first: otherwise 401 at once (the log-in page for /admin/).
   The principal found is left on the request, so the route's guard does not look it up again.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException
from fastapi.responses import JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dispatch.config import Settings

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
UPLOAD_ROUTES = frozenset(
    {
        ("POST", "/api/issues"),
        ("POST", "/api/subscribers/import"),
        ("POST", "/admin/issues"),
        ("POST", "/admin/subscribers/import"),
        ("POST", "/admin/settings"),  # the logo upload (branding.LOGO_MAX_BYTES checks it)
    }
)
WEBHOOK_PREFIX = "/webhooks/"
PROTECTED_PREFIXES = ("/api/", "/admin/")
OPEN_PATHS = frozenset({"/admin/login"})


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(
            status_code=413,
            detail=(
                f"request body too large (limit {limit:,} bytes) / "
                f"请求内容过大（上限 {limit:,} 字节）"
            ),
        )


# POSTs that carry a whole issue source or an image: imports, the editor's check and save,
# and its image upload (dispatch.web.api_editorial)
BIG_POSTS = ("/import", "/source", "/source/check", "/media")


def limit_for(settings: Settings, method: str, path: str) -> int:
    """The most bytes of body this route accepts (an upload: the named routes, and any POST
    to a path ending in one of BIG_POSTS, so a new import route gets the upload limit too)."""
    route = path.rstrip("/") or "/"
    if (method, route) in UPLOAD_ROUTES or (method == "POST" and route.endswith(BIG_POSTS)):
        return settings.upload_max_bytes
    if path.startswith(WEBHOOK_PREFIX):
        return settings.webhook_max_bytes
    return settings.request_max_bytes


def needs_principal(method: str, path: str) -> bool:
    return method in UNSAFE and path.startswith(PROTECTED_PREFIXES) and path not in OPEN_PATHS


class RequestGuard:
    """Body caps per route and authentication before the body, for every HTTP request."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope.get("path", "")
        limit = limit_for(self.settings, method, path)
        declared = None
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = value
                break
        if declared is not None:
            if not declared.isdigit():
                await PlainTextResponse("bad Content-Length", status_code=400)(scope, receive, send)
                return
            if int(declared) > limit:
                await self._too_large(scope, receive, send, limit)
                return
        if needs_principal(method, path):
            request = Request(scope, receive)
            from dispatch.web.auth import optional_principal

            try:
                principal = await run_in_threadpool(optional_principal, request)
            except HTTPException as exc:  # e.g. 429: a throttled client's token
                response = JSONResponse(
                    {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
                )
                await response(scope, receive, send)
                return
            if principal is None:
                await self._unauthenticated(request, scope, receive, send)
                return

        received = 0
        started = False

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await self._too_large(scope, receive, send, limit)

    async def _too_large(self, scope: dict[str, Any], receive: Any, send: Any, limit: int) -> None:
        detail = BodyTooLarge(limit).detail
        response = (
            JSONResponse({"detail": detail}, status_code=413)
            if scope.get("path", "").startswith("/api/")
            else PlainTextResponse(detail, status_code=413)
        )
        response.headers["connection"] = "close"  # the unread body is not worth draining
        await response(scope, receive, send)

    async def _unauthenticated(
        self, request: Request, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        if scope.get("path", "").startswith("/admin/"):
            from dispatch.web.pages_auth import login_page

            response = login_page(request, status_code=401, message_key="login_required")
        else:
            response = JSONResponse(
                {"detail": "authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        await response(scope, receive, send)
