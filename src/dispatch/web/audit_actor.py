"""The audit `Actor` of a web or API request: the signed-in user and the client's address."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from dispatch import audit
from dispatch.audit import Actor
from dispatch.db import committing
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.auth import Principal
from dispatch.web.throttle import client_address


def request_actor(request: Request, principal: Principal) -> Actor:
    """Who is acting in this request, for `dispatch.audit.record`."""
    return Actor.user(principal, client_address(request))


def record_for_request(
    request: Request,
    action: AuditAction,
    target_kind: AuditTarget,
    target_id: object = None,
    *,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """An audit row in its own short transaction, for a change the delivery engine committed
    in its own (start, pause, resume, cancel): written once the change succeeded."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        return
    with committing(request.app.state.session_factory()) as session:
        actor = request_actor(request, principal)
        audit.record(session, actor, action, target_kind, target_id, before=before, after=after)
