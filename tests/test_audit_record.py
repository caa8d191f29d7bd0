"""dispatch.audit.record: one row per action, written in the caller's transaction."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.models import AuditEntry
from dispatch.models.web import User
from dispatch.vocabulary import AuditAction, AuditTarget, CampaignStatus


def _rows(engine) -> list[AuditEntry]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry).order_by(AuditEntry.id)))


def test_a_row_names_actor_action_target_and_the_change(engine):
    user = User(id=5, email="editor@example.org", password_hash="x", role="editor")
    when = datetime(2026, 3, 1, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        audit.record(
            session,
            audit.Actor.user(user, ip="203.0.113.9"),
            AuditAction.PAUSE,
            AuditTarget.CAMPAIGN,
            42,
            before={"status": CampaignStatus.RUNNING, "at": when},
            after={"status": CampaignStatus.PAUSED, "lists": {"b", "a"}},
        )
        audit.record(session, audit.CLI, AuditAction.PUBLISH, AuditTarget.ISSUE, "2023-02")
    paused, published = _rows(engine)
    assert (paused.actor, paused.actor_user_id, paused.source_ip) == (
        "editor@example.org",
        5,
        "203.0.113.9",
    )
    assert (paused.action, paused.target_kind, paused.target_id) == ("pause", "campaign", "42")
    assert paused.before == {"status": "running", "at": "2026-03-01T00:00:00+00:00"}
    assert paused.after == {"status": "paused", "lists": ["a", "b"]}
    assert paused.occurred_at.tzinfo is not None
    assert (published.actor, published.actor_user_id, published.before) == ("cli", None, None)


def test_the_row_rolls_back_with_the_change_it_describes(engine):
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        audit.record(session, audit.SYSTEM, AuditAction.SEND, AuditTarget.CAMPAIGN, 1)
        raise RuntimeError("the change failed")
    assert _rows(engine) == []


def test_unknown_words_are_refused():
    with pytest.raises(ValueError):
        audit.record(None, audit.CLI, "frobnicate", AuditTarget.ISSUE)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        audit.record(None, audit.CLI, AuditAction.EDIT, "planet")  # type: ignore[arg-type]


def test_changes_keeps_only_what_differs():
    before, after = audit.changes({"name": "A", "colour": "#111"}, {"name": "A", "colour": "#222"})
    assert (before, after) == ({"colour": "#111"}, {"colour": "#222"})
