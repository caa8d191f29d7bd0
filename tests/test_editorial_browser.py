"""Issue 19 item 3 in headless Chromium: the editor page over a real `dispatch web`. Typing
changes the live email previews (375 px and 600 px) and the WeChat phone frame; a mistake is
marked at its line in the gutter and listed with its line; an image chosen in the file field
is uploaded and put into the text; the page reads at 375 px without sideways scrolling; saving
makes version 2. Screenshots go to the artifacts dir (editorial/)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.content.store import publish_source
from dispatch.db import make_engine, upgrade
from dispatch.models.editorial import IssueVersion
from dispatch.web.users import create_user
from test_web_browser import CHROMIUM, CHROMIUM_ARGS, DISPATCH, ROOT, _free_port, _wait_http

pytestmark = [pytest.mark.browser, pytest.mark.slow]
VALID = Path(__file__).parent / "fixtures" / "issues" / "valid"
EDITOR, PASSWORD = "writer@example.org", "a long editor password"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[dict]:
    """`dispatch web` on a fresh SQLite database holding the small valid issue, review on."""
    url = f"sqlite:///{tmp_path / 'var' / 'dispatch.db'}"
    engine = make_engine(url)
    upgrade(engine)
    folder = tmp_path / "issue"
    shutil.copytree(VALID, folder)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        create_user(session, EDITOR, PASSWORD, "editor", "en")
        issue_id = publish_source(session, folder).id
    port = _free_port()
    values = {
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": url,
        "SECRET_KEY": "editor-browser-test",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "REVIEW_REQUIRED": "true",
    }
    env = {**os.environ, **{f"DISPATCH_{k}": v for k, v in values.items()}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    log = tmp_path / "web.log"
    proc = subprocess.Popen(
        [*DISPATCH, "web", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/healthz", proc, log)
        yield {"base": f"http://127.0.0.1:{port}", "engine": engine, "issue_id": issue_id}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        engine.dispose()


def _line_of(text: str, start: str) -> int:
    return next(n for n, line in enumerate(text.split("\n"), 1) if line.startswith(start))


def test_the_editor_previews_live_and_marks_a_problem_at_its_line(served, tmp_path, artifacts_dir):
    from playwright.sync_api import expect, sync_playwright

    base, issue_id = served["base"], served["issue_id"]
    shots = artifacts_dir / "editorial"
    shots.mkdir(exist_ok=True)
    png = tmp_path / "蓝色方块.png"
    buffer = io.BytesIO()
    Image.new("RGB", (60, 40), (30, 60, 200)).save(buffer, "PNG")
    png.write_bytes(buffer.getvalue())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000}, locale="en")
            page.set_default_timeout(30_000)
            page.goto(f"{base}/admin/login")
            page.fill("#email", EDITOR)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/admin/")
            page.goto(f"{base}/admin/issues/{issue_id}/edit")
            status = page.locator("#check-status")
            expect(status).to_have_attribute("data-state", "ok")

            # a new title, typed: both email previews and the WeChat phone frame show it
            source = page.locator("#source")
            text = source.input_value()
            source.fill(text.replace("第一篇文章的标题", "浏览器里改的标题"))
            for frame in ("#live-email-375", "#live-email-600", "#live-wechat"):
                expect(page.frame_locator(frame).locator("body")).to_contain_text(
                    "浏览器里改的标题",
                    timeout=30_000,  # a full re-render on a busy CI machine
                )
            assert page.locator("#live-email-375").evaluate("e => e.offsetWidth") == 375
            assert page.locator("#live-email-600").evaluate("e => e.offsetWidth") == 600
            page.screenshot(path=str(shots / "editor-live-preview.png"), full_page=True)

            # a date that does not exist: marked at its line, listed with it, no preview
            line = _line_of(text, "date: 2023-02-06")
            source.fill(source.input_value().replace("date: 2023-02-06", "date: 2023-02-31"))
            expect(page.locator(f"#gutter span[data-line='{line}']")).to_have_class("bad")
            problem = page.locator(f"#problems li[data-line='{line}']")
            expect(problem).to_contain_text(f"line {line}")
            expect(status).to_have_attribute("data-state", "problems")
            assert page.locator("#gutter span.bad").count() == 1
            page.screenshot(path=str(shots / "editor-problem-at-line.png"), full_page=True)
            problem.locator("button").click()  # jumps to the line: the caret is on it
            caret_line = source.evaluate(
                "e => e.value.slice(0, e.selectionStart).split('\\n').length"
            )
            assert caret_line == line

            # fixed again, and an image from the file field goes into the text
            source.fill(source.input_value().replace("date: 2023-02-31", "date: 2023-02-06"))
            expect(status).to_have_attribute("data-state", "ok")
            expect(page.locator("#gutter span.bad")).to_have_count(0)
            source.evaluate("e => e.setSelectionRange(e.value.length, e.value.length)")
            page.set_input_files("#image-file", str(png))
            expect(source).to_have_value(__import__("re").compile(r"!\[蓝色方块\]\(images/"))
            expect(status).to_have_attribute("data-state", "ok")

            # 375 px wide: the page itself never scrolls sideways
            page.set_viewport_size({"width": 375, "height": 800})
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= 375, wide
            page.screenshot(path=str(shots / "editor-375.png"), full_page=True)

            page.click("#save")
            page.wait_for_url(f"{base}/admin/issues/{issue_id}/edit?msg=saved")
            expect(page.locator("#base-version")).to_contain_text("version 2")
        finally:
            browser.close()
    with Session(served["engine"]) as session:
        latest = session.scalars(select(IssueVersion).order_by(IssueVersion.number.desc())).first()
        assert latest.number == 2 and "浏览器里改的标题" in latest.source_text
        assert "![蓝色方块](images/" in latest.source_text
