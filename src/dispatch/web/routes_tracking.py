"""Open pixel and click redirect: the hot path, one small transaction per hit.

    GET /t/o/{token}.gif   → 1×1 GIF, always (a bad token records nothing)
    GET /t/c/{token}       → 302 to the URL at the token's link index in the campaign issue's
                             link table; bad signature, unknown delivery or index outside the
                             table → 404 with no Location. The query string is never read.

Why a bare ASGI app in front of FastAPI (`TrackingShortcut`, a pure ASGI middleware) instead
of routes: at 1,000 hits/s the framework's middleware stack, route matching and request
objects cost ~150 µs per hit, a third of the total; this handler parses the path, checks the
token and runs one short transaction. Why the database
work inline (no thread pool): each hit is about a millisecond, handing it to a thread costs
more than it saves, and on SQLite the writes serialise anyway. More throughput comes from more
uvicorn workers.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from dispatch.config import Settings
from dispatch.log import get_logger
from dispatch.tokens import TokenError, verify_click_token, verify_open_token
from dispatch.web.hits import HitRecorder
from dispatch.web.linktable import LinkTableCache

log = get_logger("dispatch.web.tracking")
MAX_AGENT = 512  # characters of a user agent kept (a 10 KB agent is cut, not stored)

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = [
    (b"cache-control", b"no-store, no-cache, must-revalidate, private"),
    (b"pragma", b"no-cache"),
]
NOT_FOUND = b'{"detail":"unknown link"}'

Send = Callable[[dict[str, Any]], Awaitable[None]]


class TrackingApp:
    """ASGI app for the /t mount: `/o/{token}.gif` and `/c/{token}`."""

    def __init__(self, settings: Settings, hits: HitRecorder, link_tables: LinkTableCache):
        self.settings = settings
        self.hits = hits
        self.link_tables = link_tables

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope.get("path", "")
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        if scope["method"] not in ("GET", "HEAD"):
            await _respond(
                send, 405, b'{"detail":"method not allowed"}', [(b"allow", b"GET, HEAD")]
            )
        elif path.startswith("/o/") and path.endswith(".gif") and "/" not in path[3:]:
            self.open(path[3:-4], hit_source(scope))
            await _respond(send, 200, PIXEL_GIF, [(b"content-type", b"image/gif"), *NO_STORE])
        elif path.startswith("/c/") and "/" not in path[3:]:
            url = self.click(path[3:], hit_source(scope))
            if url is None:
                await _respond(send, 404, NOT_FOUND, [(b"content-type", b"application/json")])
            else:
                await _respond(send, 302, b"", [(b"location", url.encode()), *NO_STORE])
        else:
            await _respond(
                send, 404, b'{"detail":"Not Found"}', [(b"content-type", b"application/json")]
            )

    def open(self, token: str, source: dict[str, str] | None = None) -> None:
        try:
            delivery_id = verify_open_token(self.settings, token)
        except TokenError:
            return
        hits = self.hits
        try:
            with hits.transaction() as cursor:
                ref = hits.ref(cursor, delivery_id)
                if ref is not None:
                    hits.record_open(cursor, ref, source)
        except hits.db_errors:  # an open is worth less than a broken image: log, never show
            log.error("tracking.open_failed", exc_info=True, delivery_id=delivery_id)

    def click(self, token: str, source: dict[str, str] | None = None) -> str | None:
        """The URL to redirect to (after recording the click), or None for 404."""
        try:
            delivery_id, link_index = verify_click_token(self.settings, token)
        except TokenError:
            return None
        hits = self.hits
        with hits.transaction() as cursor:
            ref = hits.ref(cursor, delivery_id)
            if ref is None:
                return None
            links = self.link_tables.get(hits.engine, ref.campaign_id)
            if links is None or not 0 <= link_index < len(links):
                return None
            url = links[link_index]
            if not url.startswith(("https://", "http://")):
                return None
            hits.record_click(cursor, ref, link_index, url, source)
        return url


def hit_source(scope: dict[str, Any]) -> dict[str, str]:
    """Who made the hit, kept with the first open or click for the reports (user agent cut to
    MAX_AGENT characters, peer address): dispatch.reports tells people from Apple's Mail
    Privacy Protection and link scanners by them, and reads the mail client and device."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            found["ua"] = value[:MAX_AGENT].decode("latin-1")
            break
    client = scope.get("client")
    if client:
        found["ip"] = str(client[0])[:64]
    return found


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class TrackingShortcut:
    """ASGI middleware: /t/… goes straight to TrackingApp, everything else to the app."""

    def __init__(self, app: Any, tracking: TrackingApp):
        self.app = app
        self.tracking = tracking

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("/t/"):
            await self.tracking({**scope, "path": scope["path"][2:]}, receive, send)
        else:
            await self.app(scope, receive, send)
