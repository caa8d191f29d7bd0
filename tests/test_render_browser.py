"""Look at the email as a person would: headless Chromium at phone and desktop widths.

Screenshots go to test-artifacts/ for a person to look at. The test fails when the page
scrolls sideways on a 375px phone (a table, image or long URL wider than the screen).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dispatch.config import load_settings
from dispatch.content.parse import parse_issue
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.render.email import render_email
from dispatch.render.slots import RecipientSlots

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
BASE = "https://bulletin.example.org"
LONG_URL = BASE + "/t/c/" + "x" * 300  # a long unbroken URL must not widen the page


def test_email_reads_on_a_phone_and_a_desktop(artifacts_dir: Path, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (scripts/test installs it)"
    doc = parse_issue(SAMPLE_ISSUE_DIR)
    settings = load_settings(env={}).replace(secret_key="k", public_base_url=BASE)
    rendered = render_email(doc, settings, tracking=True)
    page_html, _ = rendered.personalize(
        RecipientSlots(
            name="读者",
            unsubscribe_url=LONG_URL,
            open_url=f"{BASE}/t/o/1.gif",
            click_urls=[f"{LONG_URL}{i}" for i in range(rendered.link_count)],
        )
    )
    email_file = artifacts_dir / "email.html"
    email_file.write_text(page_html, encoding="utf-8")
    images_prefix = f"{BASE}/issues/{doc.meta.slug}/"

    def serve(route) -> None:
        """Images from the issue folder; nothing else leaves the machine."""
        url = route.request.url
        if url.startswith("file:"):
            route.continue_()
        elif url.startswith(images_prefix):
            local = SAMPLE_ISSUE_DIR / urlsplit(url).path.split(f"/issues/{doc.meta.slug}/", 1)[1]
            route.fulfill(path=str(local)) if local.is_file() else route.fulfill(status=404)
        else:
            route.fulfill(status=204, body=b"")

    widths = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for width in (375, 600):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.route("**/*", serve)
                page.goto(email_file.as_uri(), wait_until="load")
                widths[width] = page.evaluate("document.scrollingElement.scrollWidth")
                loaded = page.evaluate(
                    "Array.from(document.images).filter(i => i.width > 1)"
                    ".every(i => i.complete && i.naturalWidth > 0)"
                )
                assert loaded, "an image of the issue did not load"
                page.screenshot(path=str(artifacts_dir / f"email-{width}.png"))
                page.screenshot(path=str(artifacts_dir / f"email-{width}-full.png"), full_page=True)
                page.close()
        finally:
            browser.close()
    assert widths[375] <= 375, f"the email scrolls sideways at 375px (scrollWidth {widths[375]})"
    assert widths[600] <= 600
    assert (artifacts_dir / "email-375.png").stat().st_size > 10_000


def test_wechat_articles_read_on_a_phone(artifacts_dir: Path):
    """The WeChat articles as a follower's phone shows them (images from their local files)."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from dispatch.render.wechat import render_wechat

    doc = parse_issue(SAMPLE_ISSUE_DIR)
    settings = load_settings(env={}).replace(secret_key="k", public_base_url=BASE)
    articles = render_wechat(doc, settings)
    page_file = artifacts_dir / "wechat.html"
    body = "".join(
        f'<h1 style="font-size:15px;color:#999;margin:24px 0 4px;">{i}. {a.title}</h1>{a.content}'
        for i, a in enumerate(articles, start=1)
    )
    page_file.write_text(
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f'<body style="margin:0;padding:0 12px;">{body}</body></html>',
        encoding="utf-8",
    )
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 375, "height": 900})
            page.route(
                "**/*",
                lambda r: (
                    r.continue_()
                    if r.request.url.startswith("file:")
                    else r.fulfill(status=204, body=b"")
                ),
            )
            page.goto(page_file.as_uri(), wait_until="load")
            width = page.evaluate("document.scrollingElement.scrollWidth")
            page.screenshot(path=str(artifacts_dir / "wechat-375.png"))
        finally:
            browser.close()
    assert width <= 375, f"WeChat content scrolls sideways at 375px (scrollWidth {width})"
