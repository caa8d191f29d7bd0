"""Users and API tokens, managed by administrators on one page: create a user, change a
role, disable or enable, create a token (shown once, never stored) and revoke one.

Every change is an audit row with the values before and after. The service rules (no
duplicate email, known roles, never disable yourself or the last administrator) live in
dispatch.web.users, shared with the CLI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.db import committing
from dispatch.models.web import USER_ROLES, ApiToken, User
from dispatch.vocabulary import AuditAction, AuditTarget, ErrorKind
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import AdminUser, Principal
from dispatch.web.deps import RowId
from dispatch.web.templating import render_page, request_locale
from dispatch.web.texts import TEXTS
from dispatch.web.users import (
    UserError,
    change_user,
    create_api_token,
    create_user,
    revoke_api_token,
)
from dispatch.web.users import _token_digest as digest

router = APIRouter(prefix="/admin", include_in_schema=False)
FLASH = {"created": "users_created", "saved": "users_saved"}


def _page(
    request: Request, extra: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    with request.app.state.session_factory() as session:
        users = list(session.scalars(select(User).order_by(User.email)))
        tokens: dict[int, list[ApiToken]] = {u.id: [] for u in users}
        for token in session.scalars(select(ApiToken).order_by(ApiToken.id)):
            tokens.setdefault(token.user_id, []).append(token)
    context: dict[str, Any] = {"users": users, "tokens": tokens, "roles": USER_ROLES}
    key = FLASH.get(request.query_params.get("msg", ""))
    if key:
        context.update(flash=TEXTS.get(key, request_locale(request)), flash_kind="ok")
    context.update(extra or {})
    return render_page(request, "admin/users.html", context, status_code=status_code)


def _refused(request: Request, exc: UserError) -> Response:
    return _page(
        request,
        {"flash": str(exc)},
        status_code={"invalid": 422, "not_found": 404}.get(exc.kind, 409),
    )


def _run(request: Request, principal: Principal, change: Any) -> Response:
    """Apply `change(session, actor)` in one transaction; its refusal shows on the page."""
    try:
        with committing(request.app.state.session_factory()) as session:
            extra = change(session, request_actor(request, principal))
    except UserError as exc:
        return _refused(request, exc)
    if extra:
        return _page(request, extra)
    return RedirectResponse("/admin/users?msg=saved", status_code=303)


@router.get("/users")
def users_page(request: Request, principal: AdminUser) -> Response:
    return _page(request)


@router.post("/users")
def users_create(
    request: Request,
    principal: AdminUser,
    email: Annotated[str, Form(max_length=254)],
    password: Annotated[str, Form(max_length=200)],
    role: Annotated[str, Form(max_length=16)] = "editor",
) -> Response:
    def change(session: Session, actor: audit.Actor) -> None:
        user = create_user(session, email, password, role, request_locale(request))
        after = {"email": user.email, "role": user.role}
        audit.record(
            session, actor, AuditAction.CREATE_USER, AuditTarget.USER, user.email, after=after
        )

    answer = _run(request, principal, change)
    if isinstance(answer, RedirectResponse):
        return RedirectResponse("/admin/users?msg=created", status_code=303)
    return answer


@router.post("/users/{user_id}")
def users_change(
    request: Request,
    principal: AdminUser,
    user_id: RowId,
    role: Annotated[str | None, Form(max_length=16)] = None,
    disabled: Annotated[str | None, Form(max_length=5)] = None,
) -> Response:
    """One form per user: a new role, or disable/enable (`disabled` = "1" / "0")."""

    def change(session: Session, actor: audit.Actor) -> None:
        wants = None if disabled is None else disabled == "1"
        user, before, after = change_user(
            session, principal.user_id, user_id, role=role, disabled=wants
        )
        if before == after:
            return
        action = AuditAction.CHANGE_USER
        if before["disabled"] != after["disabled"]:
            action = AuditAction.DISABLE_USER if after["disabled"] else AuditAction.ENABLE_USER
        before, after = audit.changes(before, after)
        audit.record(
            session, actor, action, AuditTarget.USER, user.email, before=before, after=after
        )

    return _run(request, principal, change)


@router.post("/users/{user_id}/tokens")
def tokens_create(
    request: Request,
    principal: AdminUser,
    user_id: RowId,
    name: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """A new token, shown in the answer page once (it is stored only as a hash)."""

    def change(session: Session, actor: audit.Actor) -> dict[str, Any]:
        user = session.get(User, user_id)
        if user is None:
            raise UserError(f"user {user_id}", kind=ErrorKind.NOT_FOUND)
        plain = create_api_token(session, user, name)
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.token_hash == digest(plain)))
        after = {"user": user.email, "name": name}
        audit.record(
            session, actor, AuditAction.CREATE_TOKEN, AuditTarget.TOKEN, token_id, after=after
        )
        return {"new_token": plain, "new_token_user": user.email}

    return _run(request, principal, change)


@router.post("/tokens/{token_id}/revoke")
def tokens_revoke(request: Request, principal: AdminUser, token_id: RowId) -> Response:
    def change(session: Session, actor: audit.Actor) -> None:
        row = revoke_api_token(session, token_id)
        owner = session.get(User, row.user_id)
        before = {"user": owner.email if owner else row.user_id, "name": row.name}
        audit.record(
            session, actor, AuditAction.REVOKE_TOKEN, AuditTarget.TOKEN, token_id, before=before
        )

    return _run(request, principal, change)
