"""A real DNS server for tests: Debian's dnsmasq on a free loopback port, serving given records.

dnsmasq answers authoritatively from its own configuration (txt-record, mx-host, host-record,
ptr-record) and, with --no-resolv and --no-hosts, asks nobody else: every name it was not
given is NXDOMAIN, which is what a missing record looks like on the Internet. Long TXT values
(a 2048-bit DKIM key is about 400 characters) are published as several strings of at most
255 characters, as a zone file would.

`silent_dns_server()` is the other half: a UDP socket that reads questions and never answers,
which is what a DNS server that times out looks like to a resolver.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port for dnsmasq")


@dataclass
class Zone:
    """Records to serve. Names without a trailing dot; TXT values as the text they publish."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # name -> (host, pref)
    a: dict[str, str] = field(default_factory=dict)  # host -> IPv4 address
    ptr: dict[str, str] = field(default_factory=dict)  # IPv4 address -> host

    def add_txt(self, name: str, value: str) -> Zone:
        self.txt.setdefault(name, []).append(value)
        return self

    def config_lines(self) -> list[str]:
        lines = []
        for name, values in self.txt.items():
            for value in values:
                chunks = [value[i : i + 255] for i in range(0, len(value), 255)] or [""]
                quoted = ",".join(
                    '"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks
                )
                lines.append(f"txt-record={name},{quoted}")
        for name, hosts in self.mx.items():
            for host, pref in hosts:
                lines.append(f"mx-host={name},{host},{pref}")
        for host, address in self.a.items():
            lines.append(f"host-record={host},{address}")
        for address, host in self.ptr.items():
            reverse = ".".join(reversed(address.split("."))) + ".in-addr.arpa"
            lines.append(f"ptr-record={reverse},{host}")
        return lines


class DnsmasqServer:
    """dnsmasq serving `zone` on 127.0.0.1:<port> until stopped."""

    def __init__(self, zone: Zone, folder: Path):
        self.zone, self.folder = zone, folder
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def nameservers(self) -> str:
        """The value for the dns_nameservers setting."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> DnsmasqServer:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "dnsmasq.conf"
        # local=/#/: every name is answered from this file (NXDOMAIN / NODATA), none forwarded
        lines = ["local=/#/", *self.zone.config_lines()]
        conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        log = self.folder / "dnsmasq.log"
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    binary,
                    "--keep-in-foreground",
                    "--no-resolv",
                    "--no-hosts",
                    "--no-poll",
                    "--bind-interfaces",
                    "--listen-address=127.0.0.1",
                    "--interface=lo",
                    f"--port={self.port}",
                    "--pid-file=",
                    "--user=root",
                    "--cache-size=0",
                    f"--conf-file={conf}",
                    "--log-facility=" + str(log),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            if self._wait_ready():
                return self
            self.stop()
        raise RuntimeError(f"dnsmasq did not start: {log.read_text() if log.exists() else ''}")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> DnsmasqServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def silent_dns_server() -> Iterator[str]:
    """A UDP 'DNS server' that never answers; yields the dns_nameservers value."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield f"127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()
