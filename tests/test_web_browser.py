"""End to end in headless Chromium (Debian's /usr/bin/chromium via Playwright): log in, create
a list, import a CSV (per-line report), upload and preview the sample issue, send it to the
list through a real `celery worker` (Redis broker, fresh PostgreSQL database) into the local
SMTP sink (dispatch.outbox), watch the progress bar reach 100 %, then open a received email's
unsubscribe link and confirm. Screenshots go to the artifacts dir."""

from __future__ import annotations

import email
import email.policy
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import make_engine, upgrade
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.outbox import LocalOutbox
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.web.users import create_user

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
DISPATCH = [sys.executable, "-c", "from dispatch.cli import main; main()"]
PG_ADMIN_URL = os.environ.get("DISPATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("DISPATCH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ADMIN_EMAIL, ADMIN_PASSWORD = "chief@example.org", "a long admin password"
CSV = (
    "email,name,locale\n"
    "alice@example.org,Alice,en\n"
    "bob@example.org,鲍勃,zh-CN\n"
    "not-an-address,Broken,en\n"
    "carol@example.org,Carol,en\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer: {log.read_text()[-3000:]}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict]:
    """A fresh database, the web app under uvicorn, one celery worker and the SMTP sink."""
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dispatch_web_e2e_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    outbox = LocalOutbox(tmp_path / "outbox").start()
    port = _free_port()
    run = uuid.uuid4().hex[:8]
    values = {
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": url,
        "BROKER_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": f"dispatch-web-e2e:{run}:",
        "CELERY_QUEUE": f"dispatch-web-e2e-{run}",
        "SMTP_URL": outbox.url,
        "SECRET_KEY": "browser-test-secret",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "BATCH_SIZE": "2",
        "SWEEP_SECONDS": "1",
    }
    env = {**os.environ, **{f"DISPATCH_{k}": v for k, v in values.items()}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src"), env.get("PYTHONPATH", "")])
    procs: list[subprocess.Popen] = []
    try:
        with (
            Session(engine) as session,
            session.begin(),
        ):  # `dispatch users create` is tested in test_web_cli
            create_user(session, ADMIN_EMAIL, ADMIN_PASSWORD, "admin")
        web_log = tmp_path / "web.log"
        procs.append(
            subprocess.Popen(
                [*DISPATCH, "web", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=web_log.open("ab"),
                stderr=subprocess.STDOUT,
            )
        )
        worker_log = tmp_path / "worker.log"
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "worker",
                    "worker",
                    "--pool=solo",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                    "-Q",
                    values["CELERY_QUEUE"],
                ],
                env=env,
                cwd=ROOT,
                stdout=worker_log.open("ab"),
                stderr=subprocess.STDOUT,
            )
        )
        _wait_http(f"http://127.0.0.1:{port}/healthz", procs[0], web_log)
        yield {
            "base": f"http://127.0.0.1:{port}",
            "engine": engine,
            "outbox": outbox,
            "logs": (web_log, worker_log),
        }
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        outbox.stop()
        client = redis_lib.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{values['REDIS_KEY_PREFIX']}*", count=1000):
            client.delete(key)
        client.delete(values["CELERY_QUEUE"])
        client.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _html_part(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    return message.get_body(preferencelist=("html",)).get_content()


def _unsubscribe_url(eml: Path) -> str:
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    header = str(message["List-Unsubscribe"])
    return re.search(r"<(https?://[^>]+/u/[^>]+)>", header).group(1)


def test_admin_sends_the_sample_issue_and_a_reader_unsubscribes(stack, tmp_path, artifacts_dir):
    from playwright.sync_api import sync_playwright

    base, shots = stack["base"], artifacts_dir / "web"
    shots.mkdir(exist_ok=True)
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text(CSV, encoding="utf-8")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="zh-CN")
            page.set_default_timeout(30_000)
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.accept()))

            # log in
            page.goto(f"{base}/admin/")
            assert page.locator("input[name=password]").count() == 1  # 401 → the login form
            page.fill("input[name=email]", ADMIN_EMAIL)
            page.fill("input[name=password]", ADMIN_PASSWORD)
            page.screenshot(path=str(shots / "01-login.png"))
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/admin/")

            # a list, then a CSV import with its per-line report
            page.goto(f"{base}/admin/lists")
            page.fill("input[name=slug]", "test-readers")
            page.fill("input[name=name]", "测试读者")
            page.click("form[action='/admin/lists'] button[type=submit]")
            page.wait_for_selector("text=test-readers")
            page.goto(f"{base}/admin/subscribers")
            page.set_input_files("#import-form input[type=file]", str(csv_file))
            # the list is chosen explicitly (the form starts on "choose a list")
            page.select_option("#import-form select[name=list_id]", label="测试读者")
            page.click("#import-form button[type=submit]")
            page.wait_for_selector("#import-report")
            report = page.inner_text("#import-report")
            assert "invalid" in report or "无效" in report
            assert re.search(r"\b4\b", report)  # line 4 is the broken address
            page.screenshot(path=str(shots / "02-import-report.png"), full_page=True)

            # upload and preview the sample issue
            page.goto(f"{base}/admin/issues")
            files = [str(SAMPLE_ISSUE_DIR / "issue.md")] + sorted(
                str(p) for p in (SAMPLE_ISSUE_DIR / "images").iterdir()
            )
            page.set_input_files("input[name=files]", files)
            page.click("form[action='/admin/issues'] button[type=submit]")
            page.wait_for_selector("#preview-phone")
            page.frame_locator("#preview-desktop").locator("body").wait_for()
            page.wait_for_timeout(1500)
            page.screenshot(path=str(shots / "03-issue-preview.png"), full_page=True)
            assert page.frame_locator("#preview-phone").locator("text=工作简报").count() > 0

            # a campaign to the list, Send confirmed, progress to 100 %
            page.click("text=新建投递")
            page.check("input[name=list_ids]")
            page.click("#campaign-form button[type=submit]")
            page.wait_for_selector("#send-button")
            page.click("#send-button")
            assert (
                dialogs and "3" in dialogs[-1] and "测试读者" in dialogs[-1]
            )  # names the list and its size
            # a selector, not wait_for_function: the page's CSP forbids eval, which that uses
            page.wait_for_selector("#progress-text:text-is('100 %')", timeout=90_000)
            page.wait_for_selector(".badge.finished", timeout=30_000)
            page.wait_for_timeout(1000)
            page.reload()  # the server-rendered stats and recipients, not only the polled bar
            assert "100 %" in page.inner_text("#progress-text")
            assert page.locator("td .badge.sent").count() == 3
            page.screenshot(path=str(shots / "04-campaign-done.png"), full_page=True)

            # the reader's email arrived in the sink: reading it loads the open pixel, and a
            # tracked link redirects to the issue's URL; both show up in the campaign's stats
            received = {p.name: p for p in stack["outbox"].files()}
            assert len(received) == 3, received
            alice = next(p for name, p in received.items() if "alice" in name)
            html = _html_part(alice)
            page.set_content(html, wait_until="load")
            page.screenshot(path=str(shots / "05-received-email.png"))
            tracked = re.findall(r'href="(http://127\.0\.0\.1:\d+/t/c/[^"]+)"', html)
            assert tracked
            click = page.request.get(tracked[0], max_redirects=0)
            assert click.status == 302 and click.headers["location"].startswith("https://")
            page.goto(page.url if page.url.startswith(base) else f"{base}/admin/campaigns/1")
            assert page.locator("svg rect").count() > 0  # the opens/clicks chart has bars
            page.screenshot(path=str(shots / "06-campaign-stats.png"), full_page=True)

            # its unsubscribe link works
            page.goto(_unsubscribe_url(alice))
            assert page.locator("html").get_attribute("lang") == "en"
            page.screenshot(path=str(shots / "07-unsubscribe.png"), full_page=True)
            page.click("#confirm-unsubscribe")
            page.wait_for_selector("#message")
            assert "unsubscribed" in page.inner_text("#message")
            page.screenshot(path=str(shots / "08-unsubscribed.png"), full_page=True)
            page.goto(f"{base}/lang/en?next=/admin/campaigns/1")  # the same page in English
            assert "Campaign #1" in page.inner_text("h1") and "Recipients" in page.content()
            page.screenshot(path=str(shots / "10-campaign-en.png"), full_page=True)
            page.goto(f"{base}/issues/2023-02#a4")
            page.wait_for_load_state("networkidle")
            images = page.eval_on_selector_all(
                "article img", "els => els.map(e => e.getAttribute('src'))"
            )
            assert images and all(page.request.get(base + src).status == 200 for src in images), (
                images
            )
            page.screenshot(path=str(shots / "09-archive.png"))
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
    with Session(stack["engine"]) as session:
        alice_id = session.scalar(
            select(Subscriber.id).where(Subscriber.email == "alice@example.org")
        )
        statuses = set(
            session.scalars(
                select(Subscription.status).where(Subscription.subscriber_id == alice_id)
            )
        )
        assert statuses == {"unsubscribed"}
        bob_id = session.scalar(select(Subscriber.id).where(Subscriber.email == "bob@example.org"))
        assert set(
            session.scalars(select(Subscription.status).where(Subscription.subscriber_id == bob_id))
        ) == {"confirmed"}
