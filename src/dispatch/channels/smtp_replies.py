"""SMTP reply classification: the ONE table that decides sent / deferred / bounced / failed /
paused.

Why its own module: the channel, the relays (one per provider) and the bounce parser all need
the same reading of a reply code and its RFC 3463 enhanced status; none of them should have
to import a connection to get it.
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
from typing import Any, Literal

from dispatch.channels.base import Outcome

__all__ = [
    "AUTH_CODES",
    "Stage",
    "classify_smtp_error",
    "classify_smtp_reply",
    "classify_for_provider",
    "decode_reply",
    "enhanced_code",
    "is_connection_fault",
]

Stage = Literal["connect", "helo", "auth", "mail", "rcpt", "data"]

# ---------------------------------------------------------------------------------------------
# Classification of SMTP replies: the ONE place that decides sent / deferred / bounced / failed /
# paused. Rules, first match wins:
#
#  #  reply                                              outcome   why
#  1  2xx, 3xx                                           sent      accepted (354 only mid-DATA)
#  2  530, 534, 535, 538 (any stage)                     paused    our authentication is missing
#                                                                  or wrong: every message fails
#  3  4xx/5xx whose text speaks of a rate or volume      throttled the server throttles *us*
#     limit ("rate limit", "too many messages",                    (421 4.7.0, 450/451 4.7.x,
#     "throttled", "sending quota", "slow down")                   5.7.x "rate"): hold the message,
#                                                                  slow down only that provider
#                                                                  (or relay, before RCPT)
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
    r"\bauth\b|authenticat|sender|relay|\bspf\b|dmarc|not permitted to send|not authori[sz]ed to "
    r"send"
    r"|client host|blocked using|blocklist|blacklist|spamhaus|mail from",
    re.I,
)
_CONTENT_TEXT = re.compile(r"spam|virus|malware|content|message (is )?too (big|large)|size", re.I)


def decode_reply(raw: bytes) -> str:
    """A reply's text as sent: UTF-8, else GB18030 (Chinese servers answer in it), else
    UTF-8 with replacement characters; never an exception. A NUL becomes U+FFFD: PostgreSQL
    text cannot hold it, and a reply that carried one failed its whole chunk's recording."""
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding).replace("\x00", "\ufffd")
        except UnicodeDecodeError:
            continue
    return raw.decode("utf-8", "replace").replace("\x00", "\ufffd")


def classify_for_provider(
    code: int | None, text: str, *, stage: Stage, provider: Any = None
) -> tuple[Outcome, str]:
    """The provider's own reply rules first (dispatch.delivery.providers), then the generic
    table above. Returns (outcome, which rule decided: "netease: HL:IFC" or "generic")."""
    if provider is not None and code is not None and code >= 400:
        rule = provider.rule_for(code, text)
        if rule is not None:
            outcome: Outcome = {
                "throttle": "throttled",
                "sender": "paused",
                "deferred": "deferred",
                "bounced": "bounced",
                "failed": "failed",
            }[rule.kind]  # type: ignore[assignment]
            return outcome, f"{provider.name}: {rule.pattern}"
    return classify_smtp_reply(code, text, stage=stage), "generic"


def enhanced_code(text: str) -> tuple[int, int, int] | None:
    """The RFC 3463 enhanced status code (e.g. 5.7.1) at the start of a reply text, if any."""
    match = _ENHANCED.search(text[:32])
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def classify_smtp_reply(
    code: int | None, text: str | bytes = "", *, stage: Stage = "rcpt"
) -> Outcome:
    """Map one SMTP reply to an outcome (see the rule table above)."""
    if isinstance(text, bytes):
        text = decode_reply(text)
    if code is None or not 100 <= code <= 599:
        return Outcome.DEFERRED  # rule 9
    klass = code // 100
    if klass in (2, 3):
        return Outcome.SENT  # rule 1
    if code in AUTH_CODES:
        return Outcome.PAUSED  # rule 2
    if klass in (4, 5) and _RATE_TEXT.search(text):
        return Outcome.THROTTLED  # rule 3
    enhanced = enhanced_code(text)
    if klass == 5 and enhanced and enhanced[1] == 7 and _SENDER_TEXT.search(text):
        return Outcome.PAUSED  # rule 4
    if klass == 5 and stage in ("connect", "helo", "auth", "mail"):
        return Outcome.PAUSED  # rule 5
    if klass == 4:
        return Outcome.DEFERRED  # rule 6
    if klass == 5:
        if stage == "data" and (
            (enhanced and (enhanced[1] == 6 or enhanced[1:] in ((3, 4), (2, 3))))
            or _CONTENT_TEXT.search(text)
        ):
            return Outcome.FAILED  # rule 7
        return Outcome.BOUNCED  # rule 8
    return Outcome.DEFERRED  # rule 9


def classify_smtp_error(exc: BaseException, stage: Stage) -> tuple[Outcome, int | None, str]:
    """Map an exception raised while talking SMTP to (outcome, code, text)."""
    if isinstance(exc, smtplib.SMTPResponseException):
        text = (
            decode_reply(exc.smtp_error)
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
        return Outcome.PAUSED, None, f"server does not support a configured feature: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Outcome.PAUSED, None, f"TLS certificate rejected: {exc.verify_message}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):  # smtplib wraps read timeouts in it
        if "timed out" in str(exc):
            return Outcome.DEFERRED, None, f"timeout ({stage})"
        return Outcome.DEFERRED, None, f"connection lost ({stage}): {exc}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return Outcome.DEFERRED, None, f"timeout ({stage})"
    if isinstance(exc, OSError):
        return Outcome.DEFERRED, None, f"connection error ({stage}): {exc.strerror or exc}"
    return Outcome.DEFERRED, None, f"{type(exc).__name__} ({stage}): {exc}"


def is_connection_fault(exc: BaseException) -> bool:
    """A dropped or unreachable connection (reconnect), not a reply the server chose to give."""
    return isinstance(exc, smtplib.SMTPServerDisconnected | OSError) and not isinstance(
        exc,
        smtplib.SMTPResponseException
        | smtplib.SMTPNotSupportedError
        | ssl.SSLCertVerificationError,
    )
