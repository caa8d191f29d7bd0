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


def test_a_disabled_user_cannot_log_in_nor_use_a_session_or_token(client, engine, settings):
    from dispatch.models import utcnow
    from dispatch.models.web import User
    from test_web_support import bearer

    token = make_user(engine, "admin")
    login(client, "admin@example.org")
    assert client.get("/api/lists", headers=bearer(token)).status_code == 200
    with Session(engine) as session, session.begin():
        session.scalars(select(User)).one().disabled_at = utcnow()
    assert client.get("/admin/", follow_redirects=False).status_code == 401
    assert client.get("/api/lists", headers=bearer(token)).status_code == 401
    client.cookies.clear()
    client.app.state.settings = settings.replace(login_failure_pause_seconds=0)
    page = client.get("/admin/login")
    csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    refused = client.post(
        "/admin/login",
        data={"email": "admin@example.org", "password": PASSWORD, "csrf_token": csrf},
    )
    assert refused.status_code == 401
    assert _audit(engine)[-1][0] == "log_in_failed"


def test_cli_user_and_token_creation_are_recorded_as_cli(settings, engine):
    from click.testing import CliRunner

    from dispatch.cli import main

    runner = CliRunner()
    made = runner.invoke(
        main,
        ["users", "create", "--email", "boss@example.org", "--role", "admin", "--password-stdin"],
        input="a good long password\n",
    )
    assert made.exit_code == 0, made.output
    assert runner.invoke(main, ["users", "token", "--email", "boss@example.org"]).exit_code == 0
    assert _audit(engine) == [
        ("create_user", "cli", "boss@example.org"),
        ("create_token", "cli", None),
    ]


def test_campaign_buttons_and_suppressions_are_recorded(client, engine, settings):
    from test_web_support import seed

    seeded = seed(engine, settings)
    make_user(engine, "admin")
    csrf = login(client, "admin@example.org")
    for action in ("pause", "resume", "cancel"):
        client.post(f"/admin/campaigns/{seeded.campaign_id}/{action}", data={"csrf_token": csrf})
    client.post("/admin/suppressions", data={"csrf_token": csrf, "email": "x@example.org"})
    client.get("/admin/suppressions/export")
    rows = [r for r in _audit(engine) if r[0] not in ("log_in",)]
    assert rows == [
        ("pause", "admin@example.org", str(seeded.campaign_id)),
        ("resume", "admin@example.org", str(seeded.campaign_id)),
        ("cancel", "admin@example.org", str(seeded.campaign_id)),
        ("suppress", "admin@example.org", "x@example.org"),
        ("export", "admin@example.org", None),
    ]


def test_api_pause_and_cancel_are_recorded(client, engine, settings):
    from test_web_support import bearer, seed

    seeded = seed(engine, settings)
    token = make_user(engine, "admin")
    for action in ("pause", "cancel"):
        answer = client.post(f"/api/campaigns/{seeded.campaign_id}/{action}", headers=bearer(token))
        assert answer.status_code == 200, answer.text
    assert _audit(engine) == [
        ("pause", "admin@example.org", str(seeded.campaign_id)),
        ("cancel", "admin@example.org", str(seeded.campaign_id)),
    ]
