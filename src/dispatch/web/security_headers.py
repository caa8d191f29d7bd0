"""Security headers on every response: admin pages, public pages, API, tracking.

Why each: a Content-Security-Policy without inline script (the only script is a file under
/static/) makes a stored-XSS slip inert; frame-ancestors and X-Frame-Options stop other sites
framing the admin (clickjacking; same-origin framing stays for the email preview);
nosniff stops a browser running an uploaded file as something else; Referrer-Policy keeps
signed tokens in /u/, /t/ and /confirm/ URLs from leaking to the sites a reader goes on to
(the public archive sends only the origin); HSTS once the public URL is https.

A response that sets its own Content-Security-Policy (the sandboxed email preview) keeps it.
A pure ASGI middleware: it only adds headers to `http.response.start`, so the tracking hot
path pays a dictionary lookup, not a framework round trip.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from dispatch.config import Settings

Scope = dict[str, Any]

ARCHIVE_PREFIX = "/issues"


def content_security_policy(settings: Settings) -> str:
    """The pages' policy: scripts and styles from this origin only (styles may be inline),
    images also from the public base URL (the archive's images) and data: URIs."""
    parts = urlsplit(settings.public_base_url)
    public_origin = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""
    img = " ".join(x for x in ("'self'", "data:", public_origin) if x)
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            f"img-src {img}",
            "connect-src 'self'",
            "font-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


class SecurityHeaders:
    """Adds the security headers to every HTTP response of the wrapped app."""

    def __init__(self, app: Any, settings: Settings):
        self.app = app
        common = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"SAMEORIGIN"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
        ]
        if settings.public_base_url.startswith("https://"):
            common.append((b"strict-transport-security", b"max-age=31536000"))
        self.csp = content_security_policy(settings).encode()
        self.common = common
        self.strict = [*common, (b"referrer-policy", b"no-referrer")]
        self.archive = [*common, (b"referrer-policy", b"strict-origin-when-cross-origin")]

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.archive if scope.get("path", "").startswith(ARCHIVE_PREFIX) else self.strict

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend((n, v) for n, v in extra if n not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", self.csp))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
