"""Admin API: subscribers (search, paginate, add, edit), CSV import with the per-line report,
and CSV export (admin only). The rules live in dispatch.subscribers; this maps HTTP to them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, literal_column, or_, select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dispatch import audit
from dispatch.models.subscriber import (
    SUBSCRIBER_STATUSES,
    SUBSCRIPTION_STATUSES,
    MailingList,
    Subscriber,
    Subscription,
)
from dispatch.subscribers import audit_rows, service
from dispatch.subscribers.views import subscriber_view
from dispatch.vocabulary import AuditAction, AuditTarget
from dispatch.web.audit_actor import record_for_request, request_actor
from dispatch.web.auth import require_admin
from dispatch.web.deps import BodyId, DbSession, RowId

router = APIRouter(
    prefix="/api/subscribers", tags=["subscribers"], dependencies=[Depends(require_admin)]
)
MAX_IMPORT_BYTES = 20 * 1024 * 1024


class SubscriberIn(BaseModel):
    email: str | None = Field(default=None, max_length=320)
    openid: str | None = Field(default=None, max_length=128)
    name: str = Field(default="", max_length=200)
    locale: Literal["zh-CN", "en"] | None = None
    list_ids: list[BodyId] = Field(default_factory=list, max_length=100)


class SubscriberPatch(BaseModel):
    email: str | None = Field(default=None, max_length=320)
    openid: str | None = Field(default=None, max_length=128)
    name: str | None = Field(default=None, max_length=200)
    locale: Literal["zh-CN", "en"] | None = None
    status: Literal[SUBSCRIBER_STATUSES] | None = None  # type: ignore[valid-type]


def subscriber_out(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    return {
        **subscriber_view(subscriber),
        "subscriptions": [
            {"list_id": m.id, "list": m.slug, "status": s.status}
            for m, s in service.subscriptions_of(session, subscriber.id)
        ],
    }


COUNT_CAP = 10_000  # a search counts its matches up to here, then says "10,000+"


def like_prefix(q: str) -> str:
    """`q` as a LIKE pattern matching what starts with it (its own % and _ taken literally)."""
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _matching(q: str | None, list_id: int | None, status: str | None) -> Select:
    """Subscribers matching the filters. The text matches the start of the email address or
    of the name (case-insensitive), or an openid exactly: prefixes, so the lower(…)
    text_pattern_ops indexes answer at a million subscribers (a substring would read them all)."""
    query = select(Subscriber)
    if list_id is not None:
        query = query.join(Subscription, Subscription.subscriber_id == Subscriber.id).where(
            Subscription.list_id == list_id
        )
    if status:
        query = query.where(Subscriber.status == status)
    q = (q or "").replace("\x00", "").strip()
    if q:
        pattern = like_prefix(q.lower())
        query = query.where(
            or_(
                func.lower(Subscriber.email).like(pattern, escape="\\"),
                func.lower(Subscriber.name).like(pattern, escape="\\"),
                Subscriber.openid == q,
            )
        )
    return query


def keyset_page(
    session: Session, query: Select, key: Any, *, after: int | None, before: int | None, size: int
) -> tuple[list[Any], bool]:
    """One page of `query` ordered by the unique integer `key`, after or before a key value,
    and whether more rows lie that way: each page costs the same wherever it is (OFFSET reads
    and drops every row before it) and rows inserted meanwhile neither repeat nor push others
    off the page."""
    if before is not None:
        found = list(
            session.scalars(query.where(key < before).order_by(key.desc()).limit(size + 1))
        )
        return found[:size][::-1], len(found) > size
    if after is not None:
        query = query.where(key > after)
    found = list(session.scalars(query.order_by(key).limit(size + 1)))
    return found[:size], len(found) > size


def capped_count(session: Session, query: Select, cap: int = COUNT_CAP) -> tuple[int, bool]:
    """How many rows `query` has, counting no further than `cap` (True when it stopped there)."""
    limited: Select = query.with_only_columns(literal_column("1"), maintain_column_froms=True)
    limited = limited.order_by(None).limit(cap + 1)
    found = int(session.scalar(select(func.count()).select_from(limited.subquery())) or 0)
    return min(found, cap), found > cap


def search_subscribers(
    session: Session,
    *,
    q: str | None,
    list_id: int | None,
    status: str | None,
    page: int,
    per_page: int,
    after: int | None = None,
    before: int | None = None,
) -> dict[str, Any]:
    """One page of subscribers matching a query, by id: `after`/`before` an id (keyset; the
    way the admin pages), else the `page`-th (OFFSET, kept for old API clients: slow deep).
    `total` counts up to COUNT_CAP (`total_capped` then true)."""
    query = _matching(q, list_id, status)
    rows, pager = paged(
        session, query, Subscriber.id, page=page, per_page=per_page, after=after, before=before
    )
    return {**pager, "items": subscriber_items(session, rows)}


def paged(
    session: Session,
    query: Select,
    key: Any,
    *,
    page: int,
    per_page: int,
    after: int | None,
    before: int | None,
) -> tuple[list[Any], dict[str, Any]]:
    """One page of `query` by `key` (keyset when `after`/`before` is given or on the first
    page, OFFSET for a bare `page` > 1) and the answer's paging fields."""
    total, capped = capped_count(session, query)
    if after is None and before is None and page > 1:
        found = query.order_by(key).offset((page - 1) * per_page).limit(per_page)
        rows = list(session.scalars(found))
        more = len(rows) == per_page
    else:
        rows, more = keyset_page(session, query, key, after=after, before=before, size=per_page)
        more = more or before is not None  # walking back, the pages after are there
    return rows, {
        "total": total,
        "total_capped": capped,
        "page": page,
        "per_page": per_page,
        "next_after": rows[-1].id if rows and more else None,
        "prev_before": rows[0].id if rows else None,
    }


def subscriber_items(session: Session, rows: list[Subscriber]) -> list[dict[str, Any]]:
    """The page's people with their subscriptions, read in one query (not one per person)."""
    ids = [s.id for s in rows]
    subs: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if ids:
        for sub, mailing_list in session.execute(
            select(Subscription, MailingList)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(Subscription.subscriber_id.in_(ids))
            .order_by(Subscription.subscriber_id, MailingList.slug)
        ):
            subs[sub.subscriber_id].append(
                {"list_id": mailing_list.id, "list": mailing_list.slug, "status": sub.status}
            )
    return [{**subscriber_view(s), "subscriptions": subs[s.id]} for s in rows]


def _get_or_404(session: Session, subscriber_id: RowId) -> Subscriber:
    found = session.get(Subscriber, subscriber_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"subscriber {subscriber_id} not found")
    return found


def _list_or_404(session: Session, list_id: RowId) -> MailingList:
    found = session.get(MailingList, list_id)
    if found is None:
        raise HTTPException(status_code=404, detail=f"list {list_id} not found")
    return found


def import_upload(
    request: Request,
    data: bytes,
    filename: str,
    list_id: RowId,
    resubscribe: bool = False,
    confirmed: bool = False,
    send_confirmations: bool = False,
) -> dict[str, Any]:
    """Run the subscriber area's CSV import on an uploaded file; the report names each line.
    With `send_confirmations` (double opt-in list) the people are left unconfirmed and a
    confirmation campaign is queued for them (its id in the report)."""
    from dispatch.subscribers.csv_import import ImportAborted, import_csv
    from dispatch.subscribers.import_confirmations import create_confirmation_campaign
    from dispatch.web.queueing import batch_queue

    settings = request.app.state.settings
    with request.app.state.session_factory() as session:
        mailing_list = _list_or_404(session, list_id)
        slug = mailing_list.slug
    tmp_dir = settings.data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=tmp_dir, suffix=".csv", delete=False) as handle:
        handle.write(data)
        path = Path(handle.name)
    try:
        result = import_csv(
            request.app.state.engine,
            path,
            slug,
            resubscribe=resubscribe,
            confirmed=confirmed,
            send_confirmations=send_confirmations,
        )
    except ImportAborted as exc:  # the chunks before the resume line are stored: say so
        _audit_import(request, slug, filename, exc.result.audit_row(exc))
        raise
    finally:
        path.unlink(missing_ok=True)
    _audit_import(request, slug, filename, result.audit_row())
    report = result.as_dict()
    report["confirmation_campaign_id"] = None
    if result.awaiting_confirmation:
        campaign = create_confirmation_campaign(
            request.app.state.engine,
            settings,
            list_id,
            result.awaiting_confirmation,
            source=f"web-import:{Path(filename).name}",
            queue=batch_queue(request),
        )
        report["confirmation_campaign_id"] = campaign.id if campaign else None
    report["file"] = Path(filename).name or "upload.csv"
    report["summary"] = result.summary()
    return report


def _audit_import(request: Request, slug: str, filename: str, after: dict[str, Any]) -> None:
    """The import's row, after its chunks committed (each in its own transaction)."""
    after["file"] = Path(filename).name or "upload.csv"
    record_for_request(request, AuditAction.IMPORT, AuditTarget.LIST, slug, after=after)


@router.get("", summary="Search and paginate subscribers")
def subscribers_index(
    session: DbSession,
    q: Annotated[
        str | None,
        Query(max_length=200, description="the start of the email or name, or an openid"),
    ] = None,
    list_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    status: Literal[SUBSCRIBER_STATUSES] | None = None,  # type: ignore[valid-type]
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        int | None, Query(ge=0, le=2**31 - 1, description="the page after this id (keyset)")
    ] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**31 - 1, description="the page before this id (keyset)")
    ] = None,
) -> dict:
    return search_subscribers(
        session,
        q=q,
        list_id=list_id,
        status=status,
        page=page,
        per_page=per_page,
        after=after,
        before=before,
    )


@router.post("", status_code=201, summary="Add a subscriber (and subscribe to lists)")
def subscribers_create(body: SubscriberIn, request: Request, session: DbSession) -> dict:
    lists = [_list_or_404(session, i) for i in body.list_ids]
    subscriber = service.add_subscriber(
        session, email=body.email, openid=body.openid, name=body.name, locale=body.locale
    )
    for mailing_list in lists:
        service.subscribe(session, subscriber, mailing_list, settings=request.app.state.settings)
    actor = request_actor(request, request.state.principal)
    audit_rows.added(session, actor, subscriber, [m.slug for m in lists])
    return subscriber_out(session, subscriber)


@router.post("/import", summary="Import a CSV upload into a list; returns the per-line report")
async def subscribers_import(
    request: Request,
    file: Annotated[UploadFile, File()],
    list_id: Annotated[int, Form(ge=1, le=2**31 - 1)],
    resubscribe: Annotated[bool, Form()] = False,
    confirmed: Annotated[bool, Form()] = False,
    send_confirmations: Annotated[bool, Form()] = False,
) -> dict:
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise HTTPException(
            status_code=413, detail=f"CSV larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB"
        )
    return await run_in_threadpool(
        import_upload,
        request,
        data,
        file.filename or "upload.csv",
        list_id,
        resubscribe,
        confirmed,
        send_confirmations,
    )


@router.get("/export", summary="Export a list's members as CSV")
def subscribers_export(
    request: Request,
    session: DbSession,
    list_id: Annotated[int, Query(ge=1, le=2**31 - 1)],
    status: Literal[SUBSCRIPTION_STATUSES] | None = None,  # type: ignore[valid-type]
    include_all: Annotated[
        bool, Query(alias="all", description="also unsubscribed and suppressed people")
    ] = False,
) -> StreamingResponse:
    from dispatch.subscribers.csv_export import iter_csv

    mailing_list = _list_or_404(session, list_id)
    slug = mailing_list.slug
    factory = request.app.state.session_factory
    chosen = (status,) if status else ()
    after = {"statuses": list(chosen), "all": include_all}
    actor = request_actor(request, request.state.principal)
    audit.record(session, actor, AuditAction.EXPORT, AuditTarget.LIST, slug, after=after)

    def chunks() -> Iterator[bytes]:
        """The CSV as it is read (constant memory at any list size), in a session of its own:
        the request's may be closed before the last byte is sent."""
        yield "\ufeff".encode()  # the BOM, as in the CLI's file: Excel reads UTF-8 Chinese names
        with factory() as own:
            for text, _rows in iter_csv(own, slug, statuses=chosen, include_all=include_all):
                yield text.encode("utf-8")

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{slug}.csv"'},
    )


@router.get("/{subscriber_id}", summary="One subscriber with their subscriptions")
def subscribers_show(subscriber_id: RowId, session: DbSession) -> dict:
    return subscriber_out(session, _get_or_404(session, subscriber_id))


@router.patch("/{subscriber_id}", summary="Edit a subscriber")
def subscribers_update(
    subscriber_id: RowId, body: SubscriberPatch, request: Request, session: DbSession
) -> dict:
    subscriber = _get_or_404(session, subscriber_id)
    before = audit_rows.person_fields(subscriber)
    service.update_subscriber(
        session,
        subscriber,
        email=body.email,
        openid=body.openid,
        name=body.name,
        locale=body.locale,
        status=body.status,
    )
    actor = request_actor(request, request.state.principal)
    audit_rows.changed_person(session, actor, subscriber, before)
    return subscriber_out(session, subscriber)
