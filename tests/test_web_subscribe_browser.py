"""A person subscribes in real Chromium at 375 px (Debian's /usr/bin/chromium via Playwright):
the form's proof-of-work runs in the page, one confirmation arrives in the SMTP sink, a mail
scanner's GETs of the link confirm nothing, the page's button does; the preference centre
then reads on the phone too. `dispatch web` runs as a real process on a fresh PostgreSQL
database with Redis counters and a dnsmasq answering the MX check. Screenshots go to the
artifacts dir."""

from __future__ import annotations

import email
import email.policy
import os
import re
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from dispatch.db import make_engine, upgrade
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.outbox import LocalOutbox
from dispatch.subscribers import service
from dispatch.tokens import make_prefs_token
from dns_server import DnsmasqServer, Zone
from test_web_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    DISPATCH,
    PG_ADMIN_URL,
    REDIS_URL,
    ROOT,
    _free_port,
    _wait_http,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]
SECRET = "browser-subscribe-secret"


@pytest.fixture
def site(tmp_path: Path):
    admin = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dispatch_subscribe_e2e_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG_ADMIN_URL.rpartition('/')[0]}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    with Session(engine) as session, session.begin():
        news = service.create_list(session, "news", "工作简报", optin="double")
        news.public = True
    zone = Zone(mx={"example.org": [("mx.example.org", 10)]})
    zone.a["mx.example.org"] = "127.0.0.1"
    dns = DnsmasqServer(zone, tmp_path / "dns").start()
    outbox = LocalOutbox(tmp_path / "outbox").start()
    port = _free_port()
    prefix = f"dispatch-subscribe-e2e:{uuid.uuid4().hex[:8]}:"
    values = {
        "DATA_DIR": str(tmp_path / "var"),
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "REDIS_KEY_PREFIX": prefix,
        "SMTP_URL": outbox.url,
        "SECRET_KEY": SECRET,
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "DNS_NAMESERVERS": dns.nameservers,
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
        yield {"base": f"http://127.0.0.1:{port}", "engine": engine, "outbox": outbox, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        outbox.stop()
        dns.stop()
        client = redis_lib.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{prefix}*", count=1000):
            client.delete(key)
        client.close()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{page.url} is {width}px wide at 375px"


def test_a_person_subscribes_on_a_phone_and_only_the_button_confirms(site, artifacts_dir):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, engine, shots = site["base"], site["engine"], artifacts_dir / "subscribe"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(
                viewport={"width": 375, "height": 760}, locale="zh-CN", is_mobile=True
            )
            page.set_default_timeout(30_000)
            page.goto(f"{base}/issues/")
            page.click("#nav-subscribe")  # the archive links to the form
            page.wait_for_selector("#subscribe-form")
            _no_sideways_scroll(page)
            page.screenshot(path=str(shots / "01-form-375.png"), full_page=True)
            page.fill("#email", "reader@example.org")
            page.fill("#name", "李读者")
            console: list[str] = []
            page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
            page.click("#subscribe-button")  # pow.js solves the hashcash, then posts
            # the answer page, or the form again with its error: either way say what came back
            try:
                page.wait_for_selector("#message, #form-error", timeout=60_000)
            except PlaywrightTimeout:
                log = site["log"].read_text(errors="replace")[-3000:]
                pytest.fail(f"no answer at {page.url}: {page.content()[:2000]}\n{console}\n{log}")
            if page.query_selector("#form-error") is not None:
                log = site["log"].read_text(errors="replace")[-3000:]
                pytest.fail(f"form error: {page.inner_text('#form-error')!r}\n{console}\n{log}")
            assert "reader@example.org" in page.inner_text("#message")
            _no_sideways_scroll(page)
            page.screenshot(path=str(shots / "02-check-inbox-375.png"), full_page=True)

            received = site["outbox"].files()
            for _ in range(50):  # the confirmation goes out right after the response
                if received:
                    break
                page.wait_for_timeout(100)
                received = site["outbox"].files()
            assert len(received) == 1, received
            message = email.message_from_bytes(
                received[0].read_bytes(), policy=email.policy.default
            )
            assert message["To"].addresses[0].addr_spec == "reader@example.org"
            link = re.search(r"http://\S+/confirm/\S+", message.get_body(("plain",)).get_content())
            for _ in range(3):  # what a corporate mail scanner does
                assert httpx.get(link.group(0)).status_code == 200
            with Session(engine) as session:
                person = session.scalar(select(Subscriber))
                assert session.scalar(select(Subscription.status)) == "unconfirmed"

            page.goto(link.group(0))
            _no_sideways_scroll(page)
            page.screenshot(path=str(shots / "03-confirm-page-375.png"), full_page=True)
            page.click("#confirm-button")
            page.wait_for_selector("#message")
            assert "订阅已生效" in page.inner_text("#message")
            page.screenshot(path=str(shots / "04-confirmed-375.png"), full_page=True)
            with Session(engine) as session:
                assert session.scalar(select(Subscription.status)) == "confirmed"

            from dispatch.config import load_settings

            token = make_prefs_token(load_settings(env={}).replace(secret_key=SECRET), person.id)
            page.goto(f"{base}/p/{token}")
            page.wait_for_selector("#prefs-form")
            _no_sideways_scroll(page)
            page.screenshot(path=str(shots / "05-preferences-375.png"), full_page=True)
            assert len(site["outbox"].files()) == 1  # still one message in all
        except Exception:
            page.screenshot(path=str(shots / "failure.png"), full_page=True)
            raise
        finally:
            browser.close()
