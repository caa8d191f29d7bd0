"""Every CLI error in both languages (issue 9, item 7), and `users create` without a terminal."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from dispatch.cli import main

CJK = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]{3,}")


def bilingual(text: str) -> bool:
    line = text.strip()
    return (
        bool(line)
        and line.startswith("error: ")
        and bool(CJK.search(line))
        and bool(LATIN.search(line))
    )


def cli(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input)


def dispatch_process(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """The real console entry point, with no terminal on stdin (as in a script or CI)."""
    environment = {**os.environ, "DISPATCH_DATA_DIR": str(tmp_path / "var"), **env}
    environment.pop("DISPATCH_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", "from dispatch.cli import main; main()", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    "args, stdin",
    [
        (["send"], None),  # click's own usage error
        (["campaigns", "show", "x"], None),
        (["campaigns", "show", "987654"], None),
        (["send", "no-such-issue", "--lists", "nope"], None),
        (["users", "create", "--email", "x@example.org", "--password-stdin"], "short\n"),
        (["users", "create", "--email", "not an email", "--password-stdin"], "long enough pw\n"),
        (["users", "create", "--email", "x@example.org", "--password-stdin"], "\n"),
        (["users", "token", "--email", "nobody@example.org"], None),
        (["subscribers", "import", "/nonexistent.csv", "--list", "nope"], None),
    ],
)
def test_cli_errors_are_one_line_in_both_languages(settings, engine, args, stdin):
    result = cli(*args, input=stdin)
    assert result.exit_code != 0
    assert bilingual(result.stderr.splitlines()[0]), result.stderr


def test_users_create_without_a_terminal_says_how_instead_of_aborting(tmp_path):
    done = dispatch_process(["users", "create", "--email", "admin@example.org"], tmp_path)
    assert done.returncode == 1
    assert "Aborted" not in done.stderr and "--password-stdin" in done.stderr
    assert bilingual(done.stderr.splitlines()[0]), done.stderr


def test_users_create_with_password_stdin_from_a_pipe(tmp_path):
    environment = {**os.environ, "DISPATCH_DATA_DIR": str(tmp_path / "var")}
    environment.pop("DISPATCH_DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", "from dispatch.cli import main; main()"]
        + ["users", "create", "--email", "admin@example.org", "--role", "admin"]
        + ["--password-stdin"],
        input="a long enough password\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "created admin admin@example.org" in done.stdout


def test_a_bad_setting_is_named_in_both_languages(tmp_path):
    done = dispatch_process(["campaigns", "list"], tmp_path, DISPATCH_WEB_PORT="eighty")
    assert done.returncode == 1
    assert "DISPATCH_WEB_PORT" in done.stderr and bilingual(done.stderr.splitlines()[0])


def test_cli_test_send_skips_and_names_a_bad_address(settings, engine, tmp_path):
    from test_delivery_workers import _small_issue

    source = str(_small_issue(tmp_path / "issue"))
    result = cli("send", source, "--test", "tester@example.org", "--test", "bad-address")
    assert result.exit_code == 0, result.output
    assert "test send #" in result.stdout and "1 addresses" in result.stdout
    assert "not sent to bad-address" in result.stderr and "不发送给 bad-address" in result.stderr
    refused = cli("send", source, "--test", "bad-address")
    assert refused.exit_code == 1 and bilingual(refused.stderr.splitlines()[0])
    assert "bad-address" in refused.stderr
