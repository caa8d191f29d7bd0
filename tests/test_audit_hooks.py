"""The places that act leave their audit row: log-in, failed log-in, log-out (web), ..."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import AuditEntry
from test_web_support import PASSWORD, login, make_user

pytest_plugins = ["test_web_support"]


def _audit(engine) -> list[tuple[str, str, str | None]]:
    with Session(engine) as session:
        rows = session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(e.action, e.actor, e.target_id) for e in rows]


def test_log_in_failed_log_in_and_log_out_are_recorded(client, engine, settings):
    client.app.state.settings = settings.replace(login_failure_pause_seconds=0)
    make_user(engine, "admin")
    page = client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    refused = client.post(
        "/admin/login",
        data={"email": "Admin@Example.org", "password": PASSWORD + "x", "csrf_token": token},
    )
    assert refused.status_code == 401
    csrf = login(client, "admin@example.org")
    client.post("/admin/logout", data={"csrf_token": csrf})
    assert _audit(engine) == [
        ("log_in_failed", "admin@example.org", "admin@example.org"),
        ("log_in", "admin@example.org", "admin@example.org"),
        ("log_out", "admin@example.org", "admin@example.org"),
    ]
    with Session(engine) as session:
        ips = set(session.scalars(select(AuditEntry.source_ip)))
    assert ips and None not in ips
