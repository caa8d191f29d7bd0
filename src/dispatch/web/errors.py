"""Domain errors of the other areas mapped to HTTP answers with their clear messages.

Each area raises a dispatch.errors.DispatchError naming the value at fault and saying what
kind of problem it is; the API answers with that message (never a 500) and the status of its
kind from the one table below. Nothing here looks at class names or message text.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError

from dispatch.errors import DispatchError, ErrorKind

HTTP_STATUS: dict[ErrorKind, int] = {
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.CONFLICT: 409,
    ErrorKind.INVALID: 422,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.UNAVAILABLE: 503,
}


def http_status(exc: BaseException) -> int:
    """The HTTP status for an error of this kind (invalid input when it names none)."""
    return HTTP_STATUS[ErrorKind(getattr(exc, "kind", ErrorKind.INVALID))]


def _body(exc: Exception) -> dict:
    problems = getattr(exc, "problems", None)
    body: dict = {"detail": str(exc)}
    if problems:
        body["problems"] = [
            {"file": p.file, "line": p.line, "message": p.message} for p in problems
        ]
    return body


def install_error_handlers(app: FastAPI) -> None:
    from dispatch.subscribers.csv_import import ImportAborted

    async def domain_error(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(_body(exc), status_code=http_status(exc))

    app.add_exception_handler(DispatchError, domain_error)

    async def import_aborted(request: Request, exc: Exception) -> JSONResponse:
        result = getattr(exc, "result", None)
        return JSONResponse(
            {"detail": str(exc), "report": result.as_dict() if result else None},
            status_code=http_status(exc),
        )

    app.add_exception_handler(ImportAborted, import_aborted)

    async def bad_value(request: Request, exc: Exception) -> JSONResponse:
        # e.g. a NUL character PostgreSQL refuses in text: the input's fault, not a server error
        return JSONResponse(
            {"detail": "a value cannot be stored (invalid characters or out of range)"},
            status_code=HTTP_STATUS[ErrorKind.INVALID],
        )

    app.add_exception_handler(DataError, bad_value)
