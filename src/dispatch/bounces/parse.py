"""Turn one raw inbound message into a normalised result: what happened, to whom, and why.

Every way in (mailbox poller, SMTP intake, file import) calls `parse_bounce(raw)`; the
webhooks build the same `BounceResult` from JSON. Order of the detectors, first match wins:

1. RFC 5965 ARF (`message/feedback-report`): a complaint.
2. RFC 3464 DSN (`message/delivery-status`): per-recipient Action / Status / Diagnostic-Code.
3. Chinese providers whose bounces are not RFC 3464 (QQ Mail / Tencent Exmail, NetEase
   163/126/yeah, Sina, Aliyun): recognised by the reporting domain, read by text rules.
4. flufl.bounce (Mailman's detectors for Exim, qmail, Exchange, Yahoo, GroupWise, ...)
   for the many other non-standard formats: it finds the addresses; the code and the
   diagnostic are then read from the text around them.
5. RFC 3834 auto-replies (`Auto-Submitted`, vacation headers and subjects): never a bounce.
6. Anything else: unknown, with the reason.

Hard or soft is decided by `classify`, from the RFC 3463 status and the diagnostic text: a
refusal that is about *us* (rate and frequency limits, spam scoring, blocklists, a full
mailbox) is soft even with a 5xx code, because it says nothing about the address being dead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Literal

__all__ = [
    "BOUNCE_KINDS",
    "MAX_PARSE_BYTES",
    "BounceResult",
    "Kind",
    "classify",
    "parse_bounce",
]

Kind = Literal["hard", "soft", "complaint", "auto_reply", "unknown"]
BOUNCE_KINDS: tuple[Kind, ...] = ("hard", "soft", "complaint", "auto_reply", "unknown")
# DSN and ARF reports come first in a message; a 20 MB original attached after them is not read
MAX_PARSE_BYTES = 1_000_000


@dataclass
class BounceResult:
    """The normalised reading of one inbound message."""

    kind: Kind
    recipients: list[str] = field(default_factory=list)
    status: str | None = None  # RFC 3463, e.g. "5.1.1"
    diagnostic: str = ""
    reporting_mta: str | None = None
    original_message_id: str | None = None
    detector: str = "none"  # dsn, arf, tencent, netease, sina, aliyun, flufl.bounce, auto-reply
    reason: str = ""  # why unknown / ignored; empty when understood
    # addresses that may carry our VERP token: envelope recipients, To / Delivered-To, the
    # DSN's X-Postfix-Sender, the ARF's Original-Mail-From, the returned message's Return-Path
    verp_candidates: list[str] = field(default_factory=list)
    feedback_type: str | None = None  # ARF: abuse, fraud, ...
    truncated: bool = False  # only the first MAX_PARSE_BYTES were read

    @property
    def recipient(self) -> str | None:
        return self.recipients[0] if self.recipients else None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "recipient": self.recipient,
            "recipients": list(self.recipients),
            "status": self.status,
            "diagnostic": self.diagnostic,
            "reporting_mta": self.reporting_mta,
            "original_message_id": self.original_message_id,
            "detector": self.detector,
            "reason": self.reason,
        }


# ---------------------------------------------------------------------------------------------
# Hard or soft
# ---------------------------------------------------------------------------------------------

# refusals about us (our IP, volume, content), not the address: soft whatever the code says
_ABOUT_US = re.compile(
    r"frequency limit|rate limit|rate-limit|too many|throttl|try again later|reputation"
    r"|spam|junk|unsolicited|block ?list|black ?list|blacklisted|\brbl\b|blocked|spamhaus"
    r"|access deni?e?n?i?ed|unavailable or access|suspected|connection (denied|refused)"
    r"|content (denied|rejected)|relay access denied|not permitted to relay|greylist|graylist"
    r"|\bDT:SPM\b|\bDT:SUM\b|\bMI:(SFQ|STC|SPB|NHD)\b|\bHL:(IHU|IPB|MEP|ICC)\b"
    r"|\bRP:(RCL|TRC|QRC|CEL)\b|IP in blacklist|\bspf\b|\bdkim\b|\bdmarc\b"
    r"|频率|频繁|垃圾邮件|拦截|黑名单",
    re.I,
)
# temporary conditions of the mailbox or the moment: soft unless the address is also dead
_SOFT_TEXT = re.compile(
    r"temporar|deferr|mailbox (is )?full|quota|insufficient (system )?storage|out of storage"
    r"|exceed(ed|s)? (the )?(storage|size|mailbox)|storage space|message too (large|big)"
    r"|size limit|policy|暂时|稍后|空间不足|容量|已满|限制",
    re.I,
)
# refusals that say the address itself is dead
_HARD_TEXT = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does ?n[o']t exist"
    r"|not exist|mailbox not found|user not found|recipient not found|address not found"
    r"|invalid (recipient|mailbox|address)|recipient (address )?rejected|address rejected"
    r"|unknown (recipient|address|mailbox)|mailbox unavailable|no mailbox|account (is )?disabled"
    r"|deactivated|account (has been )?(closed|expired|suspended)|user suspended|inactive"
    r"|unrouteable|host or domain name not found|domain (does not|doesn't) exist|no mx"
    r"|name service error|bad destination|undeliverable address|unknown local part"
    r"|bad address syntax|not listed in (the )?(domino )?directory|no such account"
    r"|用户不存在|收件人不存在|地址不存在|帐[户号]不存在|账[户号]不存在|邮箱不存在|无此用户"
    r"|用户名不存在|不存在的|已注销|已停用|已冻结",
    re.I,
)
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"(?<!\d)([245]\d\d)(?:[ -]|$)")


def enhanced_status(text: str, *, last: bool = False) -> str | None:
    """An RFC 3463 code in a text, e.g. "5.1.1": the first, or the last (the innermost of a
    relay's wrapped reply, e.g. SES's `5.1.0 - Unknown address error 550-'5.2.2 ... Full'`)."""
    matches = _ENHANCED.findall(text or "")
    if not matches:
        return None
    match = matches[-1] if last else matches[0]
    return ".".join(match)


def classify(status: str | None, diagnostic: str) -> Kind:
    """Hard or soft for one failed recipient, from its status code and the server's words.

    Order: a 4.x.x status or 4xx reply is soft; a specific status decides (5.1.x bad
    mailbox/domain and 5.2.1 disabled are hard, 5.2.2 full and 5.2.3 too big soft); then
    the words: a refusal about us (rate or frequency limits, spam, blocklists: QQ's
    "frequency limited", NetEase's DT:SPM) is soft, one about the address hard, a full
    mailbox soft; then the status class (5.3-5.7: system, network, protocol, content,
    policy: soft); else hard.
    """
    text = diagnostic or ""
    klass = status[0] if status else None
    if klass is None:
        basic = _BASIC.search(text)
        klass = basic[1][0] if basic else None
    if klass == "4":
        return "soft"
    subject, detail = "0", "0"
    if status:
        _, subject, detail = (status.split(".") + ["0", "0"])[:3]
    if (subject == "1" and detail != "0") or (subject, detail) == ("2", "1"):
        return "hard"
    if (subject, detail) in (("2", "2"), ("2", "3")):
        return "soft"
    if _ABOUT_US.search(text):
        return "soft"
    if _SOFT_TEXT.search(text) and not _HARD_TEXT.search(text):
        return "soft"
    if _HARD_TEXT.search(text):
        return "hard"
    if (subject, detail) == ("4", "7") or subject in ("3", "5", "6", "7"):
        return "soft"
    return "hard"


# ---------------------------------------------------------------------------------------------
# Helpers over email.message
# ---------------------------------------------------------------------------------------------


def _header(msg: Message, name: str) -> str:
    value = msg.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):  # email.header.Header for undecodable bytes
        value = str(value)
    return " ".join(value.split())


def _field_value(value: str) -> str:
    """`rfc822; someone@example.org` -> `someone@example.org` (a DSN field's address type off)."""
    value = " ".join((value or "").split())
    kind, sep, rest = value.partition(";")
    return rest.strip() if sep and len(kind) < 16 else value


def _clean_address(value: str) -> str | None:
    value = _field_value(value).strip()
    if "@" not in value or " " in value or "<" in value:
        _, value = parseaddr(value)
    value = value.strip().strip("<>").strip().lower()
    if "@" not in value or " " in value or len(value) > 320:
        return None
    return value


def _text_of(part: Message, limit: int = 200_000) -> str:
    """A text part decoded (charset honoured, GB18030 for GB2312/GBK, undecodable bytes
    replaced)."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encoding: take it as it is
        payload = None
    if payload is None:
        raw = part.get_payload()
        return raw[:limit] if isinstance(raw, str) else ""
    charset = (part.get_content_charset() or "utf-8").lower()
    if charset in ("gb2312", "gbk", "gb_2312-80", "x-gbk", "cp936"):
        charset = "gb18030"
    try:
        return payload[:limit].decode(charset, "replace")
    except LookupError:
        return payload[:limit].decode("utf-8", "replace")


_TAG = re.compile(r"<[^>]{0,2000}>")


def _plain(text: str) -> str:
    """HTML tags off (bounce bodies of some providers are HTML only)."""
    if "<" in text and ("</" in text or "<br" in text.lower()):
        text = _TAG.sub(" ", text.replace("&nbsp;", " ").replace("&lt;", "<").replace("&gt;", ">"))
        text = text.replace("&amp;", "&")
    return text


def _body_text(msg: Message, limit: int = 200_000) -> str:
    """The human-readable text of a message: its text parts, not the returned original."""
    out: list[str] = []
    size = 0

    def walk(part: Message) -> None:
        nonlocal size
        if size >= limit:
            return
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            return
        if part.is_multipart():
            payload = part.get_payload()
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    walk(sub)
            return
        if part.get_content_maintype() == "text":
            text = _plain(_text_of(part, limit - size))
            size += len(text)
            out.append(text)

    walk(msg)
    return "\n".join(out)


def _returned_headers(msg: Message) -> Message | None:
    """The returned original message (or its headers) attached to a report, if any."""
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            text = _text_of(part)
            return BytesParser(policy=compat32).parsebytes(
                text.encode("utf-8", "replace"), headersonly=True
            )
    return None


_BOUNCER = re.compile(r"mailer-daemon|postmaster|mail delivery (system|subsystem)", re.I)


def _is_bounce_message(msg: Message) -> bool:
    """Does this message look like a bounce or report itself (used to spot loops)?"""
    ctype = msg.get_content_type()
    if ctype == "multipart/report":
        return True
    sender = _header(msg, "From")
    return bool(_BOUNCER.search(sender)) and bool(
        re.search(r"undeliver|returned|failure|delivery status|退信", _header(msg, "Subject"), re.I)
    )


def _verp_candidates(msg: Message, envelope_to: Sequence[str]) -> list[str]:
    found: list[str] = [a for a in envelope_to if a]
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in msg.get_all(name) or []:
            for _, address in getaddresses([str(value)]):
                if address:
                    found.append(address)
    return found


# ---------------------------------------------------------------------------------------------
# 1. ARF complaints (RFC 5965)
# ---------------------------------------------------------------------------------------------


# RFC 5965 feedback types that mean "a recipient did not want this"; auth-failure (RFC 6591
# DMARC forensic reports) and not-spam are recorded but are not complaints
COMPLAINT_FEEDBACK_TYPES = frozenset({"abuse", "fraud", "virus", "other", "opt-out"})


def _parse_arf(msg: Message, report: Message) -> BounceResult:
    fields = report
    payload = report.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        fields = payload[0]  # email parses the report's fields as one header block
    elif isinstance(payload, str):
        fields = BytesParser(policy=compat32).parsebytes(
            payload.encode("utf-8", "replace"), headersonly=True
        )
    feedback = _header(fields, "Feedback-Type").lower() or "abuse"
    complaint = feedback in COMPLAINT_FEEDBACK_TYPES
    original = _returned_headers(msg)
    recipients = [
        a for a in (_clean_address(v) for v in fields.get_all("Original-Rcpt-To") or []) if a
    ]
    if not recipients and original is not None:
        recipients = [
            a.lower() for _, a in getaddresses([_header(original, "To")]) if "@" in (a or "")
        ]
    result = BounceResult(
        kind="complaint" if complaint else "unknown",
        recipients=recipients,
        diagnostic=f"feedback-type: {feedback}; user-agent: {_header(fields, 'User-Agent')}",
        reporting_mta=_field_value(_header(fields, "Reporting-MTA")) or None,
        original_message_id=_header(original, "Message-ID") if original is not None else None,
        detector="arf",
        feedback_type=feedback,
        reason=""
        if complaint
        else f"a {feedback} report (e.g. a DMARC failure report) is not a complaint",
    )
    for value in fields.get_all("Original-Mail-From") or []:
        result.verp_candidates.append(_field_value(str(value)))
    if original is not None:
        result.verp_candidates.append(_header(original, "Return-Path"))
    return result


# ---------------------------------------------------------------------------------------------
# 2. DSNs (RFC 3464)
# ---------------------------------------------------------------------------------------------


def _dsn_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, Message)]
    if isinstance(payload, str):  # a report email could not split: split it ourselves
        blocks = re.split(r"\r?\n\s*\r?\n", payload.strip())
        parser = BytesParser(policy=compat32)
        return [
            parser.parsebytes(b.encode("utf-8", "replace"), headersonly=True)
            for b in blocks
            if b.strip()
        ]
    return []


def _parse_dsn(msg: Message, report: Message) -> BounceResult:
    blocks = _dsn_blocks(report)
    per_message = blocks[0] if blocks else Message()
    failed: list[tuple[str, str | None, str, str]] = []  # (address, status, diagnostic, action)
    actions: set[str] = set()
    for block in blocks[1:] or blocks[:1]:
        address = _clean_address(_header(block, "Final-Recipient")) or _clean_address(
            _header(block, "Original-Recipient")
        )
        if not address:
            continue
        action = _header(block, "Action").lower()
        actions.add(action)
        diagnostic = _field_value(_header(block, "Diagnostic-Code"))
        status = enhanced_status(_header(block, "Status"))
        detailed = enhanced_status(diagnostic, last=True)
        if (
            detailed
            and (status is None or status.endswith(".0.0"))
            and detailed[0] == (status or detailed)[0]
        ):
            status = detailed
        if action in ("failed", "delayed") or (not action and status and status[0] in "45"):
            failed.append((address, status, diagnostic, action or "failed"))
    result = BounceResult(
        kind="unknown",
        reporting_mta=_field_value(_header(per_message, "Reporting-MTA")) or None,
        detector="dsn",
    )
    original = _returned_headers(msg)
    if original is not None:
        result.original_message_id = _header(original, "Message-ID") or None
        result.verp_candidates.append(_header(original, "Return-Path"))
    for name in ("X-Postfix-Sender", "Original-Envelope-Id"):
        value = _header(per_message, name)
        if value:
            result.verp_candidates.append(_field_value(value))
    hard_or_soft = [f for f in failed if f[3] == "failed"]
    if not hard_or_soft:
        if failed:  # only "delayed": a warning that delivery is still being tried
            address, status, diagnostic, _ = failed[0]
            result.recipients = [address]
            result.status, result.diagnostic = status, diagnostic
            result.reason = "delay notice (Action: delayed): still being retried, not a bounce"
        else:
            result.reason = (
                f"delivery report without a failure (Action: {', '.join(sorted(actions))})"
                if actions
                else "delivery report names no recipient"
            )
        return result
    address, status, diagnostic, _ = hard_or_soft[0]
    result.recipients = [f[0] for f in hard_or_soft]
    result.status = status
    result.diagnostic = diagnostic or _diagnostic_near(_body_text(msg, 20_000), address)
    result.kind = classify(status, result.diagnostic)
    return result


# ---------------------------------------------------------------------------------------------
# 3. Chinese providers (not RFC 3464)
# ---------------------------------------------------------------------------------------------

# From-address domains of the providers' own bounce senders
_PROVIDERS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "tencent",
        re.compile(r"@(\w+\.)*(qq\.com|exmail\.qq\.com|tencent\.com|foxmail\.com)\b", re.I),
    ),
    (
        "netease",
        re.compile(r"@(\w+\.)*(163\.com|126\.com|yeah\.net|netease\.com|188\.com)\b", re.I),
    ),
    ("sina", re.compile(r"@(\w+\.)*(sina\.com|sina\.cn|sina\.net|vip\.sina\.com)\b", re.I)),
    ("aliyun", re.compile(r"@(\w+\.)*(aliyun\.com|alibaba-inc\.com|mxhichina\.com)\b", re.I)),
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+=/'-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24}")
_RECIPIENT_LABEL = re.compile(
    r"(?:收件人|收信人|收件地址|接收人|Recipient|Original recipient|To)\s*[:：]?\s*"
    r"<?(?P<addr>[A-Za-z0-9._%+=/'-]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,24})>?",
    re.I,
)
_REASON_LABEL = re.compile(
    r"(?:退信原因|失败原因|原因|错误原因|Reason|Error|Diagnostic)\s*[:：]\s*(?P<why>[^\n]{1,400})",
    re.I,
)


def _diagnostic_near(text: str, address: str | None) -> str:
    """The server's words about a failure: a labelled reason, the line with an SMTP code
    next to the address, or the address's own line."""
    labelled = _REASON_LABEL.search(text)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if address:
        lowered = address.lower()
        for index, line in enumerate(lines):
            if lowered in line.lower():
                window = " ".join(lines[index : index + 4])
                if _BASIC.search(window) or enhanced_status(window):
                    return window[:1000]
    if labelled:
        return labelled["why"].strip()[:1000]
    for line in lines:
        if enhanced_status(line) or re.match(r"^[45]\d\d[ -]", line):
            return line[:1000]
    return ""


def _parse_provider(msg: Message, provider: str, own: set[str]) -> BounceResult | None:
    text = _body_text(msg)
    recipients: list[str] = []
    for match in _RECIPIENT_LABEL.finditer(text):
        address = match["addr"].lower()
        if address not in own and address not in recipients:
            recipients.append(address)
    if not recipients:
        for match in _EMAIL.finditer(text):
            address = match[0].lower().strip(".")
            if (
                address in own
                or _PROVIDERS_BY_NAME[provider].search(address)
                and ("postmaster" in address or "mailer-daemon" in address)
            ):
                continue
            if address not in recipients:
                recipients.append(address)
    if not recipients:
        return None
    diagnostic = _diagnostic_near(text, recipients[0])
    status = enhanced_status(diagnostic)
    if status is None:
        basic = _BASIC.search(diagnostic)
        status = f"{basic[1][0]}.0.0" if basic else None
    return BounceResult(
        kind=classify(status, diagnostic),
        recipients=recipients[:1],
        status=status,
        diagnostic=diagnostic,
        reporting_mta=parseaddr(_header(msg, "From"))[1].rpartition("@")[2] or None,
        detector=provider,
    )


_PROVIDERS_BY_NAME = dict(_PROVIDERS)


# ---------------------------------------------------------------------------------------------
# 5. RFC 3834 auto-replies
# ---------------------------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|auto:|out of (the )?office|ooo\b|vacation"
    r"|away from|absence|自动回复|自动答复|休假|不在办公室)",
    re.I,
)


def _auto_reply(msg: Message) -> bool:
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto != "no":
        return True
    if any(msg.get(h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress")):
        if msg.get("X-Autoreply") or msg.get("X-Autorespond"):
            return True
    if _header(msg, "Precedence").lower() == "auto_reply":
        return True
    return bool(_AUTO_SUBJECT.search(_header(msg, "Subject")))


# ---------------------------------------------------------------------------------------------
# The entry point
# ---------------------------------------------------------------------------------------------


def _find_part(msg: Message, types: Iterable[str]) -> Message | None:
    wanted = set(types)
    for part in msg.walk():
        if part.get_content_type() in wanted:
            return part
    return None


def parse_bounce(
    raw: bytes, *, envelope_to: Sequence[str] = (), own_addresses: Iterable[str] = ()
) -> BounceResult:
    """Read one inbound message. Never raises for bad input: the result is `unknown` with
    the reason. `own_addresses` (our From and bounce addresses) are never taken for a
    failed recipient."""
    truncated = len(raw) > MAX_PARSE_BYTES
    try:
        msg = BytesParser(policy=compat32).parsebytes(raw[:MAX_PARSE_BYTES])
    except Exception as exc:  # noqa: BLE001 - the email package is lenient; this is a last resort
        return BounceResult(kind="unknown", reason=f"cannot parse the message: {exc}")
    try:
        result = _parse(msg, set(a.lower() for a in own_addresses))
    except Exception as exc:  # noqa: BLE001 - a malformed report must not stop the mailbox
        result = BounceResult(kind="unknown", reason=f"cannot read the report: {exc!r}"[:500])
    result.verp_candidates = _verp_candidates(msg, envelope_to) + [
        c for c in result.verp_candidates if c
    ]
    result.truncated = truncated
    if truncated and result.kind == "unknown" and not result.reason:
        result.reason = f"message larger than {MAX_PARSE_BYTES} bytes; only its start was read"
    return result


def _parse(msg: Message, own: set[str]) -> BounceResult:
    feedback = _find_part(msg, ("message/feedback-report",))
    if feedback is not None:
        return _parse_arf(msg, feedback)
    report = _find_part(msg, ("message/delivery-status", "message/global-delivery-status"))
    if report is not None:
        result = _parse_dsn(msg, report)
        return _check_loop(msg, result, own)
    sender = _header(msg, "From") + " " + _header(msg, "Sender")
    looks_like_bounce = (
        bool(_BOUNCER.search(sender))
        or not _header(msg, "Return-Path").strip("<> ")
        and bool(msg.get("Return-Path"))
    )
    for provider, pattern in _PROVIDERS:
        if pattern.search(sender) and (
            looks_like_bounce
            or re.search(r"退信|退回|undeliver|failure|returned", _header(msg, "Subject"), re.I)
        ):
            result = _parse_provider(msg, provider, own)
            if result is not None:
                return _check_loop(msg, result, own)
    if not _auto_reply(msg) or looks_like_bounce:
        result = _parse_flufl(msg, own)
        if result is not None:
            return _check_loop(msg, result, own)
    if _auto_reply(msg):
        return BounceResult(
            kind="auto_reply",
            recipients=[a for a in [_clean_address(_header(msg, "From"))] if a and a not in own],
            diagnostic=_header(msg, "Subject")[:300],
            detector="auto-reply",
            reason="automatic reply (RFC 3834), not a bounce",
        )
    return BounceResult(kind="unknown", reason="not a bounce, complaint or auto-reply")


def _parse_flufl(msg: Message, own: set[str]) -> BounceResult | None:
    from flufl.bounce import all_failures

    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # noqa: BLE001 - a detector tripped over a broken message
        return None
    addresses = []
    for raw_address in sorted(permanent) + sorted(temporary - permanent):
        address = _clean_address(raw_address.decode("utf-8", "replace"))
        if address and address not in own and address not in addresses:
            addresses.append(address)
    if not addresses:
        return None
    text = _body_text(msg)
    diagnostic = _diagnostic_near(text, addresses[0])
    status = enhanced_status(diagnostic)
    if status is None:
        basic = _BASIC.search(diagnostic)
        status = f"{basic[1][0]}.0.0" if basic else None
    permanent_first = (
        _clean_address(sorted(permanent)[0].decode("utf-8", "replace")) if permanent else None
    )
    kind = classify(status, diagnostic)
    if permanent_first is None and kind == "hard" and not _HARD_TEXT.search(diagnostic):
        kind = "soft"  # flufl.bounce saw only a temporary failure
    return BounceResult(
        kind=kind,
        recipients=addresses[:1],
        status=status,
        diagnostic=diagnostic,
        reporting_mta=parseaddr(_header(msg, "From"))[1].rpartition("@")[2] or None,
        original_message_id=_header(_returned_headers(msg) or Message(), "Message-ID") or None,
        detector="flufl.bounce",
    )


def _check_loop(msg: Message, result: BounceResult, own: set[str]) -> BounceResult:
    """A bounce of a bounce (or of mail to our own bounce address) is a loop: ignored."""
    original = _returned_headers(msg)
    returned_a_bounce = original is not None and _is_bounce_message(original)
    to_ourselves = any(
        r in own or "+" in r and r.split("+")[0] + "@" + r.rpartition("@")[2] in own
        for r in result.recipients
    )
    if returned_a_bounce or to_ourselves:
        return BounceResult(
            kind="unknown",
            recipients=result.recipients,
            status=result.status,
            diagnostic=result.diagnostic,
            reporting_mta=result.reporting_mta,
            original_message_id=result.original_message_id,
            detector=result.detector,
            reason="mail loop: the returned message is itself a bounce"
            if returned_a_bounce
            else "mail loop: the failed recipient is our own address",
            verp_candidates=result.verp_candidates,
        )
    return result
