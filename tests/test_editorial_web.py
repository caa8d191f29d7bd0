"""Issue 19 items 3 and 4 through the web: the editor's check (problems with their lines, live
preview), saving versions, comparing and restoring them, image uploads, the review buttons,
and the send guard obeyed by the API and the campaign page."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.config import set_settings
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.models.delivery import Campaign, Delivery
from dispatch.models.editorial import IssueVersion
from test_delivery_support import make_list_with
from test_web_support import bearer, login, make_user

pytest_plugins = ["test_web_support"]
VALID = Path(__file__).parent / "fixtures" / "issues" / "valid"


@pytest.fixture
def settings(settings):
    on = settings.replace(review_required=True)
    set_settings(on)
    return on


@pytest.fixture
def issue_id(engine, settings, tmp_path) -> int:
    folder = tmp_path / "issue"
    shutil.copytree(VALID, folder)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        return publish_source(session, folder, settings=settings).id


def _campaign(engine, issue_id: int) -> int:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        list_id = make_list_with(session, "members", ["a@example.org", "b@example.org"])
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue_id, channel="email", list_ids=[list_id]
        )
        return campaign.id


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 40, 40)).save(out, "PNG")
    return out.getvalue()


def test_the_api_and_the_page_refuse_to_send_an_unapproved_issue(
    client, engine, settings, issue_id
):
    editor, reviewer = make_user(engine, "editor"), make_user(engine, "reviewer")
    campaign_id = _campaign(engine, issue_id)
    refused = client.post(f"/api/campaigns/{campaign_id}/start", headers=bearer(editor))
    assert refused.status_code == 409
    assert "only an approved version can be sent" in refused.json()["detail"]
    clearance = client.get(f"/api/issues/{issue_id}/clearance", headers=bearer(editor)).json()
    assert clearance["sendable"] is False
    client.cookies.clear()
    csrf = login(client, "editor@example.org")
    page = client.post(f"/admin/campaigns/{campaign_id}/start", data={"csrf_token": csrf})
    assert page.status_code == 409 and "only an approved version can be sent" in page.text
    with Session(engine) as session:
        assert session.get(Campaign, campaign_id).status == "draft"
        assert session.scalars(select(Delivery.id)).all() == []
    # the editor submits, the reviewer approves (through the API), then the page sends
    submitted = client.post(f"/api/issues/{issue_id}/versions/1/submit", headers=bearer(editor))
    assert submitted.status_code == 200 and submitted.json()["status"] == "submitted"
    content_hash = submitted.json()["content_hash"]
    approved = client.post(
        f"/api/issues/{issue_id}/versions/1/approve",
        json={"content_hash": content_hash},
        headers=bearer(reviewer),
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["approvers"] == ["reviewer@example.org"]
    from dispatch.models.audit import AuditEntry

    with Session(engine) as session:  # the audit log names who did each step, with the hash
        trail = [
            (e.actor, e.action, e.target_kind, (e.after or {}).get("status"))
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if e.target_kind == "version"
        ]
        assert trail == [
            ("editor@example.org", "submit", "version", "submitted"),
            ("reviewer@example.org", "approve", "version", "approved"),
        ]
    sent = client.post(
        f"/admin/campaigns/{campaign_id}/start", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert sent.status_code == 303
    with Session(engine) as session:
        assert session.get(Campaign, campaign_id).status == "running"


def test_an_editor_cannot_approve_and_the_author_is_refused_by_the_page(
    client, engine, settings, issue_id
):
    editor = make_user(engine, "editor")
    make_user(engine, "admin")
    client.post(f"/api/issues/{issue_id}/versions/1/submit", headers=bearer(editor))
    with Session(engine) as session:
        content_hash = session.scalars(select(IssueVersion.content_hash)).one()
    as_editor = client.post(
        f"/api/issues/{issue_id}/versions/1/approve",
        json={"content_hash": content_hash},
        headers=bearer(editor),
    )
    assert as_editor.status_code == 403
    # the admin saves a change in the editor, submits it, then tries to approve it
    csrf = login(client, "admin@example.org")
    page = client.get(f"/admin/issues/{issue_id}/edit")
    assert page.status_code == 200 and 'id="source"' in page.text
    text = page.text.split('name="text" wrap="off" spellcheck="false" required>')[1]
    text = text.split("</textarea>")[0]
    import html

    changed = html.unescape(text).replace("第二行与第一行合成一段。", "管理员改了一句。")
    saved = client.post(
        f"/admin/issues/{issue_id}/source",
        data={"csrf_token": csrf, "text": changed, "base_version": "1"},
        follow_redirects=False,
    )
    assert saved.status_code == 303 and saved.headers["location"].endswith("edit?msg=saved")
    client.post(f"/admin/issues/{issue_id}/versions/2/submit", data={"csrf_token": csrf})
    with Session(engine) as session:
        v2 = session.scalars(select(IssueVersion).where(IssueVersion.number == 2)).one()
        assert v2.status == "submitted"
    listing = client.get("/admin/issues")  # reviewers find what waits for them
    assert 'data-review="submitted"' in listing.text and "Version 2 · submitted" in listing.text
    own = client.post(
        f"/admin/issues/{issue_id}/versions/2/approve",
        data={"csrf_token": csrf, "content_hash": v2.content_hash},
    )
    assert own.status_code == 409 and "cannot review your own version" in own.text
    with Session(engine) as session:
        assert session.get(IssueVersion, v2.id).status == "submitted"


def test_the_check_names_each_problem_at_its_line_and_previews_a_good_draft(
    client, engine, settings, issue_id
):
    editor = make_user(engine, "editor")
    with Session(engine) as session:
        text = session.scalars(select(IssueVersion.source_text)).one()
    good = client.post(
        f"/api/issues/{issue_id}/source/check", json={"text": text}, headers=bearer(editor)
    ).json()
    assert good["ok"] and good["problems"] == []
    assert "<html" in good["email_html"].lower() and good["wechat"]
    lines = text.split("\n")
    at = next(i for i, line in enumerate(lines) if line.startswith("date: 2023-02-06"))
    lines[at] = "date: 2023-02-31"
    bad = client.post(
        f"/api/issues/{issue_id}/source/check",
        json={"text": "\n".join(lines)},
        headers=bearer(editor),
    ).json()
    assert bad["ok"] is False
    assert [p["line"] for p in bad["problems"]] == [at + 1]
    assert "email_html" not in bad
    # the slug cannot be changed from the editor
    renamed = text.replace("title: 工作简报", "title: 工作简报\nslug: another-one", 1)
    slug = client.post(
        f"/api/issues/{issue_id}/source/check", json={"text": renamed}, headers=bearer(editor)
    ).json()
    assert (
        slug["problems"][0]["line"] == 3 and "slug cannot change" in slug["problems"][0]["message"]
    )
    # a save with problems stores nothing and names them
    refused = client.post(
        f"/api/issues/{issue_id}/source",
        json={"text": "\n".join(lines), "base_version": 1},
        headers=bearer(editor),
    )
    assert refused.status_code == 422 and f"issue.md:{at + 1}" in refused.text
    with Session(engine) as session:
        assert len(session.scalars(select(IssueVersion)).all()) == 1


def test_versions_are_saved_compared_and_restored_and_a_stale_save_is_refused(
    client, engine, settings, issue_id
):
    editor = make_user(engine, "editor")
    with Session(engine) as session:
        text = session.scalars(select(IssueVersion.source_text)).one()
    changed = text.replace("第二行与第一行合成一段。", "第二版的句子。")
    saved = client.post(
        f"/api/issues/{issue_id}/source",
        json={"text": changed, "base_version": 1},
        headers=bearer(editor),
    )
    assert saved.status_code == 201 and saved.json()["number"] == 2
    stale = client.post(
        f"/api/issues/{issue_id}/source",
        json={"text": changed + "\n", "base_version": 1},
        headers=bearer(editor),
    )
    assert stale.status_code == 409 and "has saved version 2 since" in stale.json()["detail"]
    diff = client.get(f"/api/issues/{issue_id}/diff?a=1&b=2", headers=bearer(editor)).json()
    assert "lines" in diff, diff
    kinds = {kind: line for kind, line in diff["lines"] if kind in ("add", "del")}
    assert kinds == {"del": "-第二行与第一行合成一段。", "add": "+第二版的句子。"}
    restored = client.post(f"/api/issues/{issue_id}/versions/1/restore", headers=bearer(editor))
    assert restored.status_code == 201 and restored.json()["number"] == 3
    listing = client.get(f"/api/issues/{issue_id}/versions", headers=bearer(editor)).json()
    assert [v["number"] for v in listing["versions"]] == [3, 2, 1]
    assert listing["versions"][0]["note"].endswith("restored from version 1")
    assert listing["content_hash"] == listing["versions"][2]["content_hash"]
    login(client, "editor@example.org")
    page = client.get(f"/admin/issues/{issue_id}/versions?a=1&b=2")
    assert page.status_code == 200
    assert '<span class="add">+第二版的句子。</span>' in page.text


def test_images_upload_into_the_editors_folder_and_bad_ones_are_refused(
    client, engine, settings, issue_id, tmp_path
):
    editor = make_user(engine, "editor")
    png = _png()
    up = client.post(
        f"/api/issues/{issue_id}/media",
        files={"file": ("红色.png", png, "image/png")},
        headers=bearer(editor),
    )
    assert up.status_code == 201, up.text
    src = up.json()["src"]
    assert src.startswith("images/") and src.endswith(".png")
    assert (settings.data_dir / "issues" / f"edit-{issue_id}" / src).read_bytes() == png
    # the original folder is untouched; the copy keeps its images for older versions
    assert not (tmp_path / "issue" / src).exists()
    assert (settings.data_dir / "issues" / f"edit-{issue_id}" / "images" / "photo.png").exists()
    login(client, "editor@example.org")
    served = client.get(f"/admin/issues/{issue_id}/media/{src}")
    assert served.status_code == 200 and served.content == png
    for escape in ("images/%2e%2e/%2e%2e/%2e%2e/secret_key", "issue.md", "images/nothing.png"):
        assert client.get(f"/admin/issues/{issue_id}/media/{escape}").status_code == 404
    for name, data, why in (
        ("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "only PNG, JPEG or GIF"),
        ("fake.png", b"<html>not an image</html>", "not a usable image"),
        ("empty.gif", b"", "the file is empty"),
    ):
        refused = client.post(
            f"/api/issues/{issue_id}/media",
            files={"file": (name, data, "application/octet-stream")},
            headers=bearer(editor),
        )
        assert refused.status_code == 422 and why in refused.json()["detail"], (name, refused.text)
    # the new image is used in the text: the check finds it and the save publishes from the copy
    with Session(engine) as session:
        text = session.scalars(select(IssueVersion.source_text)).one()
    with_image = text.replace("- 列表一", f"![红色方块]({src})\n\n- 列表一")
    check = client.post(
        f"/api/issues/{issue_id}/source/check", json={"text": with_image}, headers=bearer(editor)
    ).json()
    assert check["ok"], check["problems"]
    assert f"/admin/issues/{issue_id}/media/{src}" in check["email_html"]
    saved = client.post(
        f"/api/issues/{issue_id}/source",
        json={"text": with_image, "base_version": 1},
        headers=bearer(editor),
    )
    assert saved.status_code == 201
