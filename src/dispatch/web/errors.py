"""Domain errors of the other areas mapped to HTTP answers with their clear messages.

Each service raises its own ValueError subclass naming the value at fault; the API answers
with that message (never a 500) and a status that says what kind of problem it is.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError


def _status_for(exc: Exception) -> int:
    name = type(exc).__name__
    key = getattr(exc, "key", "") or ""
    if name == "SubscriberError":
        if key.startswith("no_"):
            return 404
        if (
            key.endswith("_taken")
            or key.endswith("_exists")
            or key in ("suppressed", "was_unsubscribed")
        ):
            return 409
        return 422
    if name == "InvalidTransition":
        return 409
    if name == "CampaignError":
        return 404 if "not found" in str(exc) else 409
    return 422


def _body(exc: Exception) -> dict:
    problems = getattr(exc, "problems", None)
    body: dict = {"detail": str(exc)}
    if problems:
        body["problems"] = [
            {"file": p.file, "line": p.line, "message": p.message} for p in problems
        ]
    return body


def install_error_handlers(app: FastAPI) -> None:
    from dispatch.content.parse import IssueSourceError
    from dispatch.delivery.campaigns import CampaignError
    from dispatch.subscribers.csv_import import CsvImportError, ImportAborted
    from dispatch.subscribers.service import SubscriberError
    from dispatch.web.issue_upload import UploadError
    from dispatch.web.users import UserError

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(_body(exc), status_code=_status_for(exc))

    for kind in (
        IssueSourceError,
        CampaignError,
        CsvImportError,
        SubscriberError,
        UploadError,
        UserError,
    ):
        app.add_exception_handler(kind, domain_error)

    async def import_aborted(request: Request, exc: Exception) -> JSONResponse:
        result = getattr(exc, "result", None)
        return JSONResponse(
            {"detail": str(exc), "report": result.as_dict() if result else None}, status_code=409
        )

    app.add_exception_handler(ImportAborted, import_aborted)

    async def bad_value(request: Request, exc: Exception) -> JSONResponse:
        # e.g. a NUL character PostgreSQL refuses in text: the input's fault, not a server error
        return JSONResponse(
            {"detail": "a value cannot be stored (invalid characters or out of range)"},
            status_code=422,
        )

    app.add_exception_handler(DataError, bad_value)
