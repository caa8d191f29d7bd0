"""The report in headless Chromium: the print page prints to A4 in both languages with nothing
cut (no element wider than the printable width, charts whole), and the screen page reads on a
375 px phone without sideways scrolling. PDFs and screenshots go to the artifacts dir."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from test_reports_pages import _editor, _known

pytestmark = pytest.mark.browser
pytest_plugins = ["test_web_support"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
A4_PRINTABLE_PX = round((210 - 2 * 14) / 25.4 * 96)  # A4 width less the page's 14 mm margins

WIDEST = """() => {
  let widest = 0;
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.width > 0) widest = Math.max(widest, r.right);
  }
  return widest;
}"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_print_page_fits_a4_and_screen_page_fits_a_phone(client, engine, settings, artifacts_dir):
    sync_api = pytest.importorskip("playwright.sync_api")
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (scripts/test installs it)"
    data = _known(engine, settings)
    _editor(client, engine)
    base = f"/admin/campaigns/{data.campaign_id}/report"
    prints = {lang: client.get(f"{base}/print?lang={lang}").text for lang in ("zh-CN", "en")}
    screen = client.get(base).text
    assert "已送达" in prints["zh-CN"] and "Delivered" in prints["en"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for lang, html in prints.items():
                page = browser.new_page(viewport={"width": A4_PRINTABLE_PX, "height": 1100})
                page.emulate_media(media="print")
                page.set_content(html, wait_until="load")
                widest = page.evaluate(WIDEST)
                charts = page.evaluate(
                    "Array.from(document.querySelectorAll('svg'))"
                    ".map(s => s.getBoundingClientRect().right)"
                )
                pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
                (artifacts_dir / f"report-{lang}.pdf").write_bytes(pdf)
                page.close()
                assert widest <= A4_PRINTABLE_PX + 1, f"{lang}: something is {widest}px wide"
                assert charts and max(charts) <= A4_PRINTABLE_PX + 1
                pages = len(re.findall(rb"/Type\s*/Page[^s]", pdf))
                assert pdf.startswith(b"%PDF") and pages >= 1
            page = browser.new_page(viewport={"width": 375, "height": 800})
            page.set_content(screen, wait_until="load")
            width = page.evaluate("document.scrollingElement.scrollWidth")
            page.screenshot(path=str(artifacts_dir / "report-375.png"), full_page=True)
            page.close()
        finally:
            browser.close()
    assert width <= 375, f"the report page scrolls sideways at 375px ({width}px)"
