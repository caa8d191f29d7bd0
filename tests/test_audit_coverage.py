"""Issue 19 item 7: every action of the audit list leaves its row, through every door it has.

One table: each case does one action through one door (the CLI through click, an admin page
with a signed-in administrator, the API with a token) against a real database (SQLite and
PostgreSQL, from the fixtures), then reads the rows written since and checks who (the admin's
address, or "cli"), what, on which target, and the before/after where it says something.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.editorial import review, versions
from dispatch.models import AuditEntry
from dispatch.models.subscriber import Subscriber, Suppression
from dispatch.models.web import User
from dispatch.subscribers import service
from test_delivery_support import make_list_with
from test_web_support import PASSWORD, bearer, login, make_user

pytest_plugins = ["test_web_support"]
VALID = Path(__file__).parent / "fixtures" / "issues" / "valid"
ADMIN = "admin@example.org"
EDITOR = "editor@example.org"  # submits what the administrator then reviews
CSV = b"email,name\nnew1@example.org,New One\nnew2@example.org,New Two\n"
LATER = "2999-01-01T09:00"


@dataclass
class World:
    """What a case acts on: a published issue (version 1, a draft), a list of two people, a
    draft campaign of the issue to that list, an administrator signed in (with a token) and an
    editor."""

    client: Any
    engine: Any
    settings: Any
    tmp: Path
    csrf: str
    token: str
    issue_id: int
    slug: str
    list_id: int
    campaign_id: int
    folder: Path
    people: tuple[int, ...] = ()  # a@ and b@ on the list, by id (read before any deletion)

    def cli(self, *args: str, stdin: str | None = None) -> None:
        result = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
        assert result.exit_code == 0, result.output

    def page(self, path: str, files: Any = None, **data: Any) -> None:
        answer = self.client.post(path, data={"csrf_token": self.csrf, **data}, files=files)
        assert answer.status_code < 400, answer.text[:2000]

    def api(self, path: str, json: Any = None, **kw: Any) -> None:
        headers = {**bearer(self.token), **kw.pop("headers", {})}
        answer = self.client.post(path, json=json, headers=headers, **kw)
        assert answer.status_code < 400, answer.text[:2000]

    def patch(self, path: str, json: Any) -> None:
        answer = self.client.patch(path, json=json, headers=bearer(self.token))
        assert answer.status_code < 400, answer.text[:2000]

    def get(self, path: str, api: bool = False) -> None:
        answer = self.client.get(path, headers=bearer(self.token) if api else {})
        assert answer.status_code == 200, answer.text[:2000]

    def version(self, number: int = 1) -> Any:
        with Session(self.engine) as session:
            return versions.get_version(session, versions_issue(session, self.issue_id), number)

    def changed_folder(self) -> Path:
        """The issue's source with its title changed, under the data dir (publishable)."""
        folder = self.settings.data_dir / "src" / "changed"
        shutil.copytree(VALID, folder)
        text = (folder / "issue.md").read_text(encoding="utf-8")
        (folder / "issue.md").write_text(text.replace("title: 工作简报", "title: 新标题"), "utf-8")
        return folder

    def upload(self) -> list[tuple[str, tuple[str, bytes, str]]]:
        folder = self.changed_folder()
        names = ["issue.md", "images/cover.png", "images/photo.png"]
        return [
            ("files", (n, (folder / n).read_bytes(), "application/octet-stream")) for n in names
        ]

    def suppression_id(self) -> int:
        with Session(self.engine) as session:
            return session.scalars(select(Suppression.id)).one()

    def person_id(self) -> int:
        with Session(self.engine) as session:
            return session.scalars(select(Subscriber.id).order_by(Subscriber.id)).first()


def versions_issue(session: Session, issue_id: int) -> Any:
    from dispatch.models.issue import Issue

    return session.get(Issue, issue_id)


# -- states a case starts from -----------------------------------------------------------


def _running(w: World) -> None:
    campaigns.start(w.engine, w.settings, w.campaign_id, ListQueue())


def _paused(w: World) -> None:
    _running(w)
    with Session(w.engine) as session, session.begin():
        campaigns.pause(session, w.campaign_id, "test")


def _scheduled(w: World) -> None:
    with Session(w.engine) as session, session.begin():
        when = datetime(2999, 1, 1, tzinfo=UTC)
        campaigns.schedule(session, w.campaign_id, when, settings=w.settings)


def _submitted(w: World) -> None:
    with Session(w.engine) as session, session.begin():
        editor = session.scalars(select(User).where(User.email == EDITOR)).one()
        review.submit(
            session,
            versions.get_version(session, versions_issue(session, w.issue_id), 1),
            editor.id,
        )


def _suppressed(w: World) -> None:
    with Session(w.engine) as session, session.begin():
        service.suppress(session, email="x@example.org", reason="manual", source="test")


def _news(w: World) -> None:
    with Session(w.engine) as session, session.begin():
        service.create_list(session, "news", "News")


def _csv(w: World) -> Path:
    path = w.tmp / "people.csv"
    path.write_bytes(CSV)
    return path


# -- checks of before/after --------------------------------------------------------------


def _changed_hash(rows: list[AuditEntry]) -> None:
    row = next(r for r in rows if r.action == "publish")
    assert row.before and row.after and row.before["content_hash"] != row.after["content_hash"]


def _status(before: str | None, after: str) -> Callable[[list[AuditEntry]], None]:
    def check(rows: list[AuditEntry]) -> None:
        row = rows[-1]
        assert (row.before or {}).get("status") == before and row.after["status"] == after

    return check


def _imported(rows: list[AuditEntry]) -> None:
    assert rows[-1].after["imported"] == 2 and rows[-1].after["file"].endswith(".csv")


def _after(**expected: Any) -> Callable[[list[AuditEntry]], None]:
    def check(rows: list[AuditEntry]) -> None:
        assert {k: rows[-1].after.get(k) for k in expected} == expected

    return check


def _changed(before: dict[str, Any], after: dict[str, Any]) -> Callable[[list[Any]], None]:
    """Exactly the changed fields, before and after."""

    def check(rows: list[AuditEntry]) -> None:
        assert (rows[-1].before, rows[-1].after) == (before, after)

    return check


def _no_address(rows: list[AuditEntry]) -> None:
    """The person asked to be forgotten: their row names the id only, no address."""
    assert all("@" not in repr((r.target_id, r.before, r.after)) for r in rows)


def _no_check(rows: list[AuditEntry]) -> None:
    return None


@dataclass(frozen=True)
class Case:
    action: str
    door: str  # "cli", "web" or "api"
    do: Callable[[World], None]
    rows: tuple[tuple[str, str, str], ...]  # (action, target kind, target id) in order; see ids
    check: Callable[[list[AuditEntry]], None] = _no_check
    prepare: Callable[[World], object] | None = None


C, ISS, S, V, L, P = "campaign", "issue", "suppression", "version", "list", "subscriber"
CASES = [
    # publish: a folder from the CLI, on the fly by `dispatch send FOLDER`, an upload, the API
    Case(
        "publish",
        "cli",
        lambda w: w.cli("issues", "publish", str(w.changed_folder())),
        (("publish", ISS, "{slug}"),),
        _changed_hash,
    ),
    Case(
        "publish",
        "cli",
        lambda w: w.cli("send", str(w.changed_folder()), "--test", "t@example.org"),
        (("publish", ISS, "{slug}"), ("test_send", C, "{new}")),
        _changed_hash,
    ),
    Case(
        "publish",
        "web",
        lambda w: w.page("/admin/issues", files=w.upload()),
        (("publish", ISS, "{slug}"),),
        _changed_hash,
    ),
    Case(
        "publish",
        "api",
        lambda w: w.api("/api/issues", files=w.upload()),
        (("publish", ISS, "{slug}"),),
        _changed_hash,
    ),
    Case(
        "publish",
        "api",
        lambda w: w.api("/api/issues/publish", {"path": str(w.changed_folder())}),
        (("publish", ISS, "{slug}"),),
        _changed_hash,
    ),
    # the editor's desk: edit, submit, approve, reject (the page and the API)
    Case(
        "edit",
        "web",
        lambda w: w.page(
            f"/admin/issues/{w.issue_id}/source",
            text=(w.changed_folder() / "issue.md").read_text(),
            base_version=1,
        ),
        (("edit", V, "{v2}"),),
        _status("draft", "draft"),
    ),
    Case(
        "edit",
        "api",
        lambda w: w.api(
            f"/api/issues/{w.issue_id}/source",
            {"text": (w.changed_folder() / "issue.md").read_text(), "base_version": 1},
        ),
        (("edit", V, "{v2}"),),
        _status("draft", "draft"),
    ),
    Case(
        "submit",
        "web",
        lambda w: w.page(f"/admin/issues/{w.issue_id}/versions/1/submit"),
        (("submit", V, "{v1}"),),
        _status("draft", "submitted"),
    ),
    Case(
        "submit",
        "api",
        lambda w: w.api(f"/api/issues/{w.issue_id}/versions/1/submit"),
        (("submit", V, "{v1}"),),
        _status("draft", "submitted"),
    ),
    Case(
        "approve",
        "web",
        lambda w: w.page(
            f"/admin/issues/{w.issue_id}/versions/1/approve", content_hash=w.version().content_hash
        ),
        (("approve", V, "{v1}"),),
        _status("submitted", "approved"),
        _submitted,
    ),
    Case(
        "approve",
        "api",
        lambda w: w.api(
            f"/api/issues/{w.issue_id}/versions/1/approve",
            {"content_hash": w.version().content_hash},
        ),
        (("approve", V, "{v1}"),),
        _status("submitted", "approved"),
        _submitted,
    ),
    Case(
        "reject",
        "web",
        lambda w: w.page(f"/admin/issues/{w.issue_id}/versions/1/reject", comment="fix"),
        (("reject", V, "{v1}"),),
        _status("submitted", "draft"),
        _submitted,
    ),
    Case(
        "reject",
        "api",
        lambda w: w.api(f"/api/issues/{w.issue_id}/versions/1/reject", {"comment": "fix"}),
        (("reject", V, "{v1}"),),
        _status("submitted", "draft"),
        _submitted,
    ),
    # send, test send, schedule, unschedule
    Case(
        "send",
        "cli",
        lambda w: w.cli("send", w.slug, "--lists", "members"),
        (("send", C, "{cid}"),),
        _after(status="running", lists=["members"]),
    ),
    Case(
        "send",
        "web",
        lambda w: w.page(f"/admin/campaigns/{w.campaign_id}/start"),
        (("send", C, "{cid}"),),
    ),
    Case(
        "send",
        "api",
        lambda w: w.api(f"/api/campaigns/{w.campaign_id}/start"),
        (("send", C, "{cid}"),),
    ),
    Case(
        "test_send",
        "cli",
        lambda w: w.cli("send", w.slug, "--test", "t@example.org"),
        (("test_send", C, "{new}"),),
        _after(addresses=["t@example.org"]),
    ),
    Case(
        "test_send",
        "web",
        lambda w: w.page(f"/admin/issues/{w.issue_id}/test", emails="t@example.org"),
        (("test_send", C, "{new}"),),
        _after(addresses=["t@example.org"]),
    ),
    Case(
        "test_send",
        "api",
        lambda w: w.api(
            "/api/campaigns/test", {"issue_id": w.issue_id, "addresses": ["t@example.org"]}
        ),
        (("test_send", C, "{new}"),),
        _after(addresses=["t@example.org"]),
    ),
    Case(
        "schedule",
        "cli",
        lambda w: w.cli("send", w.slug, "--lists", "members", "--at", LATER + "+08:00"),
        (("schedule", C, "{cid}"),),
        _status("draft", "scheduled"),
    ),
    Case(
        "schedule",
        "web",
        lambda w: w.page(
            f"/admin/campaigns/{w.campaign_id}/schedule",
            at=LATER,
            zone="Asia/Shanghai",
            window="08:00-21:00",
        ),
        (("schedule", C, "{cid}"),),
        _status("draft", "scheduled"),
    ),
    Case(
        "unschedule",
        "web",
        lambda w: w.page(f"/admin/campaigns/{w.campaign_id}/unschedule"),
        (("unschedule", C, "{cid}"),),
        _status("scheduled", "draft"),
        _scheduled,
    ),
    # pause, resume, cancel
    Case(
        "pause",
        "cli",
        lambda w: w.cli("campaigns", "pause", str(w.campaign_id)),
        (("pause", C, "{cid}"),),
        prepare=_running,
    ),
    Case(
        "pause",
        "web",
        lambda w: w.page(f"/admin/campaigns/{w.campaign_id}/pause"),
        (("pause", C, "{cid}"),),
        prepare=_running,
    ),
    Case(
        "pause",
        "api",
        lambda w: w.api(f"/api/campaigns/{w.campaign_id}/pause"),
        (("pause", C, "{cid}"),),
        prepare=_running,
    ),
    Case(
        "resume",
        "cli",
        lambda w: w.cli("campaigns", "resume", str(w.campaign_id)),
        (("resume", C, "{cid}"),),
        prepare=_paused,
    ),
    Case(
        "resume",
        "web",
        lambda w: w.page(f"/admin/campaigns/{w.campaign_id}/resume"),
        (("resume", C, "{cid}"),),
        prepare=_paused,
    ),
    Case(
        "resume",
        "api",
        lambda w: w.api(f"/api/campaigns/{w.campaign_id}/resume"),
        (("resume", C, "{cid}"),),
        prepare=_paused,
    ),
    Case(
        "cancel",
        "cli",
        lambda w: w.cli("campaigns", "cancel", str(w.campaign_id)),
        (("cancel", C, "{cid}"),),
        prepare=_running,
    ),
    Case(
        "cancel",
        "web",
        lambda w: w.page(f"/admin/campaigns/{w.campaign_id}/cancel"),
        (("cancel", C, "{cid}"),),
        prepare=_running,
    ),
    Case(
        "cancel",
        "api",
        lambda w: w.api(f"/api/campaigns/{w.campaign_id}/cancel"),
        (("cancel", C, "{cid}"),),
        prepare=_running,
    ),
    # import: subscribers (CSV), suppressions (CSV)
    Case(
        "import",
        "cli",
        lambda w: w.cli("subscribers", "import", str(_csv(w)), "--list", "members"),
        (("import", L, "members"),),
        _imported,
    ),
    Case(
        "import",
        "web",
        lambda w: w.page(
            "/admin/subscribers/import",
            list_id=str(w.list_id),
            files={"file": ("people.csv", CSV, "text/csv")},
        ),
        (("import", L, "members"),),
        _imported,
    ),
    Case(
        "import",
        "api",
        lambda w: w.api(
            "/api/subscribers/import",
            data={"list_id": str(w.list_id)},
            files={"file": ("people.csv", CSV, "text/csv")},
        ),
        (("import", L, "members"),),
        _imported,
    ),
    Case(
        "import",
        "web",
        lambda w: w.page(
            "/admin/suppressions/import",
            files={"file": ("s.csv", b"email\nz@example.org\n", "text/csv")},
        ),
        (("import", S, ""),),
        _after(added=1, problems=0),
    ),
    Case(
        "import",
        "api",
        lambda w: w.api(
            "/api/suppressions/import",
            content=b"email\nz@example.org\n",
            headers={"Content-Type": "text/csv"},
        ),
        (("import", S, ""),),
        _after(added=1, problems=0),
    ),
    # export: a list (CSV), a person's data, the suppressions, the audit log itself
    Case(
        "export",
        "cli",
        lambda w: w.cli(
            "subscribers", "export", "--list", "members", "--out", str(w.tmp / "out.csv")
        ),
        (("export", L, "members"),),
        _after(file="out.csv"),
    ),
    Case(
        "export",
        "web",
        lambda w: w.get(f"/api/subscribers/export?list_id={w.list_id}"),
        (("export", L, "members"),),
    ),
    Case(
        "export",
        "api",
        lambda w: w.get(f"/api/subscribers/export?list_id={w.list_id}", api=True),
        (("export", L, "members"),),
    ),
    Case(
        "export",
        "web",
        lambda w: w.get(f"/admin/subscribers/{w.person_id()}/data.json"),
        (("export", "subscriber", "{person}"),),
    ),
    Case("export", "web", lambda w: w.get("/admin/suppressions/export"), (("export", S, ""),)),
    Case(
        "export", "api", lambda w: w.get("/api/suppressions/export", api=True), (("export", S, ""),)
    ),
    Case("export", "web", lambda w: w.get("/admin/audit.csv"), (("export", "audit", ""),)),
    Case(
        "export", "api", lambda w: w.get("/api/audit/export", api=True), (("export", "audit", ""),)
    ),
    # suppress, unsuppress
    Case(
        "suppress",
        "cli",
        lambda w: w.cli("subscribers", "suppress", "x@example.org"),
        (("suppress", S, "x@example.org"),),
        _after(reason="manual"),
    ),
    Case(
        "suppress",
        "web",
        lambda w: w.page("/admin/suppressions", email="x@example.org", note="asked"),
        (("suppress", S, "x@example.org"),),
        _after(reason="manual", note="asked"),
    ),
    Case(
        "suppress",
        "api",
        lambda w: w.api("/api/suppressions", {"email": "x@example.org", "note": "asked"}),
        (("suppress", S, "x@example.org"),),
        _after(reason="manual", note="asked"),
    ),
    Case(
        "unsuppress",
        "cli",
        lambda w: w.cli("subscribers", "unsuppress", "x@example.org"),
        (("unsuppress", S, "x@example.org"),),
        prepare=_suppressed,
    ),
    Case(
        "unsuppress",
        "web",
        lambda w: w.page(f"/admin/suppressions/{w.suppression_id()}/remove", note="ok"),
        (("unsuppress", S, "x@example.org"),),
        _after(note="ok"),
        _suppressed,
    ),
    Case(
        "unsuppress",
        "api",
        lambda w: w.api(f"/api/suppressions/{w.suppression_id()}/remove", {"note": "ok"}),
        (("unsuppress", S, "x@example.org"),),
        _after(note="ok"),
        _suppressed,
    ),
    # people, changed by an administrator: add, edit, subscribe, unsubscribe, delete, bulk
    Case(
        "add_subscriber",
        "cli",
        lambda w: w.cli(
            "subscribers", "add", "new@example.org", "--name", "N", "--list", "members"
        ),
        (("add_subscriber", P, "{newest}"),),
        _after(email="new@example.org", name="N", lists=["members"]),
    ),
    Case(
        "add_subscriber",
        "api",
        lambda w: w.api("/api/subscribers", {"email": "new@example.org", "list_ids": [w.list_id]}),
        (("add_subscriber", P, "{newest}"),),
        _after(email="new@example.org", lists=["members"]),
    ),
    Case(
        "change_subscriber",
        "web",
        lambda w: w.page(
            f"/admin/subscribers/{w.people[0]}/edit",
            name="A. Person",
            email="c@example.org",
            locale="en",
            channel="email",
        ),
        (("change_subscriber", P, "{p1}"),),
        _changed(
            {"email": "a@example.org", "name": "a", "locale": "zh-CN"},
            {"email": "c@example.org", "name": "A. Person", "locale": "en"},
        ),
    ),
    Case(
        "change_subscriber",
        "api",
        lambda w: w.patch(f"/api/subscribers/{w.people[0]}", {"email": "c@example.org"}),
        (("change_subscriber", P, "{p1}"),),
        _changed({"email": "a@example.org"}, {"email": "c@example.org"}),
    ),
    Case(
        "subscribe",
        "cli",
        lambda w: w.cli("subscribers", "subscribe", "a@example.org", "--list", "news"),
        (("subscribe", P, "{p1}"),),
        _after(lists=["news"]),
        _news,
    ),
    Case(
        "unsubscribe",
        "cli",
        lambda w: w.cli("subscribers", "unsubscribe", "a@example.org", "--list", "members"),
        (("unsubscribe", P, "{p1}"),),
        _after(list="members"),
    ),
    Case(
        "unsubscribe",
        "web",
        lambda w: w.page(f"/admin/subscribers/{w.people[0]}/unsubscribe"),
        (("unsubscribe", P, "{p1}"),),
        _after(list=None),
    ),
    Case(
        "delete_subscriber",
        "cli",
        lambda w: w.cli("subscribers", "remove", "a@example.org"),
        (("delete_subscriber", P, "{p1}"),),
        _no_address,
    ),
    Case(
        "delete_subscriber",
        "web",
        lambda w: w.page(f"/admin/subscribers/{w.people[0]}/delete", confirm="yes"),
        (("delete_subscriber", P, "{p1}"),),
        _no_address,
    ),
    Case(
        "bulk_action",
        "web",
        lambda w: w.page(
            "/admin/subscribers/bulk",
            action="remove_from_list",
            ids=[str(i) for i in w.people],
            list_id=str(w.list_id),
            confirm="yes",
        ),
        (("bulk_action", L, "members"),),
        _after(action="remove_from_list", list="members", count=2),
    ),
    Case(
        "bulk_action",
        "web",
        lambda w: w.page(
            "/admin/subscribers/bulk",
            action="delete",
            ids=[str(i) for i in w.people],
            confirm="yes",
        ),
        (("bulk_action", P, ""),),
        lambda rows: (_after(action="delete", list=None, count=2)(rows), _no_address(rows)),
    ),
    # lists: create, change, delete
    Case(
        "create_list",
        "cli",
        lambda w: w.cli("lists", "create", "news", "--name", "News"),
        (("create_list", L, "news"),),
        _after(name="News", optin="single", ad_marker=False),
    ),
    Case(
        "create_list",
        "web",
        lambda w: w.page("/admin/lists", slug="news", name="News", public="1"),
        (("create_list", L, "news"),),
        _after(name="News", public=True),
    ),
    Case(
        "create_list",
        "api",
        lambda w: w.api("/api/lists", {"slug": "news", "name": "News", "optin": "double"}),
        (("create_list", L, "news"),),
        _after(name="News", optin="double"),
    ),
    Case(
        "change_list",
        "cli",
        lambda w: w.cli("lists", "set", "members", "--ad-marker"),
        (("change_list", L, "members"),),
        _changed({"ad_marker": False}, {"ad_marker": True}),
    ),
    Case(
        "change_list",
        "api",
        lambda w: w.patch(f"/api/lists/{w.list_id}", {"name": "All members"}),
        (("change_list", L, "members"),),
        _changed({"name": "Members"}, {"name": "All members"}),
    ),
    Case(
        "change_list",
        "web",
        lambda w: w.page(f"/admin/lists/{w.list_id}/public", public="1"),
        (("change_list", L, "members"),),
        _changed({"public": False}, {"public": True}),
    ),
    Case(
        "delete_list",
        "cli",
        lambda w: w.cli("lists", "delete", "members", "--yes"),
        (("delete_list", L, "members"),),
        _after(subscriptions=2),
    ),
    # a report's CSV is an export; its page, print view and JSON are reads (no row)
    Case(
        "export",
        "web",
        lambda w: w.get(f"/admin/campaigns/{w.campaign_id}/report.csv"),
        (("export", C, "{cid}"),),
        _after(report="csv"),
    ),
    Case(
        "export",
        "web",
        lambda w: w.get(f"/admin/issues/{w.issue_id}/report.csv"),
        (("export", ISS, "{slug}"),),
    ),
    Case(
        "export",
        "api",
        lambda w: w.get(f"/api/campaigns/{w.campaign_id}/report.csv", api=True),
        (("export", C, "{cid}"),),
    ),
    Case("read", "web", lambda w: w.get(f"/admin/campaigns/{w.campaign_id}/report/print"), ()),
    Case("read", "api", lambda w: w.get(f"/api/issues/{w.issue_id}/report", api=True), ()),
    # a setting, a user, logging in
    Case(
        "change_setting",
        "web",
        lambda w: w.page(
            "/admin/settings",
            action="save",
            name="质量研究院",
            primary_colour="#7a1f1f",
            accent_colour="#2a7a3f",
            footer_text="内部交流",
            postal_address="北京",
            reply_to="desk@example.org",
            design="letter",
        ),
        (("change_setting", "setting", "branding"),),
        _after(design="letter"),
    ),
    Case(
        "create_user",
        "cli",
        lambda w: w.cli(
            "users",
            "create",
            "--email",
            "new@example.org",
            "--role",
            "editor",
            "--password-stdin",
            stdin="a good long password\n",
        ),
        (("create_user", "user", "new@example.org"),),
    ),
    Case(
        "create_user",
        "web",
        lambda w: w.page(
            "/admin/users", email="New@Example.org", password="long enough", role="editor"
        ),
        (("create_user", "user", "new@example.org"),),
    ),
    Case(
        "log_in",
        "web",
        lambda w: (w.client.cookies.clear(), login(w.client, ADMIN)) and None,
        (("log_in", "user", ADMIN),),
    ),
    Case("log_in_failed", "web", lambda w: _failed_login(w), (("log_in_failed", "user", ADMIN),)),
]


def _failed_login(w: World) -> None:
    w.client.cookies.clear()
    page = w.client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    data = {"email": ADMIN, "password": PASSWORD + "x", "csrf_token": token}
    assert w.client.post("/admin/login", data=data).status_code == 401


@pytest.fixture
def world(client, engine, settings, tmp_path, monkeypatch) -> World:
    settings = settings.replace(login_failure_pause_seconds=0)
    set_settings(settings)
    client.app.state.settings = settings
    monkeypatch.setattr("dispatch.cli.campaigns._queue", ListQueue)  # no broker for the CLI
    folder = tmp_path / "issue"
    shutil.copytree(VALID, folder)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, folder, settings=settings)
        list_id = make_list_with(session, "members", ["a@example.org", "b@example.org"])
        people = tuple(session.scalars(select(Subscriber.id).order_by(Subscriber.id)))
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[list_id]
        )
    token = make_user(engine, "admin", ADMIN)
    make_user(engine, "editor", EDITOR)
    csrf = login(client, ADMIN)
    return World(
        client,
        engine,
        settings,
        tmp_path,
        csrf,
        token,
        issue.id,
        issue.slug,
        list_id,
        campaign.id,
        folder,
        people,
    )


def _ids(world: World) -> dict[str, str]:
    """What the `{…}` in a case's target ids stand for, read after the action."""
    with Session(world.engine) as session:
        from dispatch.models.delivery import Campaign
        from dispatch.models.editorial import IssueVersion

        newest = session.scalar(select(func.max(Campaign.id)))
        newest_person = session.scalar(select(func.max(Subscriber.id)))
        numbers = dict(
            session.execute(
                select(IssueVersion.number, IssueVersion.id).where(
                    IssueVersion.issue_id == world.issue_id
                )
            ).all()
        )
    return {
        "slug": world.slug,
        "cid": str(world.campaign_id),
        "new": str(newest),
        "v1": str(numbers.get(1)),
        "v2": str(numbers.get(2)),
        "person": str(world.person_id()),
        "p1": str(world.people[0]),
        "newest": str(newest_person),
    }


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.action}-{c.door}-{CASES.index(c)}")
def test_every_action_leaves_one_row_naming_who_what_and_which(world: World, case: Case):
    if case.prepare is not None:
        case.prepare(world)
    with Session(world.engine) as session:
        mark = session.scalar(select(func.max(AuditEntry.id))) or 0
    case.do(world)
    with Session(world.engine) as session:
        rows = list(
            session.scalars(select(AuditEntry).where(AuditEntry.id > mark).order_by(AuditEntry.id))
        )
    ids = _ids(world)
    expected = [(a, k, t.format(**ids)) for a, k, t in case.rows]
    assert [(r.action, r.target_kind, r.target_id or "") for r in rows] == expected
    actor = "cli" if case.door == "cli" else ADMIN
    assert {r.actor for r in rows} <= {actor}
    if case.door != "cli":  # a person, from an address
        assert all(r.actor_user_id and r.source_ip for r in rows if r.action != "log_in_failed")
    case.check(rows)


def test_the_audit_page_names_and_filters_the_new_actions_in_chinese(world: World):
    """An auditor filters by "删除订阅者" and sees the row (the id, no address)."""
    world.page(f"/admin/subscribers/{world.people[0]}/delete", confirm="yes")
    world.client.cookies.set("dispatch_lang", "zh-CN")
    page = world.client.get("/admin/audit?action=delete_subscriber").text
    for word in ("添加订阅者", "批量操作", "修改列表"):  # the filter offers each new action
        assert word in page
    assert f'订阅者 <span class="muted">{world.people[0]}</span>' in page  # the row, by id
    assert page.count("<tr>") == 2  # the head and that row: the filter kept only it
    assert "a@example.org" not in page
