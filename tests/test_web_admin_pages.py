"""Admin pages a new user trips over (issue 9): 404 keeps the navigation, test sends with a bad
address, the import report and list choice, the no-worker warning."""

from __future__ import annotations

from test_web_support import login, make_user

pytest_plugins = ["test_web_support"]


def test_admin_404_keeps_the_admin_navigation(client, engine, settings):
    make_user(engine, "admin")
    login(client, "admin@example.org")
    page = client.get("/admin/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404
    assert 'href="/admin/campaigns"' in page.text and 'href="/admin/lists"' in page.text
    assert "admin@example.org" in page.text  # signed in, with the logout button
    client.cookies.clear()
    anonymous = client.get("/admin/no-such-page", headers={"accept": "text/html"})
    assert anonymous.status_code == 404 and 'href="/admin/campaigns"' not in anonymous.text
