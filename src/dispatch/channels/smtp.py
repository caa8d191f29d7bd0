"""The email channel: one SMTP connection per batch, one transaction per recipient.

Three modules make the email channel: `smtp_conversation` speaks SMTP (endpoint, login, one
MAIL / RCPT / DATA transaction), `smtp_replies` is the table that turns a reply into an
outcome, and this module ties them to campaigns: which recipient, which message
(`email_source`), which envelope sender, and what to do after each reply.

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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dispatch.channels.base import (
    CampaignContext,
    ChannelTraits,
    Outcome,
    Recipient,
    SendResult,
)
from dispatch.channels.email_message import is_plain_address
from dispatch.channels.email_source import (
    CampaignSourceError,
    EmailCampaignSource,
    build_campaign_source,
    load_campaign_source,
    load_source_from_database,
)
from dispatch.channels.smtp_conversation import (
    Envelope,
    Progress,
    SmtpConversation,
    SmtpEndpoint,
    parse_smtp_url,
    smtp_data,
)
from dispatch.channels.smtp_replies import (
    Stage,
    classify_for_provider,
    classify_smtp_error,
    classify_smtp_reply,
    decode_reply,
    enhanced_code,
    is_connection_fault,
)
from dispatch.config import Settings
from dispatch.i18n import Catalog
from dispatch.log import get_logger
from dispatch.tokens import verp_address
from dispatch.vocabulary import Channel

# Names that used to live here, re-exported so `from dispatch.channels.smtp import …` keeps
# working; new code imports them from their own modules.
__all__ = [
    "CampaignSourceError",
    "EmailCampaignSource",
    "SmtpChannel",
    "SmtpEndpoint",
    "build_campaign_source",
    "classify_smtp_error",
    "classify_smtp_reply",
    "enhanced_code",
    "load_campaign_source",
    "parse_smtp_url",
    "smtp_data",
]

log = get_logger(__name__)

MESSAGES = Catalog(
    {
        "dropped_twice": (
            "SMTP 连接在本批次中再次断开",
            "SMTP connection dropped again in this batch",
        ),
        "build_failed": ("无法生成邮件：{error}", "cannot build the message: {error}"),
    }
)


@dataclass
class _Halt:
    """Why the rest of the batch is not attempted (sender refused, connection lost twice)."""

    outcome: Outcome
    code: int | None
    text: str
    stage: str = ""  # where the halting reply came (connect … data): the relay's fault or not


@dataclass
class _BatchState:
    halt: _Halt | None = None
    counts: dict[str, int] = field(default_factory=dict)
    # providers that said "slow down" in this send: their other recipients are held, untried
    throttled: dict[str, _Halt] = field(default_factory=dict)


class SmtpChannel:
    """Channel protocol over SMTP: open() once, send(batch) per recipient, close()."""

    name = Channel.EMAIL
    # one message per recipient; batches and chunks as configured; opens (pixel) and clicks
    # (tracked links) when the campaign tracks
    traits = ChannelTraits(address="email", opens=True, clicks=True, relays=True)
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
        self._source_loader = source_loader or load_source_from_database
        self.pipelining = pipelining  # None: when the server advertises PIPELINING
        self._conn: SmtpConversation | None = None
        self._endpoint: SmtpEndpoint | None = None
        self._connect_error: tuple[Outcome, int | None, str] | None = None
        self._drops = 0  # dropped connections since open(): one reconnect per batch
        self._helo_name = settings.from_address.rpartition("@")[2] or "localhost"

    @staticmethod
    def prepare_campaign(settings: Settings, context: CampaignContext) -> None:
        """Render and encode the campaign once in this process, before a batch is claimed
        (dispatch.channels.prepare_channel calls it; the source is cached per process)."""
        load_source_from_database(settings, context)

    # -- connection ---------------------------------------------------------------------------

    def endpoint(self) -> SmtpEndpoint:
        relay = self.context.relay
        if self._endpoint is None and relay is not None:
            self._endpoint = SmtpEndpoint(
                host=relay.host,
                port=relay.port,
                security=relay.security,
                cafile=relay.cafile,
                verify=not relay.allow_invalid_certificate,
            )
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
        if self._conn is None:
            self._connect_error = self._connect()

    def _connect(self) -> tuple[Outcome, int | None, str] | None:
        """Connect, STARTTLS and AUTH as configured; None on success, else (outcome, code, text)."""
        progress = Progress(stage="connect")
        try:
            self._conn = SmtpConversation.open(
                self.endpoint(),
                helo_name=self._helo_name,
                timeout=self.settings.smtp_timeout,
                username=self._relay_attr("username", self.settings.smtp_username),
                password=self._relay_attr("password", self.settings.smtp_password),
                pipelining=self.pipelining,
                progress=progress,
            )
        except ValueError as exc:  # bad smtp_url or unusable credentials: a configuration problem
            stage = progress.stage
            reason = "SMTP credentials cannot be sent (non-ASCII?)" if stage == "auth" else str(exc)
            log.error(
                "smtp.connect_failed",
                campaign_id=self.context.campaign_id,
                stage=stage,
                reason=reason,
            )
            return Outcome.PAUSED, None, reason
        except Exception as exc:  # noqa: BLE001 - every fault is classified, none escapes
            outcome, code, text = classify_smtp_error(exc, progress.stage)
            log.warning(
                "smtp.connect_failed",
                campaign_id=self.context.campaign_id,
                batch_no=self.context.batch_no,
                stage=progress.stage,
                outcome=outcome,
                code=code,
                reason=text,
            )
            return outcome, code, text
        return None

    def _relay_attr(self, name: str, default: str) -> str:
        relay = self.context.relay
        return getattr(relay, name) if relay is not None else default

    @property
    def relay_name(self) -> str | None:
        relay = self.context.relay
        return relay.name if relay is not None else None

    def _provider(self, recipient: Recipient):
        """The recipient's provider entry (its reply rules), from the shipped/overridden table."""
        from dispatch.delivery.providers import domain_of, load_providers

        table = load_providers(self.settings)
        name = recipient.provider or table.by_domain(domain_of(recipient.email))
        return table.get(name) if name else None

    def close(self) -> None:
        """QUIT politely, then close; safe to call twice."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.quit()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    # -- sending ------------------------------------------------------------------------------

    def envelope_sender(self, recipient: Recipient) -> str:
        """MAIL FROM for this recipient: where the receiving servers send bounces.

        With settings.bounce_address set it is a VERP address naming this delivery
        (`bounces+c12-3456-<sig>@bounce domain`; test sends get their own kind "t"), so a
        DSN maps to exactly one Delivery whatever its body says; otherwise the From address.
        """
        if not self.settings.bounce_address:
            return self.settings.from_address
        kind = "t" if self.context.is_test else "c"
        return verp_address(self.settings, kind, self.context.campaign_id, recipient.delivery_id)

    def source(self) -> EmailCampaignSource:
        if self._source is None:
            self._source = self._source_loader(self.settings, self.context)
        return self._source

    def send(self, batch: Sequence[Recipient]) -> list[SendResult]:
        """One result per recipient, in order; never raises for a recipient's or server's fault."""
        state = _BatchState()
        started = time.monotonic()
        source = self._source_or_halt(state)
        results: list[SendResult] = []
        built: dict[int, tuple[str, bytes] | Exception] = {}  # at most the next recipient's message

        def build(recipient: Recipient) -> tuple[str, bytes] | Exception:
            try:
                return source.message_for(recipient)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - reported as this recipient's failure
                return exc

        for index, recipient in enumerate(batch):
            held = state.throttled.get(recipient.provider or "")
            if state.halt is not None or source is None or held is not None:
                halt = state.halt or held or _Halt(Outcome.PAUSED, None, "")
                self._abandon_announced()
                result = self._not_attempted(recipient, halt)
            else:
                following = batch[index + 1] if index + 1 < len(batch) else None

                def build_following(following: Recipient | None = following) -> None:
                    if following is not None and following.delivery_id not in built:
                        built[following.delivery_id] = build(following)

                def announce(following: Recipient | None = following) -> Envelope | None:
                    return self._envelope_ahead(following, state)

                message = built.pop(recipient.delivery_id, None) or build(recipient)
                result = self._send_one(recipient, message, state, build_following, announce)
            state.counts[result.outcome] = state.counts.get(result.outcome, 0) + 1
            results.append(result)
        self._abandon_announced()
        self._log_batch(len(batch), started, state)
        return results

    def _envelope_ahead(self, following: Recipient | None, state: _BatchState) -> Envelope | None:
        """The next recipient's envelope, to leave with this message's final dot: only when
        that message is about to be tried on this line (an ASCII address, nothing halted or
        held). If this message's reply then stops it after all, the line is closed
        (`_abandon_announced`): the server would be waiting for its body."""
        if following is None or state.halt is not None or not following.email:
            return None
        if (following.provider or "") in state.throttled:
            return None
        envelope = (self.envelope_sender(following), following.email)
        # sent before that message is built (and its address checked): a plain ASCII
        # addr-spec each, so no CR/LF can reach the wire as a command of its own
        ok = all(part.isascii() and is_plain_address(part) for part in envelope)
        return envelope if ok else None

    def _abandon_announced(self) -> None:
        """An envelope went out ahead but its message will not follow now: the server waits
        for that body, and only closing the line ends a DATA phase without a message."""
        if self._conn is not None and self._conn.announced is not None:
            self._drop()

    def _source_or_halt(self, state: _BatchState) -> EmailCampaignSource | None:
        """The rendered campaign, or None; a source that cannot be built, a connection that
        failed, or one lost twice by an earlier chunk halts the whole batch (`state.halt`)."""
        try:
            source = self.source()
        except Exception as exc:  # noqa: BLE001 - cannot render: pause the campaign with the reason
            text = MESSAGES.both("build_failed", error=str(exc))
            log.error("smtp.source_failed", campaign_id=self.context.campaign_id, reason=str(exc))
            state.halt = _Halt(Outcome.PAUSED, None, text)
            source = None
        if state.halt is None and self._connect_error is not None:
            state.halt = _Halt(*self._connect_error, stage="connect")
            self._connect_error = None
        if (
            state.halt is None and self._drops > self.max_reconnects
        ):  # an earlier chunk lost it twice
            state.halt = _Halt(Outcome.DEFERRED, None, MESSAGES.both("dropped_twice"), "connect")
        return source

    def _not_attempted(self, recipient: Recipient, halt: _Halt) -> SendResult:
        return SendResult(
            recipient.delivery_id,
            halt.outcome,
            halt.code,
            halt.text,
            data={
                "stage": "not_attempted",
                "halted_at": halt.stage,
                "relay": self.relay_name,
            },
        )

    def _log_batch(self, recipients: int, started: float, state: _BatchState) -> None:
        log.info(
            "smtp.batch",
            campaign_id=self.context.campaign_id,
            batch_no=self.context.batch_no,
            recipients=recipients,
            seconds=round(time.monotonic() - started, 3),
            reconnects=self._drops,
            halted=state.halt.text if state.halt else None,
            **state.counts,
        )

    def _send_one(
        self,
        recipient: Recipient,
        message: tuple[str, bytes] | Exception,
        state: _BatchState,
        while_waiting: Callable[[], None] | None = None,
        following: Callable[[], Envelope | None] | None = None,
    ) -> SendResult:
        """One transaction, reconnecting once if the line dropped before the body went out."""
        if isinstance(message, Exception):  # this recipient's message cannot be built
            self._abandon_announced()
            return self._build_failed(recipient, message)
        message_id, data = message
        assert recipient.email is not None
        while True:
            if self._conn is None:
                error = self._connect()
                if error is not None:
                    state.halt = _Halt(*error, stage="connect")
                    return self._result(recipient, message_id, *error, stage="connect")
            conn = self._conn
            assert conn is not None
            progress = Progress()
            try:
                code, reply = conn.transaction(
                    self.envelope_sender(recipient),
                    recipient.email,
                    data,
                    progress,
                    while_waiting,
                    following,
                )
            except Exception as exc:  # noqa: BLE001 - classified here
                result = self._after_fault(recipient, message_id, exc, progress, state)
                if result is None:
                    continue  # nothing of this message went out: reconnect and send it again
                return result
            if conn.broken:
                self._drop()
            return self._after_reply(recipient, message_id, code, reply, progress, state)

    def _build_failed(self, recipient: Recipient, exc: Exception) -> SendResult:
        log.warning(
            "smtp.build_failed",
            campaign_id=self.context.campaign_id,
            delivery_id=recipient.delivery_id,
            reason=str(exc),
        )
        return SendResult(
            recipient.delivery_id,
            Outcome.FAILED,
            None,
            MESSAGES.both("build_failed", error=str(exc)),
        )

    def _after_reply(
        self,
        recipient: Recipient,
        message_id: str,
        code: int | None,
        reply: bytes | str,
        progress: Progress,
        state: _BatchState,
    ) -> SendResult:
        """The server answered: classify (per provider), keep the line usable, record."""
        stage = progress.stage
        text = decode_reply(reply) if isinstance(reply, bytes) else str(reply)
        outcome, rule = classify_for_provider(
            code, text, stage=stage, provider=self._provider(recipient)
        )
        if outcome != Outcome.SENT:
            if code == 421:  # the server is closing the connection
                self._drop()
                if outcome != Outcome.THROTTLED:  # a throttle's hang-up is no fault of the line
                    self._drops += 1
            elif not progress.body_sent:
                self._rset()
        return self._finish(
            recipient,
            message_id,
            outcome,
            code,
            text,
            stage,
            state,
            rule=rule,
            body_sent=progress.body_sent,
        )

    def _after_fault(
        self,
        recipient: Recipient,
        message_id: str,
        exc: Exception,
        progress: Progress,
        state: _BatchState,
    ) -> SendResult | None:
        """An exception during the transaction: its result, or None to reconnect and retry
        (only when the line dropped before any of the body went out, once per batch)."""
        stage = progress.stage
        outcome, code, text = classify_smtp_error(exc, stage)
        if not is_connection_fault(exc):
            if code == 421:
                self._drop()
            else:
                self._rset()
            return self._finish(recipient, message_id, outcome, code, text, stage, state)
        self._drop()
        self._drops += 1
        if self._drops > self.max_reconnects:
            state.halt = _Halt(Outcome.DEFERRED, None, MESSAGES.both("dropped_twice"), "connect")
            return self._result(
                recipient,
                message_id,
                outcome,
                code,
                text,
                stage=stage,
                body_sent=progress.body_sent,
            )
        if progress.body_sent:  # the server may have taken it: retry later, not now
            return self._result(
                recipient, message_id, outcome, code, text, stage=stage, body_sent=True
            )
        log.info(
            "smtp.reconnect",
            campaign_id=self.context.campaign_id,
            delivery_id=recipient.delivery_id,
            reason=text,
        )
        return None

    def _finish(
        self,
        recipient: Recipient,
        message_id: str,
        outcome: Outcome,
        code: int | None,
        text: str,
        stage: Stage,
        state: _BatchState,
        *,
        rule: str = "",
        body_sent: bool = False,
    ) -> SendResult:
        if outcome == Outcome.PAUSED:
            state.halt = _Halt(Outcome.PAUSED, code, text, stage)
        elif outcome == Outcome.THROTTLED:
            if stage in ("connect", "helo", "auth", "mail"):  # the relay itself slows us down
                state.halt = _Halt(Outcome.THROTTLED, code, text, stage)
            else:  # the recipient's provider does: hold only its other recipients
                state.throttled[recipient.provider or ""] = _Halt(Outcome.THROTTLED, code, text)
        return self._result(
            recipient,
            message_id,
            outcome,
            code,
            text,
            stage=stage,
            rule=rule,
            body_sent=body_sent,
        )

    def _result(
        self,
        recipient: Recipient,
        message_id: str | None,
        outcome: Outcome,
        code: int | None,
        text: str,
        *,
        stage: Stage,
        rule: str = "",
        body_sent: bool = False,
    ) -> SendResult:
        data: dict = {"relay": self.relay_name}
        if outcome != Outcome.SENT:
            data["stage"] = stage
            if rule and rule != "generic":
                data["rule"] = rule
            if body_sent:
                data["body_sent"] = True
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
            data=data,
        )

    def _rset(self) -> None:
        """RSET after a refused transaction; a dead connection is dropped (reconnect next time)."""
        if self._conn is not None and not self._conn.rset():
            self._drop()
