"""Hostile: what an outside attacker can make the web app do.

- Bodies: every route has a cap, enforced before the body is read (a declared length over it
  is answered 413 at once; a streamed one is cut at the cap); unsafe /api/ and /admin/
  requests authenticate before their body is read or judged (401, never a 422 that
  describes the API to anyone). The socket tests run the app under real uvicorn: a server
  that read the body first would wait for bytes the client never sends.
- Headers: every response carries a Content-Security-Policy without inline script,
  frame-ancestors / X-Frame-Options, nosniff and a Referrer-Policy.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from dispatch.web.routes_index import iter_routes
from test_web_support import bearer, login, seed

pytest_plugins = ["test_web_support"]

TEMPLATES = Path(__file__).resolve().parents[1] / "templates" / "web"


# -- a real server for the socket-level tests -----------------------------------------------


@pytest.fixture
def server(web_app) -> Iterator[tuple[str, int]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        web_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield "127.0.0.1", port
    srv.should_exit = True
    thread.join(timeout=10)


def _raw(server: tuple[str, int], head: str, body: bytes = b"", timeout: float = 5.0) -> str:
    """Send a request head (and maybe part of a body), return the status line and headers."""
    with socket.create_connection(server, timeout=timeout) as conn:
        conn.sendall(head.encode() + b"\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)  # a server waiting for the body times out here
            if not chunk:
                break
            data += chunk
    return data.decode("latin-1")


def _head(
    method: str, path: str, length: int, extra: str = "", ctype: str = "application/json"
) -> str:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: testserver\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n{extra}"
    )


@pytest.mark.parametrize(
    ("method", "path", "length"),
    [
        ("POST", "/api/subscribers/import", 50 * 1024 * 1024),  # over the upload cap
        ("POST", "/api/issues", 50 * 1024 * 1024),
        ("POST", "/api/lists", 1024 * 1024),  # a JSON route: kilobytes
        ("PATCH", "/api/subscribers/1", 1024 * 1024),
        ("POST", "/admin/login", 1024 * 1024),  # public form
        ("POST", "/u/sometoken", 1024 * 1024),  # one-click unsubscribe
        ("POST", "/wechat/callback", 1024 * 1024),  # the callback
        ("POST", "/webhooks/bounce", 8 * 1024 * 1024),
        ("POST", "/no/such/route", 1024 * 1024),
    ],
)
def test_declared_oversized_body_is_refused_before_reading(server, method, path, length):
    reply = _raw(server, _head(method, path, length), b"x" * 100)
    assert reply.startswith("HTTP/1.1 413"), reply[:200]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/lists"),
        ("POST", "/api/subscribers"),
        ("PATCH", "/api/subscribers/1"),
        ("POST", "/api/subscribers/import"),
        ("POST", "/api/issues"),
        ("POST", "/api/campaigns"),
        ("POST", "/admin/lists"),
        ("POST", "/admin/issues"),
    ],
)
def test_anonymous_write_is_refused_before_its_body_arrives(server, method, path):
    """The client declares a body and never sends it: only a server that authenticates
    first can answer (401) instead of waiting."""
    reply = _raw(server, _head(method, path, 4000))
    assert reply.startswith("HTTP/1.1 401"), reply[:200]


def test_streamed_body_is_cut_at_the_cap(client, tokens):
    sent = {"bytes": 0}

    def chunks():
        for _ in range(200):  # 200 x 8 KiB = 1.6 MiB, over the 64 KiB JSON cap
            sent["bytes"] += 8192
            yield b" " * 8192

    response = client.post(
        "/api/lists",
        content=chunks(),
        headers={**bearer(tokens["admin"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_upload_routes_take_their_own_documented_limit(client, tokens, settings):
    h = bearer(tokens["admin"])
    list_id = client.post("/api/lists", json={"slug": "news", "name": "News"}, headers=h).json()[
        "id"
    ]
    rows = "".join(f"person{i:05d}@example.org,Person {i}\n" for i in range(4000))  # ~130 KB
    csv_bytes = ("email,name\n" + rows).encode()
    assert len(csv_bytes) > settings.request_max_bytes
    ok = client.post(
        "/api/subscribers/import",
        headers=h,
        data={"list_id": str(list_id)},
        files={"file": ("people.csv", csv_bytes, "text/csv")},
    )
    assert ok.status_code == 200, ok.text
    small = settings.replace(upload_max_bytes=100_000)
    from dispatch.web.request_guard import limit_for

    assert limit_for(small, "POST", "/api/subscribers/import") == 100_000
    assert limit_for(small, "POST", "/api/lists") == settings.request_max_bytes


def test_no_write_route_describes_itself_to_an_anonymous_client(client, web_app):
    """Every unsafe /api/ and /admin/ route: malformed JSON from nobody gets 401, never 422."""
    checked = 0
    for route in iter_routes(web_app):
        if not route.path.startswith(("/api/", "/admin/")) or route.path == "/admin/login":
            continue
        for method in route.methods & {"POST", "PUT", "PATCH", "DELETE"}:
            path = re.sub(r"\{[^}]+\}", "1", route.path)
            response = client.request(
                method, path, content=b'{"broken": ', headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 401, (method, path, response.status_code)
            checked += 1
    assert checked >= 15


# -- security headers -----------------------------------------------------------------------


def _assert_security_headers(response, path: str) -> None:
    h = response.headers
    csp = h.get("content-security-policy", "")
    assert csp, path
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    script = directives.get("script-src") or directives.get("default-src")
    assert script is not None and "'unsafe-inline'" not in script, (path, csp)
    assert "*" not in script and not any(s.startswith("http") for s in script), (path, csp)
    if "sandbox" not in directives:  # the sandboxed email preview is framed by the admin
        assert directives.get("frame-ancestors") in (["'self'"], ["'none'"]), (path, csp)
    assert h.get("x-frame-options") in ("SAMEORIGIN", "DENY"), path
    assert h.get("x-content-type-options") == "nosniff", path
    assert h.get("referrer-policy") in (
        "no-referrer",
        "strict-origin-when-cross-origin",
        "same-origin",
    ), path


def test_every_kind_of_response_carries_the_security_headers(client, engine, settings, tokens):
    data = seed(engine, settings)
    anonymous = [
        "/admin/login",
        "/admin/",  # 401 page
        "/issues/",
        f"/issues/{data.issue_slug}",
        "/u/not-a-token",
        "/t/o/not-a-token.gif",
        "/t/c/not-a-token",
        "/confirm/not-a-token",
        "/api/lists",  # 401 JSON
        "/no/such/page",
        "/healthz",
        "/static/campaign-progress.js",
        "/openapi.json",
    ]
    for path in anonymous:
        _assert_security_headers(client.get(path, follow_redirects=False), path)
    h = bearer(tokens["admin"])
    for path in ["/api/lists", f"/api/issues/{data.issue_id}/preview/email.html"]:
        _assert_security_headers(client.get(path, headers=h), path)
    login(client, "admin@example.org")
    for path in ["/admin/", "/admin/campaigns", f"/admin/campaigns/{data.campaign_id}"]:
        response = client.get(path)
        assert response.status_code == 200, path
        _assert_security_headers(response, path)
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", response.text), path


def test_token_pages_send_no_referrer(client):
    for path in ("/u/not-a-token", "/t/c/not-a-token", "/confirm/x"):
        assert client.get(path, follow_redirects=False).headers["referrer-policy"] == "no-referrer"


def test_no_template_has_an_inline_script():
    offenders = [
        str(p.relative_to(TEMPLATES))
        for p in TEMPLATES.rglob("*.html")
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", p.read_text(encoding="utf-8"))
        or re.search(r"\son[a-z]+\s*=", p.read_text(encoding="utf-8"))  # onclick= etc.
    ]
    assert offenders == []


def test_every_upload_route_gets_the_upload_limit(web_app, settings):
    """A route that takes a file (or a raw CSV body at …/import) is an upload; every other
    route keeps the small limit."""
    from dispatch.web.request_guard import limit_for
    from dispatch.web.routes_index import _flat_routes

    uploads = 0
    for route in _flat_routes(web_app):
        dependant = getattr(route, "dependant", None)
        if dependant is None:
            continue
        takes_file = any(
            "UploadFile" in str(getattr(p.field_info, "annotation", ""))
            for p in dependant.body_params
        )
        for method in route.methods - {"HEAD", "GET"}:
            if takes_file or route.path.endswith("/import"):
                assert limit_for(settings, method, route.path) == settings.upload_max_bytes, (
                    route.path
                )
                uploads += 1
    assert uploads >= 5


@pytest.mark.browser
def test_api_docs_work_under_the_csp_without_a_cdn(server):
    """Chromium loads /api/docs with the strict CSP: Swagger UI renders the operations, no
    request leaves this host and the console shows no CSP violation."""
    from playwright import sync_api

    from test_render_browser import CHROMIUM, CHROMIUM_ARGS

    base = f"http://{server[0]}:{server[1]}"
    foreign: list[str] = []
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on(
                "request",
                lambda r: None if r.url.startswith(base) else foreign.append(r.url),
            )
            page.on(
                "console",
                lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(base + "/api/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() >= 10
        finally:
            browser.close()
    assert foreign == [] and problems == []
