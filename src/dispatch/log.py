"""Structured logs: one JSON object per line, ids in every event, secrets never written.

Usage: `log = get_logger(__name__)`; `log.info("delivery.sent", campaign_id=1, delivery_id=7)`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Any

from dispatch.config import SECRET_FIELDS

_SECRET_KEYS = {*SECRET_FIELDS, "password", "secret", "token", "app_secret", "authorization"}
# Alembic announces its plugin set-up and each step at INFO (18 lines per worker start);
# dispatch.db logs one "db.migrated" line instead, only when a revision was applied.
QUIET_LOGGERS = ("alembic",)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@", re.I)


def scrub(value: Any) -> Any:
    """Hide URL-embedded passwords (smtp://user:pw@host) in strings."""
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\g<scheme>***@", value)
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            payload[key] = "***" if key.lower() in _SECRET_KEYS else scrub(value)
        if record.exc_info:
            payload["error"] = scrub(self.formatException(record.exc_info).splitlines()[-1])
        return json.dumps(payload, ensure_ascii=False, default=str)


class EventLogger:
    """A thin wrapper so call sites pass fields as keywords, never formatted into the message."""

    def __init__(self, logger: logging.Logger):
        self._logger = logger

    def _log(self, level: int, event: str, exc_info: bool = False, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, event, extra={"fields": fields}, exc_info=exc_info)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, **fields)

    def error(self, event: str, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, exc_info=exc_info, **fields)


def get_logger(name: str) -> EventLogger:
    return EventLogger(logging.getLogger(name))


def configure_logging(level: str = "INFO", stream=None) -> None:
    """Install the JSON formatter on the root logger (CLI, web and workers call this once)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
