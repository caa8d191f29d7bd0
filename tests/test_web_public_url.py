"""`dispatch web --port P` on the embedded default: links and preview images point at port P
(issue 9, item 5); a configured public URL on another local port is warned about at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest
from sqlalchemy.orm import Session

from dispatch.config import load_settings
from dispatch.outbox import free_port
from dispatch.paths import SAMPLE_ISSUE_DIR


def _environment(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env.update({"DISPATCH_DATA_DIR": str(tmp_path / "var"), **extra})
    return env


def _serve(tmp_path, port: int, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", "from dispatch.cli import main; main()", "web", "--port", str(port)],
        env=_environment(tmp_path, **extra),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_up(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("dispatch web did not come up")


def _stop(proc: subprocess.Popen) -> str:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
    return err


@pytest.mark.slow
def test_an_unconfigured_public_url_follows_the_served_port(tmp_path):
    from dispatch.content.store import publish_source
    from dispatch.db import get_engine
    from dispatch.web.users import create_api_token, create_user

    settings = load_settings(env=_environment(tmp_path))
    with Session(get_engine(settings), expire_on_commit=False) as session, session.begin():
        issue_id = publish_source(session, SAMPLE_ISSUE_DIR, settings=settings).id
        user = create_user(session, "ed@example.org", "a long password", "editor", "en")
        token = create_api_token(session, user, "test")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = _serve(tmp_path, port)
    try:
        _wait_up(base, proc)
        preview = httpx.get(
            f"{base}/api/issues/{issue_id}/preview/email",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        assert preview.status_code == 200, preview.text
        html = preview.json()["html"]
        assert f"{base}/issues/2023-02/" in html and "127.0.0.1:8000" not in html
        image = html.split(f'src="{base}/issues/2023-02/')[1].split('"')[0]
        assert httpx.get(f"{base}/issues/2023-02/{image}", timeout=10).status_code == 200
    finally:
        err = _stop(proc)
    assert f"links and preview images use {base}" in err
    assert "DISPATCH_WEB_PORT" in err  # workers are told how to follow


@pytest.mark.slow
def test_a_configured_public_url_on_another_local_port_is_warned_about(tmp_path):
    port = free_port()
    proc = _serve(tmp_path, port, DISPATCH_PUBLIC_BASE_URL="http://127.0.0.1:8000")
    try:
        _wait_up(f"http://127.0.0.1:{port}", proc)
    finally:
        err = _stop(proc)
    assert "setting public_base_url (http://127.0.0.1:8000) differs from where this server" in err
    assert "与本服务监听的地址" in err
