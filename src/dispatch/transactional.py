"""Send one transactional email (confirmation links and the like), outside any campaign.

Why separate from the campaign channel: a confirmation must go out now, one message, without a
Campaign or Delivery row. With `smtp_url` empty it writes the message as an .eml file into
data_dir/outbox, the embedded local outbox, so a bare machine needs no mail server.

Signed with the campaigns' DKIM key when one is configured: an unsigned confirmation from a
domain with a DMARC policy is exactly the message receivers quarantine.
"""

from __future__ import annotations

import smtplib
import uuid
from email import policy
from email.message import EmailMessage, Message
from email.utils import formatdate, getaddresses, make_msgid
from pathlib import Path

from dispatch.config import ConfigError, Settings
from dispatch.log import get_logger

log = get_logger(__name__)


def outbox_dir(settings: Settings) -> Path:
    return settings.data_dir / "outbox"


class _WireCompat32(policy.Compat32):
    """compat32 with CRLF, writing a short plain-ASCII header as it is: the classic folding
    runs every header through email.header.Header (about half the cost of writing a
    confirmation), and for a one-line ASCII value it gives back the same text."""

    def _fold(self, name, value, sanitize):  # type: ignore[no-untyped-def]
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= (self.max_line_length or 78)
            and "\n" not in value
            and "\r" not in value
            and value == value.strip()
            and "  " not in value
        ):
            return f"{name}: {value}{self.linesep}"
        return super()._fold(name, value, sanitize)


WIRE_COMPAT32 = _WireCompat32(linesep="\r\n")


def _prepare(settings: Settings, message: Message) -> None:
    if "Date" not in message:
        message["Date"] = formatdate(localtime=False)
    if "Message-ID" not in message:
        domain = settings.from_address.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
    if "From" not in message:
        message["From"] = settings.from_address


def message_bytes(settings: Settings, message: Message) -> bytes:
    """The wire form (CRLF line ends), DKIM-signed when keys are configured. A classic
    (compat32) message, already encoded by its builder, is written as it is: cheap."""
    from dispatch.channels.dkim import signer_from_settings

    if isinstance(message, EmailMessage):
        data = message.as_bytes(policy=policy.SMTP)
    else:
        data = message.as_bytes(policy=WIRE_COMPAT32)
    signer = signer_from_settings(settings)
    return signer.sign(data) if signer is not None else data


def _write_outbox(settings: Settings, data: bytes) -> Path:
    folder = outbox_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"transactional-{uuid.uuid4().hex}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.rename(path)  # readers never see a half-written file
    return path


def _smtp_send(
    settings: Settings, message: Message, data: bytes, envelope_from: str | None = None
) -> None:
    # one URL grammar for the whole project: smtp://host:port[?starttls=1][&cafile=…][&verify=0]
    from dispatch.channels.smtp_conversation import parse_smtp_url

    try:
        endpoint = parse_smtp_url(settings.smtp_url)
    except ValueError as exc:
        raise ConfigError(f"设置 'smtp_url' 无效 / setting 'smtp_url': {exc}") from None
    timeout = settings.smtp_timeout
    if endpoint.security == "tls":
        client: smtplib.SMTP = smtplib.SMTP_SSL(
            endpoint.host, endpoint.port, timeout=timeout, context=endpoint.ssl_context()
        )
    else:
        client = smtplib.SMTP(endpoint.host, endpoint.port, timeout=timeout)
    try:
        client.ehlo()
        if endpoint.security == "starttls":
            client.starttls(context=endpoint.ssl_context())
            client.ehlo()
        if settings.smtp_username:
            client.login(settings.smtp_username, settings.smtp_password)
        sender = (
            envelope_from or getaddresses([str(message["From"])])[0][1] or settings.from_address
        )
        recipients = [
            address
            for _, address in getaddresses(
                [str(v) for key in ("To", "Cc") for v in message.get_all(key, [])]
            )
            if address
        ]
        client.sendmail(sender, recipients, data)
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


def envelope_sender(settings: Settings, subscriber_id: int = 0) -> str | None:
    """MAIL FROM for transactional mail: a VERP address of its own kind ("t") when
    settings.bounce_address is set, so a bounced confirmation is tied to its subscriber;
    None (the From address) otherwise."""
    if not settings.bounce_address:
        return None
    from dispatch.tokens import verp_address

    return verp_address(settings, "t", 0, subscriber_id)


def send_transactional(settings: Settings, message: Message, *, subscriber_id: int = 0) -> str:
    """Send now; returns the Message-ID. SMTP errors propagate (the caller decides)."""
    _prepare(settings, message)
    data = message_bytes(settings, message)
    if settings.smtp_url:
        _smtp_send(settings, message, data, envelope_sender(settings, subscriber_id))
        log.info("transactional.sent", via="smtp", message_id=str(message["Message-ID"]))
    else:
        path = _write_outbox(settings, data)
        log.info(
            "transactional.sent",
            via="outbox",
            file=path.name,
            message_id=str(message["Message-ID"]),
        )
    return str(message["Message-ID"])
