"""Provider webhooks turned into the same `BounceResult`s the mail parser makes.

Amazon SES reports bounces and complaints through SNS: every SNS message is signed (RSA with
SHA1 for SignatureVersion 1, SHA256 for 2) by a certificate served from an `sns.<region>.
amazonaws.com[.cn]` HTTPS URL; we verify that signature and that the topic is one we accept
(`ses_topic_arns`) before anything is stored, and confirm a subscription by fetching its
SubscribeURL (same host rule). The generic webhook is for relays that can call one: the body
is JSON, signed as `X-Dispatch-Signature: sha256=HEX(HMAC(secret, timestamp + "." + body))`
with `X-Dispatch-Timestamp` inside `bounce_webhook_tolerance_seconds` of now.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from dispatch.bounces.parse import BounceResult, classify, enhanced_status

__all__ = [
    "SnsVerifier",
    "WebhookRejected",
    "generic_results",
    "ses_results",
    "verify_generic_signature",
]

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
_SIGNED_KEYS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
    "UnsubscribeConfirmation": (
        "Message",
        "MessageId",
        "SubscribeURL",
        "Timestamp",
        "Token",
        "TopicArn",
        "Type",
    ),
}


class WebhookRejected(ValueError):
    """The request is not authentic (bad signature, foreign topic, stale timestamp): 401."""


def _https_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - host checked
        return response.read(200_000)


def sns_url_allowed(url: str) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme == "https" and bool(_SNS_HOST.match(parts.hostname or ""))


@dataclass
class SnsVerifier:
    """Checks SNS signatures; `http_get` fetches certificates and confirms subscriptions."""

    topic_arns: frozenset[str]
    http_get: Callable[[str], bytes] = _https_get
    certificates: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_setting(cls, value: str, **kwargs: Any) -> SnsVerifier:
        return cls(frozenset(a.strip() for a in value.split(",") if a.strip()), **kwargs)

    def _public_key(self, url: str) -> Any:
        from cryptography import x509

        if url not in self.certificates:
            if not sns_url_allowed(url):
                raise WebhookRejected(
                    "SigningCertURL is not an https://sns.<region>.amazonaws.com URL"
                )
            self.certificates[url] = x509.load_pem_x509_certificate(self.http_get(url)).public_key()
        return self.certificates[url]

    def verify(self, message: dict[str, Any]) -> None:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        kind = message.get("Type")
        if kind not in _SIGNED_KEYS:
            raise WebhookRejected(f"unknown SNS message type {kind!r}")
        if message.get("TopicArn") not in self.topic_arns:
            raise WebhookRejected("the SNS topic is not one of ses_topic_arns")
        text = "".join(
            f"{key}\n{message[key]}\n" for key in _SIGNED_KEYS[kind] if message.get(key) is not None
        )
        version = str(message.get("SignatureVersion", "1"))
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # noqa: S303
        if algorithm is None:
            raise WebhookRejected(f"unknown SNS SignatureVersion {version!r}")
        try:
            signature = base64.b64decode(message.get("Signature") or "", validate=True)
        except ValueError:
            raise WebhookRejected("the SNS signature is not base64") from None
        key = self._public_key(str(message.get("SigningCertURL") or ""))
        try:
            key.verify(signature, text.encode(), padding.PKCS1v15(), algorithm)
        except InvalidSignature:
            raise WebhookRejected("the SNS signature does not verify") from None

    def confirm(self, message: dict[str, Any]) -> None:
        url = str(message.get("SubscribeURL") or "")
        if not sns_url_allowed(url):
            raise WebhookRejected("SubscribeURL is not an https://sns.<region>.amazonaws.com URL")
        self.http_get(url)


def _ses_header(mail: dict[str, Any], name: str) -> str | None:
    common = mail.get("commonHeaders") or {}
    if name == "Message-ID" and common.get("messageId"):
        return str(common["messageId"])
    for header in mail.get("headers") or []:
        if str(header.get("name", "")).lower() == name.lower():
            return str(header.get("value"))
    return None


def ses_results(notification: dict[str, Any]) -> list[tuple[str, BounceResult]]:
    """(per-recipient id, result) for one SES notification (the SNS Message, parsed)."""
    kind = notification.get("notificationType") or notification.get("eventType")
    mail = notification.get("mail") or {}
    message_id = _ses_header(mail, "Message-ID")
    ses_id = str(mail.get("messageId") or "")
    candidates = [str(mail.get("source") or "")]
    out: list[tuple[str, BounceResult]] = []
    if kind == "Bounce":
        bounce = notification.get("bounce") or {}
        permanent = bounce.get("bounceType") == "Permanent"
        for rcpt in bounce.get("bouncedRecipients") or []:
            diagnostic = str(rcpt.get("diagnosticCode") or bounce.get("bounceSubType") or "")
            status = enhanced_status(str(rcpt.get("status") or "")) or enhanced_status(diagnostic)
            result_kind = classify(status, diagnostic) if permanent else "soft"
            out.append(
                (
                    f"ses:{ses_id}:bounce:{rcpt.get('emailAddress')}",
                    BounceResult(
                        kind=result_kind,
                        recipients=[str(rcpt.get("emailAddress") or "").lower()],
                        status=status,
                        diagnostic=diagnostic[:1000],
                        reporting_mta=bounce.get("reportingMTA"),
                        original_message_id=message_id,
                        detector="ses",
                        verp_candidates=list(candidates),
                    ),
                )
            )
    elif kind == "Complaint":
        complaint = notification.get("complaint") or {}
        feedback = str(complaint.get("complaintFeedbackType") or "abuse")
        for rcpt in complaint.get("complainedRecipients") or []:
            out.append(
                (
                    f"ses:{ses_id}:complaint:{rcpt.get('emailAddress')}",
                    BounceResult(
                        kind="complaint" if feedback != "not-spam" else "unknown",
                        recipients=[str(rcpt.get("emailAddress") or "").lower()],
                        diagnostic=f"feedback-type: {feedback}; user-agent: "
                        f"{complaint.get('userAgent') or ''}",
                        original_message_id=message_id,
                        detector="ses",
                        feedback_type=feedback,
                        verp_candidates=list(candidates),
                        reason="" if feedback != "not-spam" else "a not-spam report",
                    ),
                )
            )
    return out


# -- the generic signed JSON webhook ---------------------------------------------------------


def verify_generic_signature(
    secret: str, timestamp: str | None, signature: str | None, body: bytes, *, tolerance: int
) -> None:
    if not timestamp or not timestamp.strip().isdigit():
        raise WebhookRejected("X-Dispatch-Timestamp is missing or not a number")
    if abs(time.time() - int(timestamp)) > max(tolerance, 1):
        raise WebhookRejected("X-Dispatch-Timestamp is outside the accepted window")
    expected = hmac.new(secret.encode(), timestamp.strip().encode() + b"." + body, hashlib.sha256)
    presented = (signature or "").strip().removeprefix("sha256=")
    if not hmac.compare_digest(expected.hexdigest(), presented.lower()):
        raise WebhookRejected("X-Dispatch-Signature does not match the body")


def sign_generic(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """The headers a relay (or a test) sends with a generic webhook body."""
    ts = str(int(time.time() if timestamp is None else timestamp))
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Dispatch-Timestamp": ts, "X-Dispatch-Signature": f"sha256={digest}"}


_GENERIC_KINDS = {"hard", "soft", "complaint", "auto_reply", "unknown"}


def generic_results(body: bytes) -> list[tuple[str, BounceResult]]:
    """`{"events": [{"id", "type": bounce|complaint, "kind": hard|soft, "recipient", "status",
    "diagnostic", "message_id", "envelope_from"}]}` (or one such object) to results.
    ValueError names the first problem (the request is then a 422 and nothing is stored)."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from None
    events = data.get("events", [data]) if isinstance(data, dict) else data
    if not isinstance(events, list) or not events:
        raise ValueError("body must be an object with a non-empty 'events' list")
    out = []
    for index, event in enumerate(events):
        where = f"events[{index}]"
        if not isinstance(event, dict):
            raise ValueError(f"{where} must be an object")
        recipient = str(event.get("recipient") or "").strip().lower()
        if "@" not in recipient:
            raise ValueError(f"{where}.recipient must be an email address")
        event_id = str(event.get("id") or "").strip()
        if not event_id:
            raise ValueError(f"{where}.id is required (it makes retries harmless)")
        kind = str(event.get("kind") or "").lower()
        if event.get("type") == "complaint":
            kind = "complaint"
        if kind not in _GENERIC_KINDS:
            raise ValueError(f"{where}.kind must be one of {sorted(_GENERIC_KINDS)}")
        status = enhanced_status(str(event.get("status") or ""))
        out.append(
            (
                f"generic:{event_id}",
                BounceResult(
                    kind=kind,  # type: ignore[arg-type]
                    recipients=[recipient],
                    status=status,
                    diagnostic=str(event.get("diagnostic") or "")[:1000],
                    original_message_id=event.get("message_id"),
                    detector="webhook",
                    verp_candidates=[str(event.get("envelope_from") or "")],
                ),
            )
        )
    return out
