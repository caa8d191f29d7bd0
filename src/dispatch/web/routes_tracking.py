"""Open pixel and click redirect: the hot path, one small transaction per hit.

The pixel never fails visibly: a bad token still gets the GIF and records nothing. A click
redirects (302) only to the URL at the token's link index in the campaign issue's link table;
a bad signature, unknown delivery or index outside the table gets 404 and no Location. Query
strings are ignored entirely, so no URL can be smuggled in.

Why `async def` with the database work inline: each hit is one short transaction (about a
millisecond); handing it to the thread pool costs more than it saves, and on SQLite the
writes serialise anyway. More throughput comes from more uvicorn workers.
"""

from __future__ import annotations

import base64

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.exc import SQLAlchemyError

from dispatch.log import get_logger
from dispatch.tokens import TokenError, verify_click_token, verify_open_token
from dispatch.web.hits import HitRecorder

log = get_logger("dispatch.web.tracking")
router = APIRouter(include_in_schema=False)

PIXEL_GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, private", "Pragma": "no-cache"}


@router.get("/t/o/{token}.gif")
async def open_pixel(token: str, request: Request) -> Response:
    try:
        delivery_id: int | None = verify_open_token(request.app.state.settings, token)
    except TokenError:
        delivery_id = None
    if delivery_id is not None:
        hits: HitRecorder = request.app.state.hits
        try:
            with hits.transaction(), hits.engine.begin() as conn:
                ref = hits.ref(conn, delivery_id)
                if ref is not None:
                    hits.record_open(conn, ref)
        except SQLAlchemyError:  # an open is worth less than a broken image: log, never show
            log.error("tracking.open_failed", exc_info=True, delivery_id=delivery_id)
    return Response(PIXEL_GIF, media_type="image/gif", headers=NO_STORE)


@router.get("/t/c/{token}")
async def click(token: str, request: Request) -> Response:
    try:
        delivery_id, link_index = verify_click_token(request.app.state.settings, token)
    except TokenError:
        raise HTTPException(status_code=404, detail="unknown link") from None
    hits: HitRecorder = request.app.state.hits
    with hits.transaction(), hits.engine.begin() as conn:
        ref = hits.ref(conn, delivery_id)
        if ref is None:
            raise HTTPException(status_code=404, detail="unknown link")
        links = request.app.state.link_tables.get(conn, ref.campaign_id)
        if links is None or not 0 <= link_index < len(links):
            raise HTTPException(status_code=404, detail="unknown link")
        url = links[link_index]
        if not url.startswith(("https://", "http://")):
            raise HTTPException(status_code=404, detail="unknown link")
        hits.record_click(conn, ref, link_index, url)
    return RedirectResponse(url, status_code=302, headers=NO_STORE)
