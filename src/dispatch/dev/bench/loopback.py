"""The loopback load tools shared by the web benches (`dispatch bench web`, `tracking`,
`admin`): a uvicorn server in its own process, its CPU from /proc, and minimal HTTP/1.1
clients. Why a module of its own: the bench modules import each other's helpers, and each also
imports the CLI (which imports every bench), so helpers living in one bench made importing
that bench alone a circular import.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

SECRET = "bench-web-secret-key"
SIGNUP_BITS = 8
BASE_URL = "https://bench.invalid"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(
    database_url: str, data_dir: Path, port: int, workers: int, redis_url: str = ""
) -> subprocess.Popen:
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": database_url,
        "DISPATCH_DATA_DIR": str(data_dir),
        "DISPATCH_SECRET_KEY": SECRET,
        "DISPATCH_PUBLIC_BASE_URL": BASE_URL,
        "DISPATCH_LOG_LEVEL": "WARNING",
        # the subscribe phase: every post comes from loopback, the client pre-solves the work
        "DISPATCH_SIGNUP_IP_PER_MINUTE": "0",
        "DISPATCH_SIGNUP_IP_PER_DAY": "0",
        "DISPATCH_SIGNUP_POW_BITS": str(SIGNUP_BITS),
        "DISPATCH_SIGNUP_CHECK_MX": "0",
        "DISPATCH_REDIS_URL": redis_url,
        "DISPATCH_REDIS_KEY_PREFIX": f"dispatch-bench-web:{port}:" if redis_url else "",
        "DISPATCH_SMTP_URL": "",
    }
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / "uvicorn.log"
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "dispatch.web.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("ab"), start_new_session=True
    )
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {log_path.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("uvicorn did not answer within 60 s")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its direct children (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    total = 0.0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _plan(
    delivery_ids: list[int], n_links: int, requests: int, seed: int = 7
) -> list[tuple[str, int, int]]:
    """(kind, delivery id, link index) per request: opens and clicks, repeats included."""
    rng = random.Random(seed)
    plan = []
    for i in range(requests):
        delivery = rng.choice(delivery_ids)
        if i % 2 == 0:
            plan.append(("open", delivery, -1))
        else:
            plan.append(("click", delivery, rng.randrange(n_links)))
    return plan


async def _read_response(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 response off a keep-alive connection; its status (body dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _raw_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> int:
    """One GET on a keep-alive HTTP/1.1 connection; returns the status (body read and dropped)."""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return await _read_response(reader)


async def _drive_raw(
    port: int, paths: list[tuple[str, str]], concurrency: int, max_seconds: float
) -> dict:
    """The tracking load: GETs of open pixels (200) and click redirects (302)."""

    def expected(kind: str) -> int:
        return 200 if kind == "open" else 302

    return await drive_keepalive(port, paths, concurrency, max_seconds, _raw_get, expected)


async def drive_keepalive(
    port: int,
    items: Sequence[tuple[str, Any]],
    concurrency: int,
    max_seconds: float,
    send: Callable[[asyncio.StreamReader, asyncio.StreamWriter, Any], Awaitable[int]],
    expected: Callable[[str], int],
) -> dict:
    """The load generator: asyncio streams speaking minimal HTTP/1.1 with keep-alive, each
    item (kind, payload) sent by `send` and counted done when its status is `expected(kind)`.
    Why not httpx: it costs about 1 ms of CPU per request here, more than the server spends,
    so on two cores it would measure the client."""
    latencies: list[float] = []
    errors: list[str] = []
    done: list[int] = []
    started = time.perf_counter()
    deadline = started + max_seconds
    cursor = iter(enumerate(items))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index, (kind, payload) in cursor:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    status = await send(reader, writer, payload)
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors.append(f"{kind}: {type(exc).__name__}")
                    latencies.append(time.perf_counter() - t0)
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - t0)
                if status == expected(kind):
                    done.append(index)
                else:
                    errors.append(f"{kind}: HTTP {status}")
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "latencies": latencies,
        "errors": errors,
        "done": done,
        "elapsed": time.perf_counter() - started,
    }


async def _drive(
    port: int, paths: list[tuple[str, str]], concurrency: int, max_seconds: float
) -> dict:
    """The same load through httpx.AsyncClient (one client per worker), for comparison."""
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    done: list[int] = []
    # one client (one keep-alive connection) per worker: httpx's shared pool costs O(connections)
    # per request, which would measure the client instead of the server
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    started = time.perf_counter()
    deadline = started + max_seconds
    cursor = iter(enumerate(paths))

    async def worker() -> None:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=10, follow_redirects=False
        ) as client:
            for index, (kind, path) in cursor:
                if time.perf_counter() > deadline:
                    return
                t0 = time.perf_counter()
                try:
                    response = await client.get(path)
                    ok = response.status_code == (200 if kind == "open" else 302)
                except httpx.HTTPError as exc:
                    ok, response = False, None
                    errors.append(f"{kind}: {type(exc).__name__}")
                latencies.append(time.perf_counter() - t0)
                if ok:
                    done.append(index)
                elif response is not None:
                    errors.append(f"{kind}: HTTP {response.status_code}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {"latencies": latencies, "errors": errors, "done": done, "elapsed": elapsed}


def _stats(result: dict) -> dict:
    lat = sorted(result["latencies"])

    def p(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else 0.0

    return {
        "requests": len(lat),
        "errors": len(result["errors"]),
        "error_samples": sorted(set(result["errors"]))[:5],
        "seconds": round(result["elapsed"], 2),
        "requests_per_second": round(len(lat) / result["elapsed"], 1) if result["elapsed"] else 0.0,
        "p50_ms": round(p(0.50), 2),
        "p99_ms": round(p(0.99), 2),
    }
