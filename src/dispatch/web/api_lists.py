"""Admin API: mailing lists with their member counts (admin only)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from dispatch.models.subscriber import MailingList
from dispatch.subscribers import audit_rows, service
from dispatch.subscribers.views import list_view
from dispatch.web.audit_actor import request_actor
from dispatch.web.auth import require_admin
from dispatch.web.deps import DbSession, RowId

router = APIRouter(prefix="/api/lists", tags=["lists"], dependencies=[Depends(require_admin)])


class ListIn(BaseModel):
    slug: str = Field(min_length=1, max_length=64)
    name: str = Field(default="", max_length=200)
    description: str = Field(default="", max_length=2000)
    optin: Literal["single", "double"] = "single"
    ad_marker: bool = Field(
        default=False, description='"(AD)" before the subject (NetEase marketing mail)'
    )


class ListPatch(BaseModel):
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    optin: Literal["single", "double"] | None = None
    ad_marker: bool | None = None


def list_out(session: Session, mailing_list: MailingList, *, stored_counts: bool = False) -> dict:
    return list_view(session, mailing_list, stored_counts=stored_counts)


def get_list_or_404(session: Session, list_id: RowId) -> MailingList:
    found = session.get(MailingList, list_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"list {list_id} not found")
    return found


@router.get("", summary="All lists with member counts")
def lists_index(session: DbSession) -> list[dict]:
    return [list_out(session, m, stored_counts=True) for m in service.all_lists(session)]


@router.post("", status_code=201, summary="Create a list")
def lists_create(body: ListIn, request: Request, session: DbSession) -> dict:
    created = service.create_list(
        session, body.slug, body.name, description=body.description, optin=body.optin
    )
    created.ad_marker = body.ad_marker
    audit_rows.created_list(session, request_actor(request, request.state.principal), created)
    return list_out(session, created)


@router.get("/{list_id}", summary="One list")
def lists_show(list_id: RowId, session: DbSession) -> dict:
    return list_out(session, get_list_or_404(session, list_id), stored_counts=True)


@router.patch("/{list_id}", summary="Change a list's name, description, opt-in mode or (AD) marker")
def lists_update(list_id: RowId, body: ListPatch, request: Request, session: DbSession) -> dict:
    found = get_list_or_404(session, list_id)
    before = audit_rows.list_fields(found)
    updated = service.update_list(
        session, found.slug, name=body.name, description=body.description, optin=body.optin
    )
    if body.ad_marker is not None:
        updated.ad_marker = body.ad_marker
    audit_rows.changed_list(
        session, request_actor(request, request.state.principal), updated, before
    )
    return list_out(session, updated)
