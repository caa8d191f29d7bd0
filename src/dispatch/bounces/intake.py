"""`dispatch bounces serve`: an SMTP (or LMTP) endpoint a local MTA hands bounce mail to.

Postfix's transport map sends the bounce domain here (`bounce.example.org
smtp:[127.0.0.1]:2525` or `lmtp:...`). The reply is 250 only after the result is committed, so
the MTA keeps (and retries) anything we could not store: a database outage defers, never loses.
Recipients outside the bounce domain are refused (this is not an open mail drop).
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from sqlalchemy.orm import Session

from dispatch.bounces.record import process_message
from dispatch.config import Settings
from dispatch.log import get_logger

__all__ = ["BounceIntake", "IntakeHandler"]

log = get_logger(__name__)
MAX_MESSAGE_BYTES = 40 * 1024 * 1024  # a bounce returning a 20 MB message still fits


class IntakeHandler:
    """aiosmtpd handler: accept bounce-domain recipients, store each message, then say 250."""

    def __init__(self, settings: Settings, engine: Any, *, lmtp: bool = False):
        self.settings = settings
        self.engine = engine
        self.lmtp = lmtp
        self.domain = settings.bounce_address.rpartition("@")[2].lower()
        self.stored = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.domain and address.rpartition("@")[2].lower() != self.domain:
            return "550 5.7.1 not a bounce address of this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _store(self, raw: bytes, rcpt_tos: list[str]) -> str:
        with Session(bind=self.engine) as session:
            recorded = process_message(
                session, self.settings, raw, source="smtp", envelope_to=list(rcpt_tos)
            )
            session.commit()
        self.stored += 1
        return f"{recorded.kind} #{recorded.bounce_id}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        try:
            what = await asyncio.get_running_loop().run_in_executor(
                None, self._store, raw, list(envelope.rcpt_tos)
            )
        except Exception as exc:  # noqa: BLE001 - the MTA keeps the message and retries
            log.error("bounce.intake_failed", error=f"{type(exc).__name__}: {exc}"[:300])
            reply = "451 4.3.0 cannot store the message now; try again later"
        else:
            reply = f"250 2.0.0 stored ({what})"
        if self.lmtp:  # RFC 2033: one reply per accepted recipient
            return "\r\n".join([reply] * max(len(envelope.rcpt_tos), 1))
        return reply


class _Controller(Controller):
    def __init__(self, handler: IntakeHandler, **kwargs: Any):
        self._lmtp = handler.lmtp
        super().__init__(handler, **kwargs)

    def factory(self) -> SMTP:
        cls = LMTP if self._lmtp else SMTP
        return cls(
            self.handler,
            data_size_limit=MAX_MESSAGE_BYTES,
            decode_data=False,
            hostname="dispatch-bounces",
        )


class BounceIntake:
    """Run the intake on host:port in a background thread (`start()` / `stop()`)."""

    def __init__(
        self, settings: Settings, engine: Any, host: str, port: int, *, lmtp: bool = False
    ):
        self.handler = IntakeHandler(settings, engine, lmtp=lmtp)
        self.host, self.port = host, port
        self._controller: _Controller | None = None

    def start(self) -> BounceIntake:
        self._controller = _Controller(
            self.handler, hostname=self.host, port=self.port, ready_timeout=10
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()
