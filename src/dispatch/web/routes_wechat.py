"""The WeChat Official Account callback: GET answers the echostr check, POST carries events.

All signature checking and event handling lives in dispatch.wechat.callbacks; this route only
moves the query string and body in and the reply out.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from dispatch.web.errors import http_status

router = APIRouter(include_in_schema=False)


@router.api_route("/wechat/callback", methods=["GET", "POST"])
async def wechat_callback(request: Request) -> Response:
    try:
        from dispatch.wechat.callbacks import (
            MAX_BODY,
            CallbackConfigError,
            CallbackUnverified,
            handle_callback,
        )
    except ImportError:
        raise HTTPException(status_code=503, detail="WeChat callbacks are not available") from None
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise HTTPException(status_code=413, detail="callback body too large")
    body = b""
    async for piece in request.stream():  # capped while reading, not after
        body += piece
        if len(body) > MAX_BODY:
            raise HTTPException(status_code=413, detail="callback body too large")
    query = dict(request.query_params)

    def work() -> str:
        with request.app.state.session_factory() as session, session.begin():
            return handle_callback(session, request.app.state.settings, query, body)

    try:
        reply = await run_in_threadpool(work)
    except IntegrityError:  # the same nonce or event stored by a concurrent copy: a replay
        raise HTTPException(status_code=403, detail="replayed callback") from None
    except CallbackUnverified:  # the account's API could not confirm it: WeChat retries
        raise HTTPException(status_code=503, detail="try again later") from None
    except CallbackConfigError as exc:
        raise HTTPException(
            status_code=http_status(exc), detail="WeChat callbacks are not configured"
        ) from None
    except PermissionError:
        raise HTTPException(status_code=403, detail="bad signature") from None
    except ValueError:
        raise HTTPException(status_code=400, detail="bad callback") from None
    media = "application/xml" if reply.lstrip().startswith("<") else "text/plain"
    return PlainTextResponse(reply, media_type=media)
