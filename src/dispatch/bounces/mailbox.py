"""The bounce mailbox: poll an IMAP folder or a POP3 box, process each message once.

`bounce_mailbox_url` is `imap[s]://user@host[:port]/FOLDER[?verify=0&cafile=…&starttls=1]` or
`pop3[s]://user@host[:port]`; the password comes from `bounce_mailbox_password` (env
DISPATCH_BOUNCE_MAILBOX_PASSWORD), never the URL. Each message is parsed and recorded in its
own transaction, and only after that commit is it moved to `bounce_mailbox_done_folder` (IMAP)
or deleted (POP3, or IMAP with no done folder). A crash between the two leaves the message in
place; the next poll finds its digest already stored and only moves it: never processed twice.
"""

from __future__ import annotations

import imaplib
import poplib
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.orm import Session

from dispatch.bounces.record import process_message
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.tls import client_context

__all__ = ["MailboxError", "MailboxUrl", "PollReport", "parse_mailbox_url", "poll_mailbox"]

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "bad_url": (
            "bounce_mailbox_url 无效：{url}（{why}）",
            "bounce_mailbox_url is invalid: {url} ({why})",
        ),
        "login": ("退信邮箱登录失败：{error}", "cannot log in to the bounce mailbox: {error}"),
        "folder": (
            "退信邮箱文件夹 {folder} 无法打开：{error}",
            "cannot open folder {folder}: {error}",
        ),
    }
)


class MailboxError(RuntimeError):
    """The mailbox cannot be reached or read; the message names the setting or the server's
    words."""


@dataclass(frozen=True)
class MailboxUrl:
    protocol: str  # imap | pop3
    tls: bool
    starttls: bool
    host: str
    port: int
    user: str
    folder: str
    verify: bool = True
    cafile: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        return client_context(self.cafile, self.verify)


def parse_mailbox_url(url: str) -> MailboxUrl:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def bad(why: str) -> MailboxError:
        redacted = url.replace(f":{parts.password}@", ":***@") if parts.password else url
        return MailboxError(MESSAGES.both("bad_url", url=redacted, why=why))

    schemes = {"imap": ("imap", False, 143), "imaps": ("imap", True, 993)}
    schemes |= {"pop3": ("pop3", False, 110), "pop3s": ("pop3", True, 995)}
    if parts.scheme not in schemes:
        raise bad("scheme must be imap://, imaps://, pop3:// or pop3s://")
    if parts.password:
        raise bad("put the password in bounce_mailbox_password, not in the URL")
    if not parts.hostname or not parts.username:
        raise bad("user@host is required")
    protocol, tls, default_port = schemes[parts.scheme]
    try:
        port = parts.port or default_port
    except ValueError:
        raise bad("port is not a number") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    return MailboxUrl(
        protocol=protocol,
        tls=tls,
        starttls=query.get("starttls", "0").lower() in ("1", "true", "yes"),
        host=parts.hostname,
        port=port,
        user=unquote(parts.username),
        folder=folder,
        verify=query.get("verify", "1").lower() not in ("0", "false", "no", "off"),
        cafile=unquote(query["cafile"]) if query.get("cafile") else None,
    )


@dataclass
class PollReport:
    seen: int = 0
    processed: int = 0
    duplicates: int = 0
    failed: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "processed": self.processed,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "kinds": dict(self.kinds),
        }


def _store(engine: Any, settings: Settings, raw: bytes, source: str, report: PollReport) -> bool:
    """Record one message in its own transaction; True when it may leave the mailbox."""
    try:
        with Session(bind=engine) as session:
            recorded = process_message(session, settings, raw, source=source)
            session.commit()
    except Exception as exc:  # noqa: BLE001 - keep it in the mailbox; the next poll retries
        report.failed += 1
        log.error("bounce.mailbox_store_failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return False
    if recorded.duplicate:
        report.duplicates += 1
    else:
        report.processed += 1
        report.kinds[recorded.kind] = report.kinds.get(recorded.kind, 0) + 1
    return True


def poll_mailbox(engine: Any, settings: Settings, *, limit: int = 500) -> PollReport:
    """Read up to `limit` messages and process each once (see the module docstring)."""
    url = parse_mailbox_url(settings.bounce_mailbox_url)
    report = PollReport()
    if url.protocol == "imap":
        _poll_imap(engine, settings, url, report, limit)
    else:
        _poll_pop3(engine, settings, url, report, limit)
    log.info("bounce.mailbox_polled", protocol=url.protocol, **report.as_dict())
    return report


def _imap_ok(result: tuple[str, Any], what: str) -> Any:
    status, data = result
    if status != "OK":
        detail = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise MailboxError(f"IMAP {what}: {status} {detail}".strip())
    return data


def _poll_imap(
    engine: Any, settings: Settings, url: MailboxUrl, report: PollReport, limit: int
) -> None:
    timeout = settings.smtp_timeout
    if url.tls:
        client: imaplib.IMAP4 = imaplib.IMAP4_SSL(
            url.host, url.port, ssl_context=url.ssl_context(), timeout=timeout
        )
    else:
        client = imaplib.IMAP4(url.host, url.port, timeout=timeout)
        if url.starttls:
            client.starttls(ssl_context=url.ssl_context())
    try:
        try:
            client.login(url.user, settings.bounce_mailbox_password)
        except imaplib.IMAP4.error as exc:
            raise MailboxError(MESSAGES.both("login", error=str(exc))) from None
        done = settings.bounce_mailbox_done_folder.strip()
        if done:
            status, _ = client.create(_quote(done))  # "already exists" is fine
        try:
            _imap_ok(client.select(_quote(url.folder)), "SELECT")
        except MailboxError as exc:
            raise MailboxError(MESSAGES.both("folder", folder=url.folder, error=str(exc))) from None
        uids = _imap_ok(client.uid("SEARCH", None, "UNDELETED"), "SEARCH")[0].split()[:limit]
        can_move = b"MOVE" in b" ".join(
            c.encode() if isinstance(c, str) else c for c in client.capabilities
        )
        finished: list[bytes] = []
        for uid in uids:
            report.seen += 1
            data = _imap_ok(client.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH")
            raw = next((item[1] for item in data if isinstance(item, tuple)), None)
            if raw is None:
                continue
            if not _store(engine, settings, raw, "imap", report):
                continue
            if done and can_move:
                _imap_ok(client.uid("MOVE", uid, _quote(done)), "MOVE")
            else:
                if done:
                    _imap_ok(client.uid("COPY", uid, _quote(done)), "COPY")
                _imap_ok(client.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)"), "STORE")
                finished.append(uid)
        if finished:
            client.expunge()
        client.close()
    finally:
        try:
            client.logout()
        except Exception:  # noqa: BLE001
            pass


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _poll_pop3(
    engine: Any, settings: Settings, url: MailboxUrl, report: PollReport, limit: int
) -> None:
    timeout = settings.smtp_timeout
    if url.tls:
        client: poplib.POP3 = poplib.POP3_SSL(
            url.host, url.port, context=url.ssl_context(), timeout=timeout
        )
    else:
        client = poplib.POP3(url.host, url.port, timeout=timeout)
        if url.starttls:
            client.stls(context=url.ssl_context())
    try:
        try:
            client.user(url.user)
            client.pass_(settings.bounce_mailbox_password)
        except poplib.error_proto as exc:
            raise MailboxError(MESSAGES.both("login", error=str(exc))) from None
        count, _ = client.stat()
        for number in range(1, min(count, limit) + 1):
            report.seen += 1
            _, lines, _ = client.retr(number)
            raw = b"\r\n".join(lines) + b"\r\n"
            if _store(engine, settings, raw, "pop3", report):
                client.dele(number)
        client.quit()  # the deletions take effect here
    except BaseException:
        try:
            client.rset()
            client.quit()
        except Exception:  # noqa: BLE001
            pass
        raise
