"""Every admin page in headless Chromium (Debian's /usr/bin/chromium via Playwright), logged
in as an administrator, at 375 px, in Chinese: no page is wider than the screen, and no
status word of dispatch.vocabulary shows in English. The crawl follows the links it finds
from the overview, so a page added later (issue editor, approvals, reports) is checked as
soon as a link leads to it. /api/docs renders with every request to another host refused.

The app runs under uvicorn in a thread on this test's SQLite database, seeded with the sample
issue, a list, subscribers, a sent campaign, a suppression and audit rows.
"""

from __future__ import annotations

import enum
import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from sqlalchemy.orm import Session

from dispatch import audit, vocabulary
from dispatch.subscribers import service
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.app import create_app
from test_web_browser import CHROMIUM, CHROMIUM_ARGS
from test_web_support import PASSWORD, make_user, seed

pytestmark = [pytest.mark.browser, pytest.mark.slow]
pytest_plugins = ["test_web_support"]

WIDTH = 375
MAX_PAGES = 80
SKIP = re.compile(r"/(logout|export|data\.json)|\.csv$|\.json$|/preview/|/lang/")
# tokens that are addresses, paths, ids or code, not words a reader reads as text
NOT_WORDS = re.compile(r"\S*[@/.:_#=\-]\S*")


STATUS_LIKE = {"EventKind", "BounceKind", "AuditAction"}
# an email as rendered (the click map): bilingual by design, so only its width is checked
EMAIL_PAGES = re.compile(r"/clickmap$")
# the page's text without data shown as code (an audit row's JSON, a raw bounce)
READABLE_TEXT = """() => {
  const body = document.body.cloneNode(true);
  body.querySelectorAll('code, pre, script, style, textarea').forEach(e => e.remove());
  return body.textContent;
}"""


def _status_words() -> set[str]:
    """Every word the vocabulary stores and a page may show as a status or kind."""
    words: set[str] = set()
    for name in dir(vocabulary):
        value = getattr(vocabulary, name)
        if not (isinstance(value, type) and issubclass(value, enum.StrEnum)):
            continue
        if name.endswith(("Status", "Reason", "Outcome")) or name in STATUS_LIKE:
            words |= {m.value for m in value if "_" not in m.value}
    return words


def english_status_words(text: str, words: set[str]) -> dict[str, str]:
    """Each raw status word in `text`, with the words around it (to find it on the page)."""
    plain = " ".join(NOT_WORDS.sub(" ", text).split())
    return {
        m.group(0): plain[max(0, m.start() - 30) : m.end() + 30]
        for m in re.finditer(r"[a-z]+", plain)
        if m.group(0) in words
    }


def test_english_status_words_are_found_in_a_chinese_text():
    """The check itself can fail: a raw word is found, an address or a path is not."""
    words = _status_words()
    assert set(english_status_words("投递任务 #3 running 发送中", words)) == {"running"}
    assert english_status_words("bounced@example.org /admin/draft 已完成", words) == {}


@pytest.fixture
def served(settings, engine) -> Iterator[str]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(settings.replace(public_base_url=base))
    from dispatch.delivery.queue import ListQueue

    app.state.batch_queue = ListQueue()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def _seed_everything(engine, settings) -> None:
    seeded = seed(engine, settings, n_subscribers=4)
    make_user(engine, "admin")
    with Session(engine) as session, session.begin():
        service.suppress(session, email="gone@example.org")
        audit.record(
            session,
            audit.CLI,
            AuditAction.PAUSE,
            AuditTarget.CAMPAIGN,
            1,
            before={"status": "running"},
            after={"status": "paused"},
        )
    assert seeded.campaign_id


def _blocking_outside(page, base: str) -> list[str]:
    refused: list[str] = []
    host = urlsplit(base).netloc

    def route(r) -> None:
        if urlsplit(r.request.url).netloc in (host, "") or r.request.url.startswith(
            ("data:", "blob:")
        ):
            r.continue_()
        else:
            refused.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return refused


def _pattern(path: str) -> str:
    return re.sub(r"\d+", "N", path)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_admin_page_reads_at_375px_in_chinese(served, engine, settings, artifacts_dir):
    from playwright.sync_api import sync_playwright

    _seed_everything(engine, settings)
    words = _status_words()
    wide: dict[str, int] = {}
    english: dict[str, dict[str, str]] = {}
    visited: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = browser.new_context(
                viewport={"width": WIDTH, "height": 800}, locale="zh-CN", is_mobile=True
            )
            context.add_cookies([{"name": "dispatch_lang", "value": "zh-CN", "url": served}])
            page = context.new_page()
            _blocking_outside(page, served)
            page.goto(f"{served}/admin/login")
            page.fill("input[name=email]", "admin@example.org")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{served}/admin/")
            queue, seen = ["/admin/"], {_pattern("/admin/")}
            while queue and len(visited) < MAX_PAGES:
                path = queue.pop(0)
                answer = page.goto(served + path, wait_until="load")
                assert answer is not None and answer.status < 400, (path, answer and answer.status)
                visited.append(path)
                width = page.evaluate("document.scrollingElement.scrollWidth")
                if width > WIDTH:
                    wide[path] = width
                    name = re.sub(r"\W+", "-", path).strip("-") or "home"
                    page.screenshot(path=str(artifacts_dir / f"crawl-{name}.png"), full_page=True)
                found = english_status_words(page.evaluate(READABLE_TEXT), words)
                if found and not EMAIL_PAGES.search(path):
                    english[path] = found
                for href in page.eval_on_selector_all(
                    "a[href]", "els => els.map(a => a.getAttribute('href'))"
                ):
                    link = urlsplit(href).path if href.startswith(("/", served)) else ""
                    if link.startswith("/admin") and not SKIP.search(link):
                        if _pattern(link) not in seen:
                            seen.add(_pattern(link))
                            queue.append(link)
        finally:
            browser.close()
    assert len(visited) >= 10, visited
    assert not wide, f"pages wider than {WIDTH}px: {wide}"
    assert not english, f"English status words in the Chinese pages: {english}"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_api_docs_render_with_every_outside_host_blocked(served, artifacts_dir):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            refused = _blocking_outside(page, served)
            page.goto(f"{served}/api/docs", wait_until="load")
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            title = page.inner_text(".swagger-ui .info .title")
            operations = page.locator(".opblock").count()
            page.screenshot(path=str(artifacts_dir / "api-docs.png"))
        finally:
            browser.close()
    assert "dispatch" in title
    assert operations > 20  # every endpoint of the admin API is listed
    assert refused == [], f"the docs page tried to reach other hosts: {refused}"
