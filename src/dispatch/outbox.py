"""The local outbox: an SMTP sink on loopback that writes each received message as an .eml file.

Why a real SMTP server rather than a "file channel": the embedded default (`dispatch demo`, a
machine with no relay) exercises exactly the code that talks to a real relay, and a person can
open the .eml files in a mail client to see what subscribers would get.

Files are named `<n>-<recipient>.eml` (one per recipient of a transaction). `n` comes from a
counter file in the folder, read and advanced under an exclusive lock, so several sinks or
processes sharing one folder (the CLI's sink and a worker's) never hand out the same number.
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import re
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller

from dispatch.config import Settings

logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO

_UNSAFE = re.compile(r"[^A-Za-z0-9@._+-]+")
_NUMBERED = re.compile(r"^(\d+)-")
COUNTER_FILE = ".next-number"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the sink binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def safe_file_part(address: str) -> str:
    """An address as a harmless file-name fragment (no path separators, bounded length)."""
    return _UNSAFE.sub("_", address)[:100] or "unknown"


class _OutboxHandler:
    def __init__(self, folder: Path | None):
        self.folder = folder  # None: count and discard (benchmarks)
        self.count = 0
        self._lock = threading.Lock()

    def _take_number(self) -> int:
        """The folder's next file number, shared by every process writing there."""
        assert self.folder is not None
        fd = os.open(self.folder / COUNTER_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            raw = os.read(fd, 32).strip()
            if raw.isdigit():
                number = int(raw)
            else:  # first use of this folder (or files from before the counter): after them
                taken = [
                    int(m.group(1))
                    for p in self.folder.glob("*.eml")
                    if (m := _NUMBERED.match(p.name))
                ]
                number = max(taken, default=0) + 1
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, str(number + 1).encode())
            return number
        finally:
            os.close(fd)  # releases the lock

    def _write(self, rcpt: str, data: bytes) -> Path | None:
        if self.folder is None:
            with self._lock:
                self.count += 1
            return None
        with self._lock:
            while True:
                path = self.folder / f"{self._take_number():06d}-{safe_file_part(rcpt)}.eml"
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                break
            self.count += 1
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            self._write(rcpt, data)
        return "250 2.0.0 OK: written to the outbox"


class LocalOutbox:
    """`with LocalOutbox(folder) as sink: sink.url` → smtp://127.0.0.1:PORT writing .eml files.

    folder None: a sink that only counts (the benchmark's fallback when smtp-sink is missing).
    """

    def __init__(self, folder: str | Path | None, host: str = "127.0.0.1", port: int | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.host = host
        self.port = port
        self._controller: Controller | None = None
        self._handler: _OutboxHandler | None = None

    @property
    def url(self) -> str:
        if self._controller is None:
            raise RuntimeError("the outbox is not running")
        return f"smtp://{self.host}:{self.port}"

    @property
    def count(self) -> int:
        """Messages written since this sink started (one per recipient)."""
        return self._handler.count if self._handler else 0

    def files(self) -> list[Path]:
        return sorted(self.folder.glob("*.eml")) if self.folder else []

    def start(self) -> LocalOutbox:
        if self._controller is not None:
            return self
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._handler = _OutboxHandler(self.folder)
        self.port = self.port or free_port(self.host)
        controller = Controller(self._handler, hostname=self.host, port=self.port, ready_timeout=10)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> LocalOutbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


_shared: dict[Path, LocalOutbox] = {}
_shared_lock = threading.Lock()


def outbox_dir(settings: Settings) -> Path:
    return (settings.data_dir / "outbox").resolve()


def shared_outbox(settings: Settings) -> LocalOutbox:
    """The process's outbox for settings.data_dir/outbox, started on first use (embedded
    default)."""
    folder = outbox_dir(settings)
    with _shared_lock:
        sink = _shared.get(folder)
        if sink is None:
            sink = _shared[folder] = LocalOutbox(folder).start()
            atexit.register(sink.stop)
        return sink
