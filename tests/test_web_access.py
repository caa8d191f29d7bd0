"""Every route: anonymous 401, wrong role 403, right role gets through; CSRF on form posts.

The table comes from the app itself (dispatch.web.routes_index), so a route added later is
checked without touching this file; a route under /api/ or /admin/ without a role guard fails.
"""

from __future__ import annotations

import re

import pytest

from dispatch.web.app import PUBLIC_PATH_PREFIXES, create_app
from dispatch.web.routes_index import iter_routes
from test_web_support import PASSWORD, bearer, login, seed

pytest_plugins = ["test_web_support"]


def _fill(path: str, s) -> str:
    values = {
        "campaign_id": s.campaign_id,
        "issue_id": s.issue_id,
        "list_id": s.list_id,
        "subscriber_id": s.subscriber_ids[0],
        "slug": s.issue_slug,
        "token": "x",
        "code": "en",
        "name": "images/cover.png",
        "suppression_id": 1,
        "bounce_id": 1,
        "user_id": 1,
        "number": 1,  # an issue version (dispatch.editorial)
        "rel": "images/cover.png",
        "folder": "x",
        "token_id": 99999,  # revoking a real one would end the test's own token
    }
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values[m.group(1)]), path)


def test_every_route_is_public_by_name_or_guarded(settings, engine):
    app = create_app(settings)
    for route in iter_routes(app):
        if route.role is None:
            assert route.path.startswith(PUBLIC_PATH_PREFIXES) or route.path in (
                "/",
                "/docs/oauth2-redirect",
            ), f"{route.path} has no role guard and is not a public path"
        else:
            assert route.path.startswith(("/api/", "/admin/")), route.path


def test_every_guarded_route_refuses_anonymous_and_wrong_role_and_admits_the_right_one(
    client, web_app, engine, settings, tokens
):
    s = seed(engine, settings)
    guarded = [r for r in iter_routes(web_app) if r.role is not None]
    assert len(guarded) > 30
    for route in guarded:
        for method in sorted(route.methods):
            url = _fill(route.path, s)
            anonymous = client.request(method, url, follow_redirects=False)
            assert anonymous.status_code == 401, (method, url, anonymous.status_code)
            if route.role in ("admin", "reviewer"):
                wrong = client.request(
                    method, url, headers=bearer(tokens["editor"]), follow_redirects=False
                )
                assert wrong.status_code == 403, (method, url, wrong.status_code)
            right = client.request(
                method, url, headers=bearer(tokens[route.role]), follow_redirects=False
            )
            assert right.status_code not in (401, 403), (
                method,
                url,
                right.status_code,
                right.text[:200],
            )
            assert right.status_code < 500, (method, url, right.status_code, right.text[:300])


def test_bad_bearer_token_and_forged_cookie_are_anonymous(client, engine, settings, tokens):
    assert client.get("/api/lists", headers=bearer(tokens["admin"] + "x")).status_code == 401
    assert client.get("/api/lists", headers=bearer("nonsense")).status_code == 401
    client.cookies.set("dispatch_session", "eyJ1IjoxfQ.forged.sig")
    assert client.get("/api/lists").status_code == 401
    assert client.get("/admin/lists").status_code == 401


def test_login_sets_a_hardened_cookie_and_pages_work(client, engine, settings, tokens):
    page = client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(
        "/admin/login",
        data={"email": "admin@example.org", "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=lax" in cookie.lower()
    assert client.get("/admin/lists").status_code == 200
    assert client.get("/api/lists").status_code == 200


def test_wrong_password_and_login_without_csrf_are_refused(client, engine, settings, tokens):
    page = client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    r = client.post(
        "/admin/login",
        data={"email": "admin@example.org", "password": "wrong-password", "csrf_token": token},
    )
    assert r.status_code == 401 and "dispatch_session" not in r.headers.get("set-cookie", "")
    r = client.post("/admin/login", data={"email": "admin@example.org", "password": PASSWORD})
    assert r.status_code == 403 and "dispatch_session" not in r.headers.get("set-cookie", "")


def test_admin_form_post_without_csrf_token_is_refused(client, engine, settings, tokens):
    csrf = login(client, "admin@example.org")
    refused = client.post(
        "/admin/lists", data={"slug": "no-csrf", "name": "No CSRF"}, follow_redirects=False
    )
    assert refused.status_code == 403
    wrong = client.post(
        "/admin/lists",
        data={"slug": "no-csrf", "name": "x", "csrf_token": "wrong"},
        follow_redirects=False,
    )
    assert wrong.status_code == 403
    api = client.post("/api/lists", json={"slug": "no-csrf-api", "name": "x"})
    assert (
        api.status_code == 403
    )  # cookie-authenticated API writes need the X-CSRF-Token header too
    lists = client.get("/api/lists").json()
    assert not [entry for entry in lists if entry["slug"].startswith("no-csrf")]
    ok = client.post(
        "/admin/lists",
        data={"slug": "with-csrf", "name": "With CSRF", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert ok.status_code == 303
    ok_api = client.post(
        "/api/lists", json={"slug": "with-csrf-api"}, headers={"X-CSRF-Token": csrf}
    )
    assert ok_api.status_code == 201
    assert {"with-csrf", "with-csrf-api"} <= {
        entry["slug"] for entry in client.get("/api/lists").json()
    }


def test_editor_sees_editor_pages_but_not_admin_ones(client, engine, settings, tokens):
    login(client, "editor@example.org")
    assert client.get("/admin/issues").status_code == 200
    assert client.get("/admin/subscribers").status_code == 403
    assert client.get("/api/subscribers").status_code == 403


@pytest.mark.parametrize("path", ["/admin/", "/admin/lists", "/api/lists"])
def test_logout_ends_the_session(client, engine, settings, tokens, path):
    csrf = login(client, "admin@example.org")
    assert client.get(path).status_code == 200
    assert (
        client.post("/admin/logout", data={"csrf_token": csrf}, follow_redirects=False).status_code
        == 303
    )
    assert client.get(path).status_code == 401
