"""Hostile: guessing passwords and API tokens.

Failures are recorded and answered slowly; past a few, the client waits (doubling, capped)
before its next attempt is even checked, the right password included. Per account+address,
per address, and per account from everywhere; never a permanent lock: once the wait is over
the owner logs in. The same holds for API bearer tokens, per client address.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.models import utcnow
from dispatch.models.security import AuthAttempt
from dispatch.web import users
from dispatch.web.app import create_app
from test_web_support import PASSWORD, ListQueue, bearer, make_user

pytest_plugins = ["test_web_support"]


@pytest.fixture
def app(settings, engine):
    app = create_app(settings.replace(login_failure_pause_seconds=0.0))
    app.state.batch_queue = ListQueue()
    return app


def _client(app, address: str) -> TestClient:
    return TestClient(app, base_url="https://testserver", client=(address, 40000))


@pytest.fixture
def attacker(app) -> Iterator[TestClient]:
    with _client(app, "203.0.113.66") as c:
        yield c


@pytest.fixture
def owner_elsewhere(app) -> Iterator[TestClient]:
    with _client(app, "198.51.100.7") as c:
        yield c


def _try(client: TestClient, email: str, password: str):
    page = client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    return client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token, "next": "/admin/"},
        follow_redirects=False,
    )


def _age_attempts(engine, seconds: float) -> None:
    """Move every recorded attempt back in time (instead of sleeping through the wait)."""
    with Session(engine) as session, session.begin():
        for attempt in session.scalars(select(AuthAttempt)):
            attempt.occurred_at = attempt.occurred_at - timedelta(seconds=seconds)


def test_wrong_passwords_then_the_right_one_is_refused_until_the_wait_is_over(
    engine, attacker, monkeypatch
):
    make_user(engine, "admin", "owner@example.org")
    for _ in range(5):
        assert _try(attacker, "owner@example.org", "wrong-guess-123").status_code == 401
    checked = {"n": 0}
    real_verify = users.verify_password

    def counting(hash_, password):
        checked["n"] += 1
        return real_verify(hash_, password)

    monkeypatch.setattr(users, "verify_password", counting)
    refused = _try(attacker, "OWNER@example.org", PASSWORD)  # right password, other case
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert "Too many failed log-ins" in refused.text or "登录失败次数过多" in refused.text
    assert "dispatch_session" not in refused.cookies
    assert checked["n"] == 0  # the password was not even looked at
    with Session(engine) as session:
        failures = session.scalars(select(AuthAttempt).where(AuthAttempt.ok.is_(False))).all()
    assert len(failures) == 5
    assert {(f.kind, f.account, f.client) for f in failures} == {
        ("password", "owner@example.org", "203.0.113.66")
    }
    _age_attempts(engine, 60)
    assert _try(attacker, "owner@example.org", PASSWORD).status_code == 303


def test_the_wait_doubles_and_is_capped_never_a_lock(engine, attacker, settings):
    make_user(engine, "admin", "owner@example.org")
    waits = []
    for _ in range(12):
        response = _try(attacker, "owner@example.org", "wrong-guess-123")
        if response.status_code == 429:
            waits.append(int(response.headers["Retry-After"]))
            _age_attempts(engine, waits[-1])  # wait it out, then guess again
    assert waits[:3] == [1, 2, 4]
    assert all(b >= a for a, b in zip(waits, waits[1:], strict=False))
    _age_attempts(engine, 10_000)  # many failures, and yet: the wait ends
    assert _try(attacker, "owner@example.org", PASSWORD).status_code == 303
    capped = settings.replace(login_max_delay_seconds=7)
    from dispatch.web.throttle import _wait

    assert _wait(capped, 500, 5) == 7


def test_one_address_guessing_many_accounts_is_throttled(engine, attacker, owner_elsewhere):
    make_user(engine, "admin", "owner@example.org")
    for i in range(20):
        assert _try(attacker, f"user{i}@example.org", "wrong-guess-123").status_code == 401
    assert _try(attacker, "owner@example.org", PASSWORD).status_code == 429
    # the owner, at their own address, is not locked out by someone else's guessing
    assert _try(owner_elsewhere, "owner@example.org", PASSWORD).status_code == 303


def test_failures_from_many_addresses_throttle_the_account(app, engine, settings):
    make_user(engine, "admin", "owner@example.org")
    for i in range(settings.login_free_failures_global):
        with _client(app, f"10.0.{i // 250}.{i % 250 + 1}") as c:
            assert _try(c, "owner@example.org", "wrong-guess-123").status_code == 401
    with _client(app, "192.0.2.200") as fresh:
        assert _try(fresh, "owner@example.org", PASSWORD).status_code == 429
    _age_attempts(engine, settings.login_max_delay_seconds + 1)
    with _client(app, "192.0.2.200") as fresh:
        assert _try(fresh, "owner@example.org", PASSWORD).status_code == 303


def test_a_success_clears_the_pairs_count(engine, attacker):
    make_user(engine, "admin", "owner@example.org")
    for _ in range(4):
        _try(attacker, "owner@example.org", "typo-typo-typo")
    assert _try(attacker, "owner@example.org", PASSWORD).status_code == 303
    for _ in range(4):  # four more typos after a success: still no wait
        assert _try(attacker, "owner@example.org", "typo-typo-typo").status_code == 401
    assert _try(attacker, "owner@example.org", PASSWORD).status_code == 303


def test_every_failed_log_in_answers_slowly(settings, engine):
    make_user(engine, "admin", "owner@example.org")
    app = create_app(settings.replace(login_failure_pause_seconds=0.4))
    with _client(app, "203.0.113.9") as c:
        started = time.monotonic()
        assert _try(c, "owner@example.org", "wrong-guess-123").status_code == 401
        assert time.monotonic() - started >= 0.4


def test_guessed_api_tokens_are_throttled_per_address(engine, attacker, owner_elsewhere, settings):
    token = make_user(engine, "admin", "owner@example.org")
    for i in range(settings.login_free_failures_client):
        assert attacker.get("/api/lists", headers=bearer(f"dsp_guess{i}")).status_code == 401
    refused = attacker.get("/api/lists", headers=bearer(token))  # a right token, too
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    write = attacker.post("/api/lists", headers=bearer(token), json={"slug": "x", "name": "x"})
    assert write.status_code == 429  # the guard before the body says so too
    assert owner_elsewhere.get("/api/lists", headers=bearer(token)).status_code == 200
    with Session(engine) as session:
        recorded = session.scalar(
            select(func.count()).where(AuthAttempt.kind == "token", AuthAttempt.ok.is_(False))
        )
    assert recorded == settings.login_free_failures_client
    _age_attempts(engine, settings.login_max_delay_seconds + 1)
    assert attacker.get("/api/lists", headers=bearer(token)).status_code == 200


def test_old_failures_stop_counting(engine, settings):
    """Failures older than the window no longer count, even when their wait would go on."""
    make_user(engine, "admin", "owner@example.org")
    short = settings.replace(login_failure_pause_seconds=0.0, login_window_seconds=60)
    with Session(engine) as session, session.begin():
        for _ in range(12):  # twelve recent failures: a 2**7 = 128 s wait
            session.add(
                AuthAttempt(
                    kind="password",
                    account="owner@example.org",
                    client="203.0.113.77",
                    ok=False,
                    occurred_at=utcnow() - timedelta(seconds=2),
                )
            )
    with _client(create_app(short), "203.0.113.77") as c:
        assert _try(c, "owner@example.org", PASSWORD).status_code == 429
        _age_attempts(engine, 59)  # now 61 s old: out of the window, within the old wait
        assert _try(c, "owner@example.org", PASSWORD).status_code == 303


def test_failed_log_ins_are_listed_for_the_administrator(engine, attacker, settings):
    import json

    from click.testing import CliRunner

    from dispatch.cli import main

    make_user(engine, "admin", "owner@example.org")
    _try(attacker, "owner@example.org", "wrong-guess-123")
    attacker.get("/api/lists", headers=bearer("dsp_not_a_token"))
    result = CliRunner().invoke(
        main,
        ["users", "failures", "--json"],
        env={
            "DISPATCH_DATABASE_URL": settings.database_url,
            "DISPATCH_DATA_DIR": str(settings.data_dir),
        },
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [(r["kind"], r["account"], r["client"]) for r in listed] == [
        ("token", None, "203.0.113.66"),
        ("password", "owner@example.org", "203.0.113.66"),
    ]
    assert "wrong-guess-123" not in result.stdout  # the guess itself is never stored
