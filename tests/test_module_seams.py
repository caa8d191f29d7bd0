"""Module seams that must stay cut: no import circle between tokens and the subscriber service,
and the SMTP conversation / reply table usable without campaigns or the database."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dispatch

PACKAGE = Path(dispatch.__file__).parent


def imported_modules(relative: str) -> set[str]:
    """Every module a source file imports, at any depth (lazy imports inside functions too)."""
    tree = ast.parse((PACKAGE / relative).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


def test_tokens_does_not_import_the_subscriber_service():
    assert not {m for m in imported_modules("tokens.py") if m.startswith("dispatch.subscribers")}


def test_subscriber_service_uses_tokens():
    # the direction that remains: acting on a token is the service's job
    assert "dispatch.tokens" in imported_modules("subscribers/service.py")


@pytest.mark.parametrize(
    "relative,forbidden",
    [
        ("channels/smtp_replies.py", ("sqlalchemy", "dispatch.channels.smtp", "dispatch.models")),
        (
            "channels/smtp_conversation.py",
            ("sqlalchemy", "dispatch.channels.smtp", "dispatch.channels.email_source"),
        ),
    ],
)
def test_smtp_layers_do_not_reach_up(relative, forbidden):
    imports = imported_modules(relative)
    bad = {m for m in imports for prefix in forbidden if m == prefix or m.startswith(prefix + ".")}
    assert not bad, f"{relative} imports {sorted(bad)}"


def test_old_smtp_names_still_importable():
    from dispatch.channels import smtp, smtp_conversation, smtp_replies

    assert smtp.classify_smtp_reply is smtp_replies.classify_smtp_reply
    assert smtp.parse_smtp_url is smtp_conversation.parse_smtp_url
