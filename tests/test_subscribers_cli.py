"""`dispatch lists …` and `dispatch subscribers …` through click's CliRunner on both backends."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dispatch.cli import main
from dispatch.models.subscriber import Subscriber


@pytest.fixture
def run(settings, engine):
    """Invoke the CLI on the test database (`engine` empties the tables afterwards)."""
    runner = CliRunner()
    env = {
        "DISPATCH_DATABASE_URL": settings.database_url,
        "DISPATCH_DATA_DIR": str(settings.data_dir),
    }

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), env=env, catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output + result.stderr
        else:
            assert result.exit_code != 0, result.output
        return result

    return invoke


def test_lists_commands(run):
    created = json.loads(
        run("lists", "create", "news", "--name", "工作简报", "--optin", "double", "--json").stdout
    )
    assert created["slug"] == "news" and created["optin"] == "double"
    assert "created list plain" in run("lists", "create", "plain").stdout
    listed = json.loads(run("lists", "list", "--json").stdout)
    assert [item["slug"] for item in listed] == ["news", "plain"]
    shown = json.loads(run("lists", "show", "news", "--json").stdout)
    assert shown["members"] == {"unconfirmed": 0, "confirmed": 0, "unsubscribed": 0}
    assert shown["recipients"] == {"email": 0, "wechat": 0}
    failed = run("lists", "create", "news", ok=False)
    assert failed.stderr.count("\n") == 1 and "already exists" in failed.stderr
    assert "no list 'nope'" in run("lists", "show", "nope", ok=False).stderr
    assert "deleted list plain" in run("lists", "delete", "plain", "--yes").stdout
    run("lists", "delete", "news", ok=False)  # no --yes and no terminal: refused


def test_subscribers_commands(run, settings, session):
    run("lists", "create", "news")
    run("lists", "create", "confirm", "--optin", "double")
    added = json.loads(
        run(
            "subscribers",
            "add",
            "Wang@Example.ORG",
            "--name",
            "王芳",
            "--locale",
            "zh",
            "--attr",
            "org=CNIS",
            "--list",
            "news",
            "--list",
            "confirm",
            "--json",
        ).stdout
    )
    assert added["email"] == "Wang@example.org" and added["attributes"] == {"org": "CNIS"}
    assert {item["slug"]: item["status"] for item in added["lists"]} == {
        "confirm": "unconfirmed",
        "news": "confirmed",
    }
    assert len(list((settings.data_dir / "outbox").glob("*.eml"))) == 1  # the double opt-in email
    run("subscribers", "add", "--openid", "oFAN", "--name", "粉丝", "--list", "news")

    shown = json.loads(run("subscribers", "show", "Wang@example.org", "--json").stdout)
    assert shown["id"] == added["id"] and not shown["suppressed"]
    listed = json.loads(run("subscribers", "list", "--list", "news", "--json").stdout)
    assert [(d["email"], d["subscription"]) for d in listed] == [
        ("Wang@example.org", "confirmed"),
        (None, "confirmed"),
    ]
    assert "王芳" in run("subscribers", "list").stdout

    assert (
        "key=value"
        in run("subscribers", "add", "x@example.org", "--attr", "novalue", ok=False).stderr
    )
    assert "invalid email" in run("subscribers", "add", "x@@example.org", ok=False).stderr
    assert "already belongs" in run("subscribers", "add", "Wang@example.org", ok=False).stderr
    assert "no subscriber" in run("subscribers", "show", "nobody@example.org", ok=False).stderr

    suppressed = json.loads(
        run("subscribers", "suppress", "Wang@example.org", "--reason", "bounced", "--json").stdout
    )
    assert suppressed["reason"] == "bounced"
    assert (
        json.loads(run("subscribers", "show", str(added["id"]), "--json").stdout)["status"]
        == "bounced"
    )
    assert json.loads(run("lists", "show", "news", "--json").stdout)["recipients"] == {
        "email": 0,
        "wechat": 1,
    }
    assert (
        json.loads(run("subscribers", "unsuppress", "Wang@example.org", "--json").stdout)["removed"]
        is True
    )
    assert "was not suppressed" in run("subscribers", "unsuppress", "Wang@example.org").stdout

    left = json.loads(run("subscribers", "unsubscribe", "oFAN", "--list", "news", "--json").stdout)
    assert left["changed"] is True and left["lists"][0]["status"] == "unsubscribed"
    assert (
        json.loads(run("subscribers", "unsubscribe", "oFAN", "--list", "news", "--json").stdout)[
            "changed"
        ]
        is False
    )
    assert (
        "--resubscribe"
        in run("subscribers", "subscribe", "oFAN", "--list", "news", ok=False).stderr
    )
    back = json.loads(
        run("subscribers", "subscribe", "oFAN", "--list", "news", "--resubscribe", "--json").stdout
    )
    assert back["lists"][0]["status"] == "confirmed"

    removed = json.loads(run("subscribers", "remove", "oFAN", "--json").stdout)
    assert removed["openid"] == "oFAN"
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1


def test_import_and_export_commands(run, tmp_path):
    run("lists", "create", "news")
    source = tmp_path / "people.csv"
    source.write_bytes(
        "email,name,locale,department\r\nli@example.org,李雷,zh-CN,研究所\r\nbad@@x,坏,en,\r\n"
        "han@example.org,韩梅梅,fr,\r\nlucy@example.org,Lucy,en,Office\r\n".encode("gb18030")
    )
    dry = run("subscribers", "import", str(source), "--list", "news", "--dry-run")
    assert "dry run" in dry.stdout and "imported 2" in dry.stdout
    assert (
        f"{source}:3: invalid_email" in dry.stderr and f"{source}:4: unknown_locale" in dry.stderr
    )
    assert json.loads(run("lists", "show", "news", "--json").stdout)["members"]["confirmed"] == 0

    report = json.loads(
        run("subscribers", "import", str(source), "--list", "news", "--json").stdout
    )
    assert (report["imported"], report["skipped"], report["encoding"]) == (2, 2, "gb18030")
    assert report["skipped_by_reason"] == {"invalid_email": 1, "unknown_locale": 1}
    assert [p["line"] for p in report["problems"]] == [3, 4]
    again = run("subscribers", "import", str(source), "--list", "news")
    assert (
        "imported 0, added to the list 0, details updated 0, unchanged 2, skipped 2" in again.stdout
    )

    out = tmp_path / "export.csv"
    summary = json.loads(
        run("subscribers", "export", "--list", "news", "--out", str(out), "--json").stdout
    )
    assert summary["rows"] == 2
    assert (
        "--json needs --out"
        in run("subscribers", "export", "--list", "news", "--json", ok=False).stderr
    )
    data = out.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.decode("utf-8-sig").splitlines() == [
        "email,name,locale,openid,status,department",
        "li@example.org,李雷,zh-CN,,confirmed,研究所",
        "lucy@example.org,Lucy,en,,confirmed,Office",
    ]
    stdout_export = run("subscribers", "export", "--list", "news", "--status", "confirmed").stdout
    assert "李雷" in stdout_export
    run("lists", "create", "copy")
    copied = json.loads(run("subscribers", "import", str(out), "--list", "copy", "--json").stdout)
    assert (copied["added"], copied["skipped"]) == (2, 0), copied

    noheader = tmp_path / "noheader.csv"
    noheader.write_text("li@example.org,李雷\n", encoding="utf-8")
    failed = run("subscribers", "import", str(noheader), "--list", "news", ok=False)
    assert "header row missing" in failed.stderr and failed.stderr.count("\n") == 1
    assert (
        "no list 'nope'"
        in run("subscribers", "import", str(source), "--list", "nope", ok=False).stderr
    )
    assert (
        "no list 'nope'"
        in run(
            "subscribers", "export", "--list", "nope", "--out", str(tmp_path / "x.csv"), ok=False
        ).stderr
    )
    assert not (tmp_path / "x.csv").exists()
