"""`dispatch users create|token|list`: the first admin from the command line, tokens that work."""

from __future__ import annotations

from click.testing import CliRunner

from dispatch.cli import main
from dispatch.web.pages_auth import safe_next
from test_web_support import bearer

pytest_plugins = ["test_web_support"]


def test_users_create_token_and_list(settings, engine, client):
    runner = CliRunner()
    created = runner.invoke(
        main,
        [
            "users",
            "create",
            "--email",
            "Boss@Example.org",
            "--role",
            "admin",
            "--password-stdin",
            "--json",
        ],
        input="a good long password\n",
    )
    assert created.exit_code == 0, created.output
    assert '"role": "admin"' in created.output and "boss@example.org" in created.output
    again = runner.invoke(
        main,
        ["users", "create", "--email", "boss@example.org", "--password-stdin"],
        input="another password\n",
    )
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(
        main, ["users", "create", "--email", "x@example.org", "--password-stdin"], input="short\n"
    )
    assert short.exit_code != 0 and "password" in short.output
    token = runner.invoke(main, ["users", "token", "--email", "boss@example.org", "--name", "ci"])
    assert token.exit_code == 0 and token.output.startswith("dsp_")
    assert client.get("/api/lists", headers=bearer(token.output.strip())).status_code == 200
    listed = runner.invoke(main, ["users", "list"])
    assert "boss@example.org" in listed.output and "admin" in listed.output
    assert runner.invoke(main, ["users", "token", "--email", "nobody@example.org"]).exit_code != 0


def test_redirect_targets_stay_on_this_site():
    assert safe_next("/admin/lists") == "/admin/lists"
    for hostile in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "",
        None,
        "/admin/\r\nSet-Cookie: x=1",
    ):
        assert safe_next(hostile) == "/admin/"
