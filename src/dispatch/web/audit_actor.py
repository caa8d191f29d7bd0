"""The audit `Actor` of a web or API request: the signed-in user and the client's address."""

from __future__ import annotations

from fastapi import Request

from dispatch.audit import Actor
from dispatch.web.auth import Principal
from dispatch.web.throttle import client_address


def request_actor(request: Request, principal: Principal) -> Actor:
    """Who is acting in this request, for `dispatch.audit.record`."""
    return Actor.user(principal, client_address(request))
