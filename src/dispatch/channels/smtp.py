"""The email channel: one SMTP connection per batch, one transaction per recipient.

Why one transaction (MAIL / RCPT / DATA) per recipient rather than `sendmail` with many RCPTs:
each recipient gets its own Message-ID, unsubscribe link and tracking tokens, so the bodies
differ anyway, and a per-recipient transaction tells us exactly which address the server
accepted, deferred or rejected.

Faults: a dropped connection is reconnected once per batch and sending continues; a second
drop defers the rest of the batch (the engine retries them; nothing is lost). A recipient whose
DATA was already on the wire when the connection dropped is deferred, not re-sent on the new
connection, because the server may have accepted it. A sender-side refusal (authentication,
policy on our sender, rate limits) stops the batch: every remaining recipient comes back
"paused" with the reason, so the engine pauses the campaign instead of suppressing good
addresses.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy.orm import Session

from dispatch.channels.base import CampaignContext, Outcome, Recipient, SendResult
from dispatch.channels.dkim import DkimSigner, signer_from_settings
from dispatch.channels.email_message import MessageBuildError, MessageTemplate, build_template
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.log import get_logger

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "test_prefix": ("[测试] ", "[Test] "),
        "no_issue": (
            "活动 {campaign_id} 的期刊 {issue_id} 不存在",
            "campaign {campaign_id}: issue {issue_id} not found",
        ),
        "bad_url": ("smtp_url 无效：{url}（{why}）", "smtp_url is invalid: {url} ({why})"),
        "dropped_twice": (
            "SMTP 连接在本批次中再次断开",
            "SMTP connection dropped again in this batch",
        ),
        "build_failed": ("无法生成邮件：{error}", "cannot build the message: {error}"),
    }
)

Stage = Literal["connect", "helo", "auth", "mail", "rcpt", "data"]

# ---------------------------------------------------------------------------------------------
# Classification of SMTP replies: the ONE place that decides sent / deferred / bounced / failed /
# paused. Rules, first match wins:
#
#  #  reply                                              outcome   why
#  1  2xx, 3xx                                           sent      accepted (354 only mid-DATA)
#  2  530, 534, 535, 538 (any stage)                     paused    our authentication is missing
#                                                                  or wrong: every message fails
#  3  4xx/5xx whose text speaks of a rate or volume      paused    the server throttles *us*
#     limit ("rate limit", "too many messages",                    (421 4.7.0, 450/451 4.7.x,
#     "throttled", "sending quota", "slow down")                   5.7.x "rate"): retrying each
#                                                                  address would only make it worse
#  4  5xx with an enhanced code 5.7.x whose text is      paused    policy refuses our sender, not
#     about the sender side ("authentication required",           the address: "sender rejected",
#     "sender", "relay", SPF/DMARC, blocked client host)           "relay access denied"
#  5  5xx at connect / HELO / MAIL FROM                  paused    refused before any recipient:
#                                                                  it would refuse all of them
#  6  4xx (any other)                                    deferred  transient: retry with backoff
#  7  5xx at DATA about the content (5.6.x, 5.3.4        failed    the message is refused, not the
#     "too big", "spam", "virus", "content")                       address: do not suppress it
#  8  5xx (any other: RCPT or DATA)                      bounced   permanent for this address
#  9  anything else (no code, 1xx, garbage)              deferred  unknown: retry, never lose
#
# Connection faults (timeouts, refused, reset, SMTPServerDisconnected) are deferred; see
# `classify_smtp_error`.
# ---------------------------------------------------------------------------------------------

AUTH_CODES = frozenset({530, 534, 535, 538})
_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_RATE_TEXT = re.compile(
    r"\brate\b|rate[- ]?limit|too many (messages|mails|emails|connections|sessions)|throttl"
    r"|sending (limit|quota)|send(ing)? rate|slow down|try again later.*limit",
    re.I,
)
_SENDER_TEXT = re.compile(
    r"\bauth\b|authenticat|sender|relay|\bspf\b|dmarc|not permitted to send|not authori[sz]ed to send"
    r"|client host|blocked using|blocklist|blacklist|spamhaus|mail from",
    re.I,
)
_CONTENT_TEXT = re.compile(r"spam|virus|malware|content|message (is )?too (big|large)|size", re.I)


def enhanced_code(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code (e.g. 5.7.1) at the start of a reply text, if any."""
    match = _ENHANCED.search(text[:32])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def classify_smtp_reply(
    code: int | None, text: str | bytes = "", *, stage: Stage = "rcpt"
) -> Outcome:
    """Map one SMTP reply to an outcome (see the rule table above)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if code is None or not 100 <= code <= 599:
        return "deferred"  # rule 9
    klass = code // 100
    if klass in (2, 3):
        return "sent"  # rule 1
    if code in AUTH_CODES:
        return "paused"  # rule 2
    if klass in (4, 5) and _RATE_TEXT.search(text):
        return "paused"  # rule 3
    enhanced = enhanced_code(text)
    if klass == 5 and enhanced and enhanced[1] == 7 and _SENDER_TEXT.search(text):
        return "paused"  # rule 4
    if klass == 5 and stage in ("connect", "helo", "auth", "mail"):
        return "paused"  # rule 5
    if klass == 4:
        return "deferred"  # rule 6
    if klass == 5:
        if stage == "data" and (
            (enhanced and (enhanced[1] == 6 or enhanced[1:] in ((3, 4), (2, 3))))
            or _CONTENT_TEXT.search(text)
        ):
            return "failed"  # rule 7
        return "bounced"  # rule 8
    return "deferred"  # rule 9


def classify_smtp_error(exc: BaseException, stage: Stage) -> tuple[Outcome, int | None, str]:
    """Map an exception raised while talking SMTP to (outcome, code, text)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            exc.smtp_error.decode("utf-8", "replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            stage = "auth"
        elif isinstance(exc, smtplib.SMTPConnectError):
            stage = "connect"
        elif isinstance(exc, smtplib.SMTPHeloError):
            stage = "helo"
        return classify_smtp_reply(exc.smtp_code, text, stage=stage), exc.smtp_code, text
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return "paused", None, f"server does not support a configured feature: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "paused", None, f"TLS certificate rejected: {exc.verify_message}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):  # smtplib wraps read timeouts in it
        if "timed out" in str(exc):
            return "deferred", None, f"timeout ({stage})"
        return "deferred", None, f"connection lost ({stage}): {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "deferred", None, f"timeout ({stage})"
    if isinstance(exc, OSError):
        return "deferred", None, f"connection error ({stage}): {exc.strerror or exc}"
    return "deferred", None, f"{type(exc).__name__} ({stage}): {exc}"


def _is_connection_fault(exc: BaseException) -> bool:
    return isinstance(exc, smtplib.SMTPServerDisconnected | OSError) and not isinstance(
        exc,
        smtplib.SMTPResponseException
        | smtplib.SMTPNotSupportedError
        | ssl.SSLCertVerificationError,
    )


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
    return _send_body(smtp, message)


def _send_body(
    smtp: smtplib.SMTP, message: bytes, while_waiting: Callable[[], None] | None = None
) -> tuple[int, bytes]:
    """After 354: the message, dot-stuffed where needed, the final dot, and the server's reply.

    `while_waiting` runs between sending and reading the reply: the next recipient's message is
    built while the server is still taking this one (it must not raise).
    """
    if message.startswith(b".") or b"\n." in message:
        message = _LEADING_DOT.sub(b"..", message)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    smtp.send(message + b".\r\n")
    if while_waiting is not None:
        while_waiting()
    return smtp.getreply()


def tune_socket(smtp: smtplib.SMTP) -> None:
    """No Nagle delay: SMTP is strict request/reply, so small commands should leave at once."""
    sock = getattr(smtp, "sock", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


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
        ctx = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx


def parse_smtp_url(url: str) -> SmtpEndpoint:
    """Parse settings.smtp_url; credentials belong in smtp_username/smtp_password, not here."""
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}

    def bad(why: str) -> ValueError:
        return ValueError(MESSAGES.both("bad_url", url=_redact_url(url), why=why))

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


def _redact_url(url: str) -> str:
    return re.sub(r"//[^@/]*@", "//***@", url)


# ---------------------------------------------------------------------------------------------
# What to send: the campaign's rendered issue and message template, built once per batch
# ---------------------------------------------------------------------------------------------


class RenderedLike(Protocol):
    """What the channel needs from dispatch.render.email.RenderedEmail."""

    @property
    def subject(self) -> str: ...

    @property
    def link_count(self) -> int: ...

    def personalize(self, slots: Any) -> tuple[str, str]: ...


class CampaignSourceError(RuntimeError):
    """The campaign's issue cannot be loaded or rendered (the batch is paused, not failed)."""


@dataclass
class EmailCampaignSource:
    """Everything one campaign's messages are made of; `message_for` is the cheap per-recipient step."""

    settings: Settings
    context: CampaignContext
    rendered: RenderedLike
    template: MessageTemplate
    signer: DkimSigner | None = None
    slots_for: Callable[[Recipient], Any] | None = None  # default: dispatch.tokens.tracking_slots

    @property
    def unsubscribe_list_id(self) -> int | None:
        """The list an unsubscribe link leaves: the campaign's list, or all lists (None) when several."""
        return self.context.list_ids[0] if len(self.context.list_ids) == 1 else None

    def slots(self, recipient: Recipient) -> Any:
        if self.slots_for is not None:
            return self.slots_for(recipient)
        from dispatch.tokens import tracking_slots

        return tracking_slots(
            self.settings,
            delivery_id=recipient.delivery_id,
            subscriber_id=recipient.subscriber_id,
            list_id=self.unsubscribe_list_id,
            name=recipient.name,
            n_links=self.rendered.link_count,
            tracking=self.context.tracking,
        )

    def message_for(self, recipient: Recipient) -> tuple[str, bytes]:
        """(Message-ID, message bytes) for one recipient; MessageBuildError if it cannot be built."""
        if not recipient.email:
            raise MessageBuildError("recipient has no email address")
        if not recipient.email.isascii():
            raise MessageBuildError("internationalised address (SMTPUTF8) is not supported")
        slots = self.slots(recipient)
        html, text = self.rendered.personalize(slots)
        data = self.template.fill(
            delivery_id=recipient.delivery_id,
            to_address=recipient.email,
            to_name=recipient.name,
            unsubscribe_url=slots.unsubscribe_url,
            html=html,
            text=text,
        )
        if self.signer is not None:
            data = self.signer.sign(data)
        return self.template.message_id(recipient.delivery_id), data


def build_campaign_source(
    settings: Settings, context: CampaignContext, rendered: RenderedLike, **kwargs: Any
) -> EmailCampaignSource:
    """Encode the campaign's shared headers once (subject marked when it is a test send)."""
    subject = rendered.subject
    if context.is_test:
        subject = MESSAGES.get("test_prefix", settings.locale) + subject
    template = build_template(
        campaign_id=context.campaign_id,
        subject=subject,
        from_address=settings.from_address,
        from_name=settings.from_name,
        list_id=settings.list_id,
        reply_to=settings.reply_to,
        unsubscribe_mailto=settings.unsubscribe_mailto,
    )
    return EmailCampaignSource(
        settings=settings,
        context=context,
        rendered=rendered,
        template=template,
        signer=signer_from_settings(settings),
        **kwargs,
    )


_SOURCE_CACHE: dict[tuple[Any, ...], EmailCampaignSource] = {}
_SOURCE_CACHE_SIZE = 8


def load_campaign_source(
    session: Session, context: CampaignContext, settings: Settings
) -> EmailCampaignSource:
    """Issue row → IssueDoc → rendered email (cached by content) → message template.

    Cached per process by campaign and the issue's content hash, so a worker serving many
    batches of one campaign renders and encodes once.
    """
    from dispatch.content.store import load_issue_doc
    from dispatch.models import Issue
    from dispatch.render.email import render_email

    issue = session.get(Issue, context.issue_id)
    if issue is None:
        raise CampaignSourceError(
            MESSAGES.both("no_issue", campaign_id=context.campaign_id, issue_id=context.issue_id)
        )
    key = (
        context.campaign_id,
        context.issue_id,
        issue.content_hash,
        context.tracking,
        context.is_test,
        context.list_ids,
        repr(settings),  # in-memory key only (never logged); Settings holds a dict, so no hash
    )
    source = _SOURCE_CACHE.get(key)
    if source is None:
        rendered = render_email(load_issue_doc(issue), settings, tracking=context.tracking)
        source = build_campaign_source(settings, context, rendered)
        if len(_SOURCE_CACHE) >= _SOURCE_CACHE_SIZE:
            _SOURCE_CACHE.pop(next(iter(_SOURCE_CACHE)))
        _SOURCE_CACHE[key] = source
    elif source.context != context:  # same campaign, another batch: keep the template
        source = EmailCampaignSource(**{**source.__dict__, "context": context})
    return source


def _load_source_from_database(settings: Settings, context: CampaignContext) -> EmailCampaignSource:
    from dispatch.db import get_engine

    with Session(bind=get_engine(settings)) as session:
        return load_campaign_source(session, context, settings)


# ---------------------------------------------------------------------------------------------
# The channel
# ---------------------------------------------------------------------------------------------


@dataclass
class _Halt:
    """Why the rest of the batch is not attempted (sender refused, connection lost twice)."""

    outcome: Outcome
    code: int | None
    text: str


@dataclass
class _Progress:
    """How far one transaction got (decides whether a dropped one may be re-sent at once)."""

    stage: Stage = "mail"
    body_sent: bool = False


_PIPELINED_STEPS: tuple[tuple[Stage, tuple[int, ...]], ...] = (
    ("mail", (250,)),
    ("rcpt", (250, 251)),
    ("data", (354,)),
)


@dataclass
class _BatchState:
    halt: _Halt | None = None
    counts: dict[str, int] = field(default_factory=dict)


class SmtpChannel:
    """Channel protocol over SMTP: open() once, send(batch) per recipient, close()."""

    name = "email"
    max_reconnects = 1

    def __init__(
        self,
        settings: Settings,
        context: CampaignContext,
        *,
        source: EmailCampaignSource | None = None,
        source_loader: Callable[[Settings, CampaignContext], EmailCampaignSource] | None = None,
        pipelining: bool | None = None,
    ):
        self.settings = settings
        self.context = context
        self._source = source
        self._source_loader = source_loader or _load_source_from_database
        self.pipelining = pipelining  # None: when the server advertises PIPELINING
        self._smtp: smtplib.SMTP | None = None
        self._endpoint: SmtpEndpoint | None = None
        self._connect_error: tuple[Outcome, int | None, str] | None = None
        self._drops = 0  # dropped connections since open(): one reconnect per batch
        self._helo_name = settings.from_address.rpartition("@")[2] or "localhost"

    @staticmethod
    def prepare_campaign(settings: Settings, context: CampaignContext) -> None:
        """Render and encode the campaign once in this process, before a batch is claimed
        (dispatch.channels.prepare_channel calls it; the source is cached per process)."""
        _load_source_from_database(settings, context)

    # -- connection ---------------------------------------------------------------------------

    def endpoint(self) -> SmtpEndpoint:
        if self._endpoint is None:
            url = self.settings.smtp_url
            if not url:  # embedded default: the process's local outbox under data_dir/outbox
                from dispatch.outbox import shared_outbox

                url = shared_outbox(self.settings).url
            self._endpoint = parse_smtp_url(url)
        return self._endpoint

    def open(self) -> None:
        """Connect now; a failure is remembered and reported per recipient by send()."""
        self._drops = 0
        if self._smtp is None:
            self._connect_error = self._connect()

    def _connect(self) -> tuple[Outcome, int | None, str] | None:
        """Connect, STARTTLS and AUTH as configured; None on success, else (outcome, code, text)."""
        stage: Stage = "connect"
        smtp: smtplib.SMTP | None = None
        try:
            ep = self.endpoint()
            timeout = self.settings.smtp_timeout
            if ep.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    ep.host,
                    ep.port,
                    local_hostname=self._helo_name,
                    timeout=timeout,
                    context=ep.ssl_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    ep.host, ep.port, local_hostname=self._helo_name, timeout=timeout
                )
            tune_socket(smtp)
            stage = "helo"
            smtp.ehlo_or_helo_if_needed()
            if ep.security == "starttls":
                code, text = smtp.starttls(context=ep.ssl_context())
                if code != 220:
                    raise smtplib.SMTPResponseException(code, text)
                smtp.ehlo()
            if self.settings.smtp_username:
                stage = "auth"
                smtp.login(self.settings.smtp_username, self.settings.smtp_password)
        except ValueError as exc:  # bad smtp_url or unusable credentials: a configuration problem
            self._close_quietly(smtp)
            reason = "SMTP credentials cannot be sent (non-ASCII?)" if stage == "auth" else str(exc)
            log.error(
                "smtp.connect_failed",
                campaign_id=self.context.campaign_id,
                stage=stage,
                reason=reason,
            )
            return "paused", None, reason
        except Exception as exc:  # noqa: BLE001 - every fault is classified, none escapes
            self._close_quietly(smtp)
            outcome, code, text = classify_smtp_error(exc, stage)
            log.warning(
                "smtp.connect_failed",
                campaign_id=self.context.campaign_id,
                batch_no=self.context.batch_no,
                stage=stage,
                outcome=outcome,
                code=code,
                reason=text,
            )
            return outcome, code, text
        self._smtp = smtp
        return None

    @staticmethod
    def _close_quietly(smtp: smtplib.SMTP | None) -> None:
        if smtp is None:
            return
        try:
            smtp.close()
        except Exception:  # noqa: BLE001 - closing a broken socket may fail; nothing to do
            pass

    def close(self) -> None:
        """QUIT politely, then close; safe to call twice."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:  # noqa: BLE001
                self._close_quietly(smtp)

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        self._close_quietly(smtp)

    # -- sending ------------------------------------------------------------------------------

    def source(self) -> EmailCampaignSource:
        if self._source is None:
            self._source = self._source_loader(self.settings, self.context)
        return self._source

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        """One result per recipient, in order; never raises for a recipient's or server's fault."""
        state = _BatchState()
        started = time.monotonic()
        try:
            source = self.source()
        except Exception as exc:  # noqa: BLE001 - cannot render: pause the campaign with the reason
            text = MESSAGES.both("build_failed", error=str(exc))
            log.error("smtp.source_failed", campaign_id=self.context.campaign_id, reason=str(exc))
            state.halt = _Halt("paused", None, text)
            source = None
        if state.halt is None and self._connect_error is not None:
            state.halt = _Halt(*self._connect_error)
            self._connect_error = None
        if (
            state.halt is None and self._drops > self.max_reconnects
        ):  # an earlier chunk lost it twice
            state.halt = _Halt("deferred", None, MESSAGES.both("dropped_twice"))
        results: list[SendResult] = []
        built: dict[int, tuple[str, bytes] | Exception] = {}  # at most the next recipient's message

        def build(recipient: Recipient) -> tuple[str, bytes] | Exception:
            try:
                return source.message_for(recipient)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - reported as this recipient's failure
                return exc

        for index, recipient in enumerate(batch):
            if state.halt is not None or source is None:
                halt = state.halt or _Halt("paused", None, "")
                result = SendResult(recipient.delivery_id, halt.outcome, halt.code, halt.text)
            else:
                following = batch[index + 1] if index + 1 < len(batch) else None

                def build_following(following: Recipient | None = following) -> None:
                    if following is not None and following.delivery_id not in built:
                        built[following.delivery_id] = build(following)

                message = built.pop(recipient.delivery_id, None) or build(recipient)
                result = self._send_one(recipient, message, state, build_following)
            state.counts[result.outcome] = state.counts.get(result.outcome, 0) + 1
            results.append(result)
        log.info(
            "smtp.batch",
            campaign_id=self.context.campaign_id,
            batch_no=self.context.batch_no,
            recipients=len(batch),
            seconds=round(time.monotonic() - started, 3),
            reconnects=self._drops,
            halted=state.halt.text if state.halt else None,
            **state.counts,
        )
        return results

    def _send_one(
        self,
        recipient: Recipient,
        message: tuple[str, bytes] | Exception,
        state: _BatchState,
        while_waiting: Callable[[], None] | None = None,
    ) -> SendResult:
        if isinstance(message, Exception):  # this recipient's message cannot be built
            exc = message
            log.warning(
                "smtp.build_failed",
                campaign_id=self.context.campaign_id,
                delivery_id=recipient.delivery_id,
                reason=str(exc),
            )
            return SendResult(
                recipient.delivery_id, "failed", None, MESSAGES.both("build_failed", error=str(exc))
            )
        message_id, data = message
        assert recipient.email is not None
        while True:
            if self._smtp is None:
                error = self._connect()
                if error is not None:
                    state.halt = _Halt(*error)
                    return self._result(recipient, message_id, *error, stage="connect")
            smtp = self._smtp
            assert smtp is not None
            progress = _Progress()
            try:
                code, reply = self._transaction(
                    smtp, recipient.email, data, progress, while_waiting
                )
                stage = progress.stage
                text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
                outcome = classify_smtp_reply(code, text, stage=stage)
            except Exception as exc:  # noqa: BLE001 - classified below
                stage = progress.stage
                outcome, code, text = classify_smtp_error(exc, stage)
                if not _is_connection_fault(exc):
                    if code == 421:
                        self._drop()
                    else:
                        self._rset()
                    return self._finish(recipient, message_id, outcome, code, text, stage, state)
                self._drop()
                self._drops += 1
                if self._drops > self.max_reconnects:
                    state.halt = _Halt("deferred", None, MESSAGES.both("dropped_twice"))
                    return self._result(recipient, message_id, outcome, code, text, stage=stage)
                if progress.body_sent:  # the server may have taken it: retry later, not now
                    return self._result(recipient, message_id, outcome, code, text, stage=stage)
                log.info(
                    "smtp.reconnect",
                    campaign_id=self.context.campaign_id,
                    delivery_id=recipient.delivery_id,
                    reason=text,
                )
                continue  # nothing of this message went out: reconnect and send it again
            if outcome != "sent":
                if code == 421:  # the server is closing the connection
                    self._drop()
                    self._drops += 1
                elif not progress.body_sent:
                    self._rset()
            return self._finish(recipient, message_id, outcome, code, text, stage, state)

    def _use_pipelining(self, smtp: smtplib.SMTP) -> bool:
        if self.pipelining is not None:
            return self.pipelining
        return bool(smtp.has_extn("pipelining"))

    def _transaction(
        self,
        smtp: smtplib.SMTP,
        address: str,
        data: bytes,
        progress: _Progress,
        while_waiting: Callable[[], None] | None = None,
    ) -> tuple[int, bytes]:
        """MAIL, RCPT, DATA and the body; the first reply that is not a go-ahead ends it.

        With PIPELINING (RFC 2920) the three commands leave in one write and their replies are
        read in order: two round trips per message instead of four. The replies still owed
        after a refusal are read (the server sends them), unless the server is closing (421).
        """
        if not self._use_pipelining(smtp):
            code, reply = smtp.mail(self.settings.from_address)
            if code != 250:
                return code, reply
            progress.stage = "rcpt"
            code, reply = smtp.rcpt(address)
            if code not in (250, 251):
                return code, reply
            progress.stage = "data"
            smtp.putcmd("data")
            code, reply = smtp.getreply()
            if code != 354:
                return code, reply
        else:
            smtp.send(
                f"MAIL FROM:<{self.settings.from_address}>\r\nRCPT TO:<{address}>\r\nDATA\r\n"
            )
            for index, (stage, accepted) in enumerate(_PIPELINED_STEPS):
                progress.stage = stage
                code, reply = smtp.getreply()
                if code not in accepted:
                    if code != 421:
                        self._read_owed_replies(smtp, 2 - index)
                    return code, reply
        progress.body_sent = True
        return _send_body(smtp, data, while_waiting)

    def _read_owed_replies(self, smtp: smtplib.SMTP, count: int) -> None:
        try:
            for _ in range(count):
                smtp.getreply()
        except Exception:  # noqa: BLE001 - the server hung up after refusing: reconnect next time
            self._drop()

    def _finish(
        self,
        recipient: Recipient,
        message_id: str,
        outcome: Outcome,
        code: int | None,
        text: str,
        stage: Stage,
        state: _BatchState,
    ) -> SendResult:
        if outcome == "paused":
            state.halt = _Halt("paused", code, text)
        return self._result(recipient, message_id, outcome, code, text, stage=stage)

    def _result(
        self,
        recipient: Recipient,
        message_id: str | None,
        outcome: Outcome,
        code: int | None,
        text: str,
        *,
        stage: Stage,
    ) -> SendResult:
        if outcome != "sent":
            log.info(
                "smtp.not_sent",
                campaign_id=self.context.campaign_id,
                delivery_id=recipient.delivery_id,
                outcome=outcome,
                stage=stage,
                code=code,
                reply=text[:300],
            )
        return SendResult(
            delivery_id=recipient.delivery_id,
            outcome=outcome,
            code=code,
            text=text[:1000],
            message_id=message_id,
            data={"stage": stage} if outcome != "sent" else {},
        )

    def _rset(self) -> None:
        """RSET after a refused transaction; a dead connection is dropped (reconnect next time)."""
        if self._smtp is None:
            return
        try:
            self._smtp.rset()
        except Exception:  # noqa: BLE001
            self._drop()


def make_smtp_channel(settings: Settings, context: CampaignContext) -> SmtpChannel:
    """Factory used by dispatch.channels.make_channel("email", …)."""
    return SmtpChannel(settings, context)
