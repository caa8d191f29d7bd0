"""Hostile: the deployment in docker-compose.yml exposes nothing without a password.

Flower shows every task's arguments (addresses, campaign ids) and can revoke tasks and shut
workers down; Mailpit's inbox shows every message. Both listen on this host only, and Flower
refuses to start without FLOWER_BASIC_AUTH, then asks every request for it. The Flower test
runs the compose file's own command against a real Flower and Redis.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES = COMPOSE["services"]
PUBLIC = {"web"}  # the one service the world must reach (tracking, unsubscribe, archive)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _flower_script(port: int) -> str:
    """The compose command's shell script, as compose hands it to sh ($$ is a literal $)."""
    command = SERVICES["flower"]["command"]
    assert command[:2] == ["sh", "-c"]
    return command[2].replace("$$", "$").replace("--port=5555", f"--port={port}")


def test_only_the_web_app_is_published_beyond_this_host():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            if name in PUBLIC:
                continue
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to every host"


def test_flower_takes_its_password_from_the_environment_only():
    flower = SERVICES["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"] == "${FLOWER_BASIC_AUTH:-}"
    assert "--basic-auth=" in " ".join(flower["command"])


@pytest.mark.parametrize("value", [None, "", "admin", ":", "admin:", ":secret"])
def test_flower_refuses_to_start_without_basic_auth(value):
    env = {k: v for k, v in os.environ.items() if k != "FLOWER_BASIC_AUTH"}
    if value is not None:
        env["FLOWER_BASIC_AUTH"] = value
    done = subprocess.run(
        ["sh", "-c", _flower_script(_free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "set FLOWER_BASIC_AUTH=user:password" in done.stderr


@pytest.mark.slow
def test_flower_asks_every_request_for_the_password(redis_url, tmp_path):
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "FLOWER_BASIC_AUTH": "ops:correct-horse",
        "DISPATCH_BROKER_URL": redis_url,
        "DISPATCH_DATA_DIR": str(tmp_path / "var"),
    }
    proc = subprocess.Popen(
        [
            "sh",
            "-c",
            _flower_script(port).replace("flower --port", "flower --address=127.0.0.1 --port"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                anonymous = httpx.get(url + "/api/workers", timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "flower exited"
                assert time.monotonic() < deadline, "flower did not start"
                time.sleep(0.3)
        assert anonymous.status_code == 401
        wrong = base64.b64encode(b"ops:wrong").decode()
        for path in ("/", "/api/workers", "/api/tasks", "/tasks"):
            assert httpx.get(url + path, timeout=5).status_code == 401
            denied = httpx.get(url + path, headers={"Authorization": f"Basic {wrong}"}, timeout=5)
            assert denied.status_code == 401
        good = base64.b64encode(b"ops:correct-horse").decode()
        allowed = httpx.get(url + "/", headers={"Authorization": f"Basic {good}"}, timeout=10)
        assert allowed.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)
