"""Every route of the app with its methods and the role its guard requires (None = public).

Why: the access test walks this list, so a route added later is checked automatically, and a
route under /api/ or /admin/ without a role guard fails that test.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant

from dispatch.web.auth import ROLE_RANK


@dataclass(frozen=True)
class RouteInfo:
    path: str
    methods: frozenset[str]
    role: str | None
    name: str


def _roles(dependant: Dependant | None) -> Iterator[str]:
    if dependant is None:
        return
    role = getattr(dependant.call, "role", None)
    if isinstance(role, str):
        yield role
    for sub in dependant.dependencies:
        yield from _roles(sub)


def _flat_routes(app: FastAPI) -> Iterator[object]:
    try:  # FastAPI ≥ 0.13x keeps included routers as branches
        from fastapi.routing import _iter_routes_with_context

        for original, context in _iter_routes_with_context(app.router.routes):
            yield context if context is not None else original
    except ImportError:  # older FastAPI flattens included routes
        yield from app.router.routes


def iter_routes(app: FastAPI) -> list[RouteInfo]:
    out = []
    for route in _flat_routes(app):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if not path or not methods:
            continue
        roles = list(_roles(getattr(route, "dependant", None)))
        role = max(roles, key=lambda r: ROLE_RANK.get(r, 0)) if roles else None
        out.append(
            RouteInfo(
                path,
                frozenset(m for m in methods if m != "HEAD"),
                role,
                getattr(route, "name", "") or "",
            )
        )
    return out
