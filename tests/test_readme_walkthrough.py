"""The README walked as a new user would (issue 9): its demo command, then "A month's work,
end to end", line by line as written, on a fresh copy of the project with a fresh data dir on
the embedded default. The commands are read from README.md itself, so they cannot drift.

What the test adds around the lines, and only that: free ports for the web server and the
fake WeChat API (through the environment variables the README's commands read), a loopback
DNS address for `dispatch doctor` (no query leaves the machine), exit status
1 accepted from `dispatch doctor` (it reports failing checks that way, as the README says),
and the last line's `dispatch web` run in the background and checked over HTTP.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from dispatch.outbox import free_port
from dispatch.paths import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
BIN = Path(sys.executable).parent


def bash_blocks(section: str) -> list[list[str]]:
    """The ```bash blocks of the README section with this heading, as lists of lines."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"## {section}")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end != -1 else None]
    return [
        [line for line in block.splitlines() if line.strip()]
        for block in re.findall(r"```bash\n(.*?)```", body, re.S)
    ]


def command_part(line: str) -> str:
    """The line without its trailing comment (a `#` after whitespace, outside quotes)."""
    out, quote = [], ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()) and "${" not in line[i - 2 : i]:
            break
        out.append(ch)
    return "".join(out).rstrip()


def fresh_copy(tmp_path: Path) -> Path:
    """The tracked files of the project, as a fresh clone has them (no var/, no config)."""
    root = tmp_path / "clone"
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            target = root / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return root


def fresh_environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DISPATCH_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DISPATCH_CONFIG"] = str(tmp_path / "no-config.toml")  # no developer's config file
    # `dispatch doctor` asks DNS: a loopback port nobody answers on (each question a quick
    # timeout, reported as such) instead of the machine's resolver; tests stay on loopback
    env["DISPATCH_DNS_NAMESERVERS"] = f"127.0.0.1:{free_port()}"
    env["DISPATCH_DNS_TIMEOUT"] = "0.2"
    env.update(extra)
    return env


def stop_group(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """Stop every process the walkthrough started (they share one process group): SIGTERM,
    then SIGKILL for whatever still runs after `grace` seconds. Waiting only for the shell is
    not enough: a Celery worker in warm shutdown outlives it and would be left behind."""

    def alive() -> bool:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()  # reap the shell, so a finished group really is empty
        if not alive():
            break
        time.sleep(0.3)
    else:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def wait_up(base: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{base} did not come up:\n{log.read_text()[-3000:]}")


def admin_page(base: str, email: str, password: str, path: str) -> httpx.Response:
    with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as client:
        login = client.get("/admin/login")
        csrf = login.text.split('name="csrf_token" value="')[1].split('"')[0]
        answer = client.post(
            "/admin/login",
            data={"email": email, "password": password, "csrf_token": csrf, "next": path},
        )
        assert answer.status_code == 200 and "/admin/login" not in str(answer.url), answer.text
        return client.get(path)


@pytest.mark.slow
def test_the_demo_ends_with_the_command_that_opens_its_results(tmp_path):
    [first] = bash_blocks("Two commands")[:1]
    demo_line = next(line for line in first if "dispatch demo" in line)
    demo = command_part(demo_line).split("&&")[-1].strip()  # the venv of this run stands in
    assert demo.endswith("dispatch demo")
    root = fresh_copy(tmp_path)
    env = fresh_environment(tmp_path)
    done = subprocess.run(
        ["bash", "-c", "dispatch demo"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    command = next(line.strip() for line in lines if line.strip().endswith("dispatch web"))
    login = next(line for line in lines if "log in as" in line)
    url, email, password = re.search(r"open (\S+) and log in as (\S+) / (\S+) \(", login).groups()
    port = free_port()
    log = tmp_path / "demo-web.log"
    with log.open("w") as out:
        web = subprocess.Popen(
            ["bash", "-c", command],
            cwd=root,
            env={**env, "DISPATCH_WEB_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_up(base, web, log)
        path = "/" + url.split("/", 3)[3]
        page = admin_page(base, email, password, path)
        assert page.status_code == 200 and "finished" in page.text, page.text[:2000]
    finally:
        stop_group(web)


@pytest.mark.slow
def test_a_months_work_runs_as_written_on_a_fresh_clone(tmp_path):
    [lines] = bash_blocks("A month's work, end to end")[:1]
    root = fresh_copy(tmp_path)
    web_port, wechat_port = free_port(), free_port()
    env = fresh_environment(
        tmp_path, DISPATCH_WEB_PORT=str(web_port), FAKE_WECHAT_PORT=str(wechat_port)
    )
    script = ["set -e -o pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    last = command_part(lines[-1])
    assert last == "dispatch web", "the walkthrough ends by serving the web admin"
    for line in lines[:-1]:
        command = command_part(line)
        script.append(f"echo '>>> {command.replace(chr(39), '')}' >&2")
        if command == "dispatch doctor":
            command += " || [ $? -eq 1 ]"  # failing checks are its report, not its failure
        script.append(command)
    script += ["dispatch web & echo $! > web.pid", "wait"]
    log = tmp_path / "walkthrough.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", "\n".join(script)],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{web_port}"
        deadline = time.monotonic() + 600
        while not (root / "web.pid").exists():
            assert proc.poll() is None, log.read_text()[-5000:]
            assert time.monotonic() < deadline, log.read_text()[-5000:]
            time.sleep(0.5)
        wait_up(base, proc, log)
        page = admin_page(base, "admin@example.org", "choose-a-long-password", "/admin/campaigns")
        assert page.status_code == 200
        for campaign in (2, 3):
            shown = admin_page(
                base, "admin@example.org", "choose-a-long-password", f"/admin/campaigns/{campaign}"
            )
            assert shown.status_code == 200 and "finished" in shown.text, log.read_text()[-3000:]
    finally:
        stop_group(proc)
    output = log.read_text()
    assert "campaign #2 created: 5 recipients" in output, output[-5000:]
    assert "1 people added to its lists since are queued" in output
    assert (root / "preview" / "email.html").exists()
    received = sorted(p.name.split("-", 1)[1] for p in (root / "var" / "outbox").glob("*.eml"))
    assert len(received) == 7 and "late@example.org.eml" in received, received
