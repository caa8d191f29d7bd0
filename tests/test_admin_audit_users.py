"""The audit page (filters, keyset pages, CSV), its API, and the users and tokens page."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch import audit
from dispatch.models import AuditEntry
from dispatch.models.web import ApiToken, User
from dispatch.vocabulary import AuditAction, AuditTarget
from test_web_support import bearer, login, make_user

pytest_plugins = ["test_web_support"]


def _actions(engine) -> list[str]:
    with Session(engine) as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)))


def test_audit_page_filters_pages_and_exports(client, engine, settings):
    token = make_user(engine, "admin")
    editor_token = make_user(engine, "editor")
    with Session(engine) as session, session.begin():
        for i in range(60):
            audit.record(session, audit.CLI, AuditAction.PUBLISH, AuditTarget.ISSUE, f"s{i}")
        audit.record(session, audit.SYSTEM, AuditAction.SEND, AuditTarget.CAMPAIGN, "=1+1")
    csrf = login(client, "admin@example.org")
    assert csrf
    client.cookies.set("dispatch_lang", "zh-CN")
    page = client.get("/admin/audit")
    assert page.status_code == 200 and 'id="audit-older"' in page.text
    assert "发送" in page.text and "命令行" in page.text
    older = page.text.split('id="audit-older" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(older)
    assert second.text.count("<tr>") >= 10 and 'id="audit-older"' not in second.text
    only = client.get("/admin/audit?action=send")
    assert only.text.count("=1+1") == 1 and "s59" not in only.text
    assert client.get("/admin/audit?action=nonsense").status_code == 422
    exported = client.get("/admin/audit.csv?action=send")
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert len(rows) == 2 and rows[1][rows[0].index("target_id")] == "'=1+1"
    api = client.get("/api/audit?limit=5", headers=bearer(token)).json()
    assert len(api["items"]) == 5 and api["next_before"]
    assert api["items"][0]["action"] == "export"  # the CSV export above left its row
    assert client.get("/api/audit", headers=bearer(editor_token)).status_code == 403
    assert client.get("/api/audit/export", headers=bearer(token)).status_code == 200


def test_users_page_creates_changes_disables_and_manages_tokens(client, engine, settings):
    make_user(engine, "admin")
    csrf = login(client, "admin@example.org")
    made = client.post(
        "/admin/users",
        data={
            "csrf_token": csrf,
            "email": "Rev@Example.org",
            "password": "long enough",
            "role": "editor",
        },
    )
    assert made.status_code == 200 and "rev@example.org" in made.text
    dup = client.post(
        "/admin/users",
        data={"csrf_token": csrf, "email": "rev@example.org", "password": "long enough"},
    )
    assert dup.status_code == 422 and "already exists" in dup.text
    with Session(engine) as session:
        rev = session.scalars(select(User).where(User.email == "rev@example.org")).one()
        me = session.scalars(select(User).where(User.email == "admin@example.org")).one()
    assert (
        client.post(
            f"/admin/users/{rev.id}", data={"csrf_token": csrf, "role": "admin"}
        ).status_code
        == 200
    )
    assert (
        client.post(
            f"/admin/users/{rev.id}", data={"csrf_token": csrf, "disabled": "1"}
        ).status_code
        == 200
    )
    refused = client.post(f"/admin/users/{me.id}", data={"csrf_token": csrf, "disabled": "1"})
    assert refused.status_code == 409
    with Session(engine) as session:
        assert session.get(User, me.id).disabled_at is None
        assert session.get(User, rev.id).disabled_at is not None
    shown = client.post(f"/admin/users/{me.id}/tokens", data={"csrf_token": csrf, "name": "ci"})
    plain = shown.text.split('<code class="secret">')[1].split("<")[0]
    assert client.get("/api/lists", headers=bearer(plain)).status_code == 200
    assert plain not in client.get("/admin/users").text  # shown once only
    with Session(engine) as session:
        token_id = session.scalars(select(ApiToken.id).where(ApiToken.name == "ci")).one()
    client.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf})
    assert client.get("/api/lists", headers=bearer(plain)).status_code == 401
    assert _actions(engine)[1:] == [
        "create_user",
        "change_user",
        "disable_user",
        "create_token",
        "revoke_token",
    ]
    with Session(engine) as session:
        change = session.scalars(select(AuditEntry).where(AuditEntry.action == "change_user")).one()
    assert (change.before, change.after) == ({"role": "editor"}, {"role": "admin"})


def test_editors_cannot_reach_the_admin_pages(client, engine, settings):
    make_user(engine, "editor")
    login(client, "editor@example.org")
    for path in ("/admin/users", "/admin/audit", "/admin/audit.csv"):
        assert client.get(path).status_code == 403
