"""A real SMTP server on loopback whose replies a test scripts (aiosmtpd in a thread).

Use the `smtp_server` fixture (add `pytest_plugins = ["tests.smtp_server"]` or import the
fixture), or build one with `ScriptedSmtpServer(...)` for TLS / AUTH variants:

    smtp_server.script.rcpt["bad@example.net"] = "550 5.1.1 no such user"      # always
    smtp_server.script.rcpt["slow@example.net"] = ["451 4.3.0 try later"]       # once, then OK
    smtp_server.script.mail = ["550 5.7.1 sender rejected"]                     # next MAIL FROM
    smtp_server.script.drop_after = 3      # each connection: drop after 3 accepted messages
    smtp_server.script.max_drops = 1       # ...but only once in total
    smtp_server.script.data["x@example.net"] = "DROP_AFTER_DATA"  # take it, never answer
    smtp_server.script.data_delay = 2.0    # seconds before answering DATA

A reply "DROP" closes the connection at that point (the client sees it vanish). A provider MX
that throttles after N messages (issue 12):

    smtp_server.script.throttle_after = 50                    # after 50 accepted messages...
    smtp_server.script.throttle_reply = "421 HL:IFC ..."      # ...every RCPT gets this...
    smtp_server.script.throttle_seconds = 2.0                 # ...for 2 s, then OK again
    smtp_server.script.encoding = "gb18030"                   # replies sent in GB18030 bytes
 Every accepted
message is recorded (`smtp_server.messages`: envelope + raw bytes) and, when `record_dir` is
given, also written there as `<n>.eml` + `<n>.json`, so tests whose workers or server run in
other processes can count what arrived.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from dispatch.outbox import free_port

Reply = str | list[str]
ACCEPT = "250 2.0.0 OK"


@dataclass
class SmtpScript:
    """What the server answers; tests change it at any time (it is read per command)."""

    mail: Reply = field(default_factory=list)  # MAIL FROM replies (all senders)
    rcpt: dict[str, Reply] = field(default_factory=dict)  # by recipient address
    data: dict[str, Reply] = field(default_factory=dict)  # by (first) recipient address
    drop_after: int | None = None  # per connection: drop on the MAIL after N accepted messages
    max_drops: int | None = None  # total scripted drops (None: unlimited)
    data_delay: float = 0.0
    throttle_after: int | None = None  # after N accepted messages (in total) ...
    throttle_reply: str = "421 4.7.0 slow down"  # ... RCPT gets this ...
    throttle_seconds: float = 1.0  # ... for this long, then accepts again (and counts afresh)
    encoding: str = ""  # non-empty: replies go out as raw bytes in this encoding
    throttle_until: float = 0.0
    throttled_replies: int = 0

    @staticmethod
    def take(replies: dict[str, Reply], key: str) -> str | None:
        reply = replies.get(key)
        if isinstance(reply, list):
            if not reply:
                return None
            value = reply.pop(0)
            if not reply:
                replies.pop(key, None)
            return value
        return reply

    def take_mail(self) -> str | None:
        if isinstance(self.mail, list):
            return self.mail.pop(0) if self.mail else None
        return self.mail or None


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    connection: int
    received_at: float = 0.0  # time.monotonic() when accepted


class _ScriptedHandler:
    def __init__(self, owner: ScriptedSmtpServer):
        self.owner = owner

    def _drop(self, server: Any) -> None:
        self.owner.drops += 1
        server.transport.abort()

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list
    ) -> str:
        owner, script = self.owner, self.owner.script
        with owner.lock:
            if not hasattr(session, "connection_no"):
                owner.connections += 1
                session.connection_no = owner.connections
                session.accepted = 0
            reply = script.take_mail()
            if (
                reply is None
                and script.drop_after is not None
                and session.accepted >= script.drop_after
                and (script.max_drops is None or owner.drops < script.max_drops)
            ):
                reply = "DROP"
        if reply == "DROP":
            self._drop(server)
            return "421 4.4.2 dropped (scripted)"
        if reply and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return reply or "250 2.1.0 OK"

    def _encode(self, reply: str) -> Any:
        encoding = self.owner.script.encoding
        return reply.encode(encoding) if encoding else reply

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list
    ) -> Any:
        owner, script = self.owner, self.owner.script
        with owner.lock:
            reply = SmtpScript.take(script.rcpt, address)
            now = time.monotonic()
            if reply is None and script.throttle_after is not None:
                if now < script.throttle_until:
                    reply = script.throttle_reply
                elif owner.accepted_since_throttle >= script.throttle_after:
                    script.throttle_until = now + script.throttle_seconds
                    owner.accepted_since_throttle = 0
                    reply = script.throttle_reply
                if reply is not None:
                    script.throttled_replies += 1
                    owner.throttle_log.append((now, address))
        if reply is not None and reply.startswith("421"):
            await server.push(self._encode(reply))
            self._drop(server)
            return "421 closing"
        if reply == "DROP":
            self._drop(server)
            return "421 4.4.2 dropped (scripted)"
        if reply and not reply.startswith("2"):
            return self._encode(reply)
        envelope.rcpt_tos.append(address)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        owner = self.owner
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        with owner.lock:
            reply = SmtpScript.take(owner.script.data, first)
            delay = owner.script.data_delay
        if delay:
            await asyncio.sleep(delay)
        if reply == "DROP":
            self._drop(server)
            return "421 4.4.2 dropped (scripted)"
        if reply and not reply.startswith("2") and reply != "DROP_AFTER_DATA":
            return reply
        owner.record(
            ReceivedMessage(
                mail_from=envelope.mail_from,
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=envelope.original_content or b"",
                connection=getattr(session, "connection_no", 0),
                received_at=time.monotonic(),
            )
        )
        session.accepted = getattr(session, "accepted", 0) + 1
        with owner.lock:
            owner.accepted_since_throttle += 1
        if reply == "DROP_AFTER_DATA":
            self._drop(server)
            return "421 4.4.2 dropped after DATA (scripted)"
        return reply or ACCEPT


def make_self_signed_cert(folder: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A throwaway certificate + key for `host` (PEM files), valid for a day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


class ScriptedSmtpServer:
    """The server: `start()`, `url`, `script`, `messages`, `stop()`.

    starttls_cert: (cert, key) to offer STARTTLS (and require it); implicit_tls: serve smtps://;
    credentials: {user: password} to require AUTH (after TLS).
    """

    def __init__(
        self,
        *,
        record_dir: Path | None = None,
        starttls_cert: tuple[Path, Path] | None = None,
        implicit_tls: bool = False,
        credentials: dict[str, str] | None = None,
    ):
        self.script = SmtpScript()
        self.messages: list[ReceivedMessage] = []
        self.lock = threading.Lock()
        self.connections = 0
        self.drops = 0
        self.accepted_since_throttle = 0
        self.throttle_log: list[tuple[float, str]] = []
        self.auth_attempts: list[tuple[str, bool]] = []
        self.record_dir = record_dir
        self.starttls_cert = starttls_cert
        self.implicit_tls = implicit_tls
        self.credentials = credentials
        self.host = "127.0.0.1"
        self.port = 0
        self._controller: Controller | None = None

    @property
    def url(self) -> str:
        if self.implicit_tls:
            return f"smtps://{self.host}:{self.port}"
        return f"smtp://{self.host}:{self.port}" + ("?starttls=1" if self.starttls_cert else "")

    def record(self, message: ReceivedMessage) -> None:
        with self.lock:
            self.messages.append(message)
            n = len(self.messages)
        if self.record_dir is not None:
            self.record_dir.mkdir(parents=True, exist_ok=True)
            (self.record_dir / f"{n:06d}.eml").write_bytes(message.data)
            envelope = {"mail_from": message.mail_from, "rcpt_tos": list(message.rcpt_tos)}
            (self.record_dir / f"{n:06d}.json").write_text(json.dumps(envelope))

    def received_by(self, address: str) -> list[ReceivedMessage]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_tos]

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = False
        user = ""
        if isinstance(auth_data, LoginPassword) and self.credentials is not None:
            user = auth_data.login.decode()
            ok = self.credentials.get(user) == auth_data.password.decode()
        self.auth_attempts.append((user, ok))
        return AuthResult(success=ok, handled=False)

    def start(self) -> ScriptedSmtpServer:
        kwargs: dict[str, Any] = {}
        if self.starttls_cert:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(*map(str, self.starttls_cert))
            if self.implicit_tls:
                kwargs["ssl_context"] = ctx
            else:
                kwargs["tls_context"] = ctx
                kwargs["require_starttls"] = True
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # aiosmtpd only counts STARTTLS as TLS; with implicit TLS the socket is already
            # encrypted
            kwargs["auth_require_tls"] = bool(self.starttls_cert) and not self.implicit_tls
        self.port = free_port(self.host)
        self._controller = Controller(
            _ScriptedHandler(self), hostname=self.host, port=self.port, ready_timeout=10, **kwargs
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> ScriptedSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[ScriptedSmtpServer]:
    """A plain SMTP server on loopback that accepts everything until the test scripts otherwise."""
    with ScriptedSmtpServer(record_dir=tmp_path / "smtp-received") as server:
        yield server
