"""Shared CLI plumbing: settings, one-line errors, --json output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from dispatch.config import ConfigError, Settings, get_settings


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except ConfigError as exc:
        fail(str(exc))
        raise  # unreachable


def fail(message: str, code: int = 1) -> None:
    """Print one clear error line and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def emit(data: Any, as_json: bool, human: Callable[[Any], None] | None = None) -> None:
    """Print `data` as JSON for scripts, or through `human` for people."""
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, default=_default, indent=2))
    elif human is not None:
        human(data)
    else:
        click.echo(json.dumps(data, ensure_ascii=False, default=_default, indent=2))


json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts / 输出 JSON"
)
