"""The SMTP conversation: where to connect, how to log in, and one MAIL / RCPT / DATA transaction.

Why its own module: it knows nothing about campaigns, recipients or outcomes. The email
channel, the relays (one per provider, each with its own endpoint and credentials) and the
benchmarks all speak SMTP through `SmtpConversation`; what a reply *means* is decided by
`dispatch.channels.smtp_replies`.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from dispatch.channels.smtp_replies import Stage
from dispatch.i18n import Catalog
from dispatch.tls import client_context

__all__ = [
    "Progress",
    "SmtpConversation",
    "SmtpEndpoint",
    "parse_smtp_url",
    "redact_url",
    "smtp_data",
    "tune_socket",
]

MESSAGES = Catalog(
    {
        "bad_url": ("smtp_url 无效：{url}（{why}）", "smtp_url is invalid: {url} ({why})"),
    }
)


# ---------------------------------------------------------------------------------------------
# Where to connect
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SmtpEndpoint:
    """A parsed smtp_url: smtp://host:port[?starttls=1][&cafile=…][&verify=0], smtps://host:port."""

    host: str
    port: int
    security: Literal["plain", "starttls", "tls"]
    cafile: str | None = None
    verify: bool = True

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.cafile, self.verify)


def parse_smtp_url(url: str) -> SmtpEndpoint:
    """Parse settings.smtp_url; credentials belong in smtp_username/smtp_password, not here."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def bad(why: str) -> ValueError:
        return ValueError(MESSAGES.both("bad_url", url=redact_url(url), why=why))

    if parts.scheme not in ("smtp", "smtps"):
        raise bad("scheme must be smtp:// or smtps://")
    if not parts.hostname:
        raise bad("host missing")
    if parts.username or parts.password:
        raise bad("put credentials in smtp_username / smtp_password, not in the URL")
    try:
        port = parts.port
    except ValueError:
        raise bad("port is not a number") from None
    starttls = query.get("starttls", "0").lower() in ("1", "true", "yes", "on")
    if parts.scheme == "smtps":
        security: Literal["plain", "starttls", "tls"] = "tls"
    else:
        security = "starttls" if starttls else "plain"
    return SmtpEndpoint(
        host=parts.hostname,
        port=port or (465 if security == "tls" else 587 if starttls else 25),
        security=security,
        cafile=unquote(query["cafile"]) if query.get("cafile") else None,
        verify=query.get("verify", "1").lower() not in ("0", "false", "no", "off"),
    )


def redact_url(url: str) -> str:
    """The URL with any user:password@ part replaced, fit for logs and error messages."""
    return re.sub(r"//[^@/]*@", "//***@", url)


# ---------------------------------------------------------------------------------------------
# The wire
# ---------------------------------------------------------------------------------------------

_LEADING_DOT = re.compile(rb"(?m)^\.")


def smtp_data(smtp: smtplib.SMTP, message: bytes) -> tuple[int, bytes]:
    """DATA with the message as it is (CRLF already), dot-stuffed only when a line starts with '.'.

    Why not smtplib's data(): it runs a multi-line regex over every message to dot-stuff it,
    about 1.5 ms for a 120 KB issue; our bodies are base64 and our folded header lines start
    with a space, so a C-speed search almost always proves there is nothing to stuff.
    """
    smtp.putcmd("data")
    code, reply = smtp.getreply()
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    return send_body(smtp, message)


def send_body(
    smtp: smtplib.SMTP,
    message: bytes,
    while_waiting: Callable[[], None] | None = None,
    after_dot: bytes = b"",
) -> tuple[int, bytes]:
    """After 354: the message, dot-stuffed where needed, the final dot, and the server's reply.

    `while_waiting` runs between sending and reading the reply: the next recipient's message is
    built while the server is still taking this one (it must not raise). `after_dot` leaves in
    the same write as the final dot (the next message's envelope, RFC 2920).
    """
    if needs_dot_stuffing(message):
        message = _LEADING_DOT.sub(b"..", message)
    ending = b".\r\n" if message.endswith(b"\r\n") else b"\r\n.\r\n"
    sock = smtp.sock
    if sock is None:
        raise smtplib.SMTPServerDisconnected("please run connect() first")
    # two writes, no copy: `message + ending` copied 120 KB per message (TCP_NODELAY sends the
    # short ending at once); an OSError closes the connection as smtplib.send would
    try:
        sock.sendall(message)
        sock.sendall(ending + after_dot)
    except OSError as exc:
        smtp.close()
        raise smtplib.SMTPServerDisconnected("Server not connected") from exc
    if while_waiting is not None:
        while_waiting()
    return smtp.getreply()


def needs_dot_stuffing(message: bytes) -> bool:
    """Whether a line of the message starts with '.'.

    Why not `b"\n." in message`: a newline every 78 bytes makes that search stop and compare
    about 1,500 times in a 120 KB message (0.12 ms, as much as building the message); a dot
    is rare in our messages (headers only, base64 has none), so hopping from dot to dot
    with C-speed find() checks a handful of places.
    """
    if message.startswith(b"."):
        return True
    at = message.find(b".", 1)
    while at != -1:
        if message[at - 1] == 0x0A:
            return True
        at = message.find(b".", at + 1)
    return False


def tune_socket(smtp: smtplib.SMTP) -> None:
    """No Nagle delay: SMTP is strict request/reply, so small commands should leave at once."""
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


@dataclass
class Progress:
    """How far a connection or transaction got: the stage a fault is classified at, and
    whether the body was already on the wire (then a dropped message may not be re-sent)."""

    stage: Stage = "mail"
    body_sent: bool = False


_PIPELINED_STEPS: tuple[tuple[Stage, tuple[int, ...]], ...] = (
    ("mail", (250,)),
    ("rcpt", (250, 251)),
    ("data", (354,)),
)


def envelope_commands(mail_from: str, rcpt_to: str) -> bytes:
    """MAIL, RCPT and DATA of one message, as one pipelined group (RFC 2920); an address
    with CR or LF is refused (it would be a command of its own)."""
    if any(c in part for part in (mail_from, rcpt_to) for c in "\r\n"):
        raise ValueError("an envelope address holds a line break")
    return f"MAIL FROM:<{mail_from}>\r\nRCPT TO:<{rcpt_to}>\r\nDATA\r\n".encode("ascii")


Envelope = tuple[str, str]  # (MAIL FROM, RCPT TO)


class SmtpConversation:
    """One open SMTP connection: transactions on it, RSET, QUIT.

    `open()` raises whatever smtplib raises; `progress.stage` then says how far it got
    (connect, helo, auth), which is what `classify_smtp_error` needs.

    With PIPELINING, the next message's envelope may leave with this message's final dot
    (RFC 2920: message content may open a group): one round trip per message instead of two,
    for the server as much as for us. Its three replies are then owed (`announced`) and the
    server waits for that message's body after them: only its transaction, or closing the
    line, may follow (neither RSET nor QUIT: they would be read as message text).
    """

    def __init__(self, smtp: smtplib.SMTP, *, pipelining: bool | None = None):
        self.smtp = smtp
        self.pipelining = pipelining  # None: when the server advertises PIPELINING
        self.broken = False  # the server hung up mid-transaction: do not reuse
        self.announced: Envelope | None = None  # sent ahead with the last final dot

    @classmethod
    def open(
        cls,
        endpoint: SmtpEndpoint,
        *,
        helo_name: str,
        timeout: float,
        username: str = "",
        password: str = "",
        pipelining: bool | None = None,
        progress: Progress | None = None,
    ) -> SmtpConversation:
        """Connect, EHLO, STARTTLS and AUTH as configured."""
        progress = progress if progress is not None else Progress()
        progress.stage = "connect"
        smtp: smtplib.SMTP | None = None
        try:
            if endpoint.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    endpoint.host,
                    endpoint.port,
                    local_hostname=helo_name,
                    timeout=timeout,
                    context=endpoint.ssl_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    endpoint.host, endpoint.port, local_hostname=helo_name, timeout=timeout
                )
            tune_socket(smtp)
            progress.stage = "helo"
            smtp.ehlo_or_helo_if_needed()
            if endpoint.security == "starttls":
                code, text = smtp.starttls(context=endpoint.ssl_context())
                if code != 220:
                    raise smtplib.SMTPResponseException(code, text)
                smtp.ehlo()
            if username:
                progress.stage = "auth"
                smtp.login(username, password)
        except BaseException:
            close_quietly(smtp)
            raise
        return cls(smtp, pipelining=pipelining)

    def uses_pipelining(self) -> bool:
        if self.pipelining is not None:
            return self.pipelining
        return bool(self.smtp.has_extn("pipelining"))

    def transaction(
        self,
        mail_from: str,
        rcpt_to: str,
        data: bytes,
        progress: Progress,
        while_waiting: Callable[[], None] | None = None,
        following: Callable[[], Envelope | None] | None = None,
    ) -> tuple[int, bytes]:
        """MAIL, RCPT, DATA and the body; the first reply that is not a go-ahead ends it.

        With PIPELINING (RFC 2920) the three commands leave in one write and their replies are
        read in order: two round trips per message instead of four, one when the envelope was
        sent ahead with the previous final dot (`following` names the next message's envelope
        once this body is on the wire; it must then be this conversation's next transaction).
        The replies still owed after a refusal are read (the server sends them), unless the
        server is closing (421). Connection faults raise (smtplib's exceptions / OSError).
        """
        smtp = self.smtp
        progress.stage = "mail"
        if not self.uses_pipelining():
            code, reply = smtp.mail(mail_from)
            if code != 250:
                return code, reply
            progress.stage = "rcpt"
            code, reply = smtp.rcpt(rcpt_to)
            if code not in (250, 251):
                return code, reply
            progress.stage = "data"
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return code, reply
        else:
            if self.announced is None:
                smtp.send(envelope_commands(mail_from, rcpt_to))
            elif self.announced != (mail_from, rcpt_to):
                raise RuntimeError("the envelope sent ahead was another message's")
            self.announced = None
            for index, (stage, accepted) in enumerate(_PIPELINED_STEPS):
                progress.stage = stage
                code, reply = smtp.getreply()
                if code not in accepted:
                    if code != 421:
                        self._read_owed_replies(2 - index)
                    return code, reply
        progress.body_sent = True
        after_dot = b""
        if following is not None and self.uses_pipelining():
            self.announced = following()
            if self.announced is not None:
                after_dot = envelope_commands(*self.announced)
        return send_body(smtp, data, while_waiting, after_dot)

    def _read_owed_replies(self, count: int) -> None:
        try:
            for _ in range(count):
                self.smtp.getreply()
        except Exception:  # noqa: BLE001 - the server hung up after refusing: reconnect next time
            self.broken = True

    def rset(self) -> bool:
        """RSET after a refused transaction; False when the connection is dead (or the server
        waits for the body of an envelope sent ahead: the line must be closed)."""
        if self.announced is not None:
            self.broken = True
            return False
        try:
            self.smtp.rset()
        except Exception:  # noqa: BLE001
            self.broken = True
        return not self.broken

    def quit(self) -> None:
        """QUIT politely (unless a body is awaited), then close; never raises."""
        if self.announced is not None:
            self.close()
            return
        try:
            self.smtp.quit()
        except Exception:  # noqa: BLE001
            close_quietly(self.smtp)

    def close(self) -> None:
        close_quietly(self.smtp)


def close_quietly(smtp: smtplib.SMTP | None) -> None:
    """Close a socket that may already be broken."""
    if smtp is None:
        return
    try:
        smtp.close()
    except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
        pass
