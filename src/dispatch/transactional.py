"""Send one transactional email (confirmation links and the like), outside any campaign.

Why separate from the campaign channel: a confirmation must go out now, one message, without a
Campaign or Delivery row. With `smtp_url` empty it writes the message as an .eml file into
data_dir/outbox, the embedded local outbox, so a bare machine needs no mail server.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
import uuid
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from dispatch.config import ConfigError, Settings

log = logging.getLogger(__name__)

TRUE_VALUES = ("1", "true", "yes", "on")


def outbox_dir(settings: Settings) -> Path:
    return settings.data_dir / "outbox"


def _prepare(settings: Settings, message: EmailMessage) -> None:
    if "Date" not in message:
        message["Date"] = formatdate(localtime=False)
    if "Message-ID" not in message:
        domain = settings.from_address.rpartition("@")[2] or "localhost"
        message["Message-ID"] = make_msgid(domain=domain)
    if "From" not in message:
        message["From"] = settings.from_address


def _write_outbox(settings: Settings, message: EmailMessage) -> Path:
    folder = outbox_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"transactional-{uuid.uuid4().hex}.eml"
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(message.as_bytes())
    tmp.rename(path)  # readers never see a half-written file
    return path


def _smtp_send(settings: Settings, message: EmailMessage) -> None:
    url = urlsplit(settings.smtp_url)
    if url.scheme not in ("smtp", "smtps") or not url.hostname:
        raise ConfigError(f"setting 'smtp_url' must look like smtp://host:port or smtps://host:port, got scheme {url.scheme!r}")
    query = parse_qs(url.query)
    starttls = query.get("starttls", ["0"])[0].lower() in TRUE_VALUES
    username = settings.smtp_username or unquote(url.username or "")
    password = settings.smtp_password or unquote(url.password or "")
    timeout = settings.smtp_timeout
    if url.scheme == "smtps":
        client: smtplib.SMTP = smtplib.SMTP_SSL(url.hostname, url.port or 465, timeout=timeout,
                                                context=ssl.create_default_context())
    else:
        client = smtplib.SMTP(url.hostname, url.port or 25, timeout=timeout)
    try:
        client.ehlo()
        if starttls:
            client.starttls(context=ssl.create_default_context())
            client.ehlo()
        if username:
            client.login(username, password)
        client.send_message(message)
    finally:
        try:
            client.quit()
        except smtplib.SMTPException:
            client.close()


def send_transactional(settings: Settings, message: EmailMessage) -> str:
    """Send now; returns the Message-ID. SMTP errors propagate (the caller decides)."""
    _prepare(settings, message)
    if settings.smtp_url:
        _smtp_send(settings, message)
        log.info("transactional_sent via=smtp message_id=%s", message["Message-ID"])
    else:
        path = _write_outbox(settings, message)
        log.info("transactional_sent via=outbox file=%s message_id=%s", path.name, message["Message-ID"])
    return str(message["Message-ID"])
