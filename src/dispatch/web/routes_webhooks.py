"""`/webhooks/ses` (Amazon SES through SNS) and `/webhooks/generic` (signed JSON).

A request that is not authentic gets 401 and nothing is stored; an authentic one is recorded
through the same `dispatch.bounces.record` as mailed bounces, one row per recipient, keyed by
the provider's event id so a retried delivery of the same webhook is a no-op.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import select

from dispatch.bounces.parse import BounceResult
from dispatch.bounces.record import record_result
from dispatch.bounces.webhooks import (
    SnsVerifier,
    WebhookRejected,
    generic_results,
    ses_results,
    verify_generic_signature,
)
from dispatch.db import committing
from dispatch.log import get_logger
from dispatch.models.bounce import BounceMessage

router = APIRouter(prefix="/webhooks", tags=["webhooks"])
log = get_logger(__name__)
MAX_BODY = 256 * 1024


def sns_verifier(request: Request) -> SnsVerifier:
    verifier = getattr(request.app.state, "sns_verifier", None)
    if verifier is None:
        verifier = SnsVerifier.from_setting(request.app.state.settings.ses_topic_arns)
        request.app.state.sns_verifier = verifier
    return verifier


async def _body(request: Request) -> bytes:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"body larger than {MAX_BODY} bytes")
    return body


def _store(request: Request, results: list[tuple[str, BounceResult]], raw: bytes) -> dict[str, Any]:
    settings = request.app.state.settings
    recorded, duplicates = [], 0
    with committing(request.app.state.session_factory()) as session:
        for event_id, result in results:
            digest = hashlib.sha256(event_id.encode()).hexdigest()
            if session.scalar(select(BounceMessage.id).where(BounceMessage.digest == digest)):
                duplicates += 1
                continue
            row = record_result(session, settings, result, raw=raw, source="webhook", digest=digest)
            recorded.append({"kind": row.kind, "recipient": row.recipient, "action": row.action})
    return {"recorded": recorded, "duplicates": duplicates}


def _rejected(provider: str, exc: WebhookRejected) -> HTTPException:
    log.warning("webhook.rejected", provider=provider, reason=str(exc))
    return HTTPException(401, str(exc))


@router.post("/ses")
async def ses_webhook(request: Request) -> dict[str, Any]:
    """Amazon SES bounce and complaint notifications delivered by SNS (HTTPS subscription)."""
    body = await _body(request)
    try:
        message = json.loads(body)
        if not isinstance(message, dict):
            raise ValueError("not an object")
    except ValueError:
        raise HTTPException(400, "body is not an SNS JSON message") from None
    verifier = sns_verifier(request)
    try:
        await run_in_threadpool(verifier.verify, message)
    except WebhookRejected as exc:
        raise _rejected("ses", exc) from None
    if message["Type"] == "SubscriptionConfirmation":
        try:
            await run_in_threadpool(verifier.confirm, message)
        except WebhookRejected as exc:
            raise _rejected("ses", exc) from None
        return {"confirmed": True}
    if message["Type"] == "UnsubscribeConfirmation":
        return {"unsubscribed": True}
    try:
        notification = json.loads(message.get("Message") or "")
    except ValueError:
        raise HTTPException(400, "the SNS Message is not SES JSON") from None
    results = ses_results(notification if isinstance(notification, dict) else {})
    return await run_in_threadpool(_store, request, results, body)


@router.post("/generic")
async def generic_webhook(request: Request) -> dict[str, Any]:
    """Bounces and complaints from any relay that can sign a JSON body (see README)."""
    settings = request.app.state.settings
    if not settings.bounce_webhook_secret:
        raise HTTPException(404, "the generic webhook is off (bounce_webhook_secret is not set)")
    body = await _body(request)
    try:
        verify_generic_signature(
            settings.bounce_webhook_secret,
            request.headers.get("x-dispatch-timestamp"),
            request.headers.get("x-dispatch-signature"),
            body,
            tolerance=settings.bounce_webhook_tolerance_seconds,
        )
    except WebhookRejected as exc:
        raise _rejected("generic", exc) from None
    try:
        results = generic_results(body)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from None
    return await run_in_threadpool(_store, request, results, body)
