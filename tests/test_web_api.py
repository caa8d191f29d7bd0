"""The admin API does what the services do: lists, subscribers and CSV, issues and previews,
campaigns and their stats."""

from __future__ import annotations

from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.tokens import make_click_token, make_open_token, make_unsubscribe_token
from test_web_support import bearer, seed

pytest_plugins = ["test_web_support"]


def test_lists_subscribers_search_edit_and_csv_round_trip(client, engine, settings, tokens):
    h = bearer(tokens["admin"])
    created = client.post("/api/lists", json={"slug": "news", "name": "News"}, headers=h)
    assert created.status_code == 201
    list_id = created.json()["id"]
    assert client.post("/api/lists", json={"slug": "news"}, headers=h).status_code == 409
    csv_text = (
        "email,name,locale\n"
        "ann@example.org,Ann,en\n"
        "not-an-email,Bad,en\n"
        "bob@example.org,Bob,zh-CN\n"
        "ann@example.org,Ann again,en\n"
    )
    report = client.post(
        "/api/subscribers/import",
        headers=h,
        data={"list_id": str(list_id)},
        files={"file": ("people.csv", csv_text.encode(), "text/csv")},
    )
    assert report.status_code == 200, report.text
    body = report.json()
    assert body["imported"] == 2 and body["file"] == "people.csv"
    assert {(p["line"], p["reason"]) for p in body["problems"]} == {
        (3, "invalid_email"),
        (5, "duplicate_in_file"),
    }
    found = client.get("/api/subscribers", params={"q": "ann"}, headers=h).json()
    assert found["total"] == 1 and found["items"][0]["email"] == "ann@example.org"
    ann = found["items"][0]["id"]
    edited = client.patch(f"/api/subscribers/{ann}", json={"name": "Ann B."}, headers=h)
    assert edited.status_code == 200 and edited.json()["name"] == "Ann B."
    page = client.get("/api/subscribers", params={"per_page": 1, "page": 2}, headers=h).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    export = client.get("/api/subscribers/export", params={"list_id": list_id}, headers=h)
    assert (
        export.status_code == 200 and "ann@example.org" in export.text and "Ann B." in export.text
    )
    counts = client.get(f"/api/lists/{list_id}", headers=h).json()["members"]
    assert counts["confirmed"] == 2
    added = client.post(
        "/api/subscribers", json={"email": "cy@example.org", "list_ids": [list_id]}, headers=h
    )
    assert added.status_code == 201 and added.json()["subscriptions"][0]["status"] == "confirmed"
    assert client.post("/api/subscribers", json={"email": "nope"}, headers=h).status_code == 422


def test_issue_publish_upload_and_previews(client, engine, settings, tokens):
    h = bearer(tokens["editor"])
    published = client.post("/api/issues/publish", json={"path": str(SAMPLE_ISSUE_DIR)}, headers=h)
    assert published.status_code == 201, published.text
    issue_id = published.json()["id"]
    assert client.post("/api/issues/publish", json={"path": "/etc"}, headers=h).status_code == 422
    email = client.get(f"/api/issues/{issue_id}/preview/email", headers=h).json()
    assert email["subject"] and "<html" in email["html"].lower() and email["text"]
    html = client.get(f"/api/issues/{issue_id}/preview/email.html", headers=h)
    assert (
        html.headers["content-type"].startswith("text/html")
        and "sandbox" in html.headers["content-security-policy"]
    )
    wechat = client.get(f"/api/issues/{issue_id}/preview/wechat", headers=h)
    assert wechat.status_code == 200 and 1 <= len(wechat.json()) <= 8 and wechat.json()[0]["title"]
    files = [("files", ("issue.md", (SAMPLE_ISSUE_DIR / "issue.md").read_bytes(), "text/markdown"))]
    files += [
        ("files", (p.name, p.read_bytes(), "image/png"))
        for p in sorted((SAMPLE_ISSUE_DIR / "images").iterdir())
    ]
    uploaded = client.post("/api/issues", files=files, headers=h)
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["slug"] == "2023-02"
    broken = client.post(
        "/api/issues",
        files=[("files", ("issue.md", b"---\ntitle: x\n---\n", "text/markdown"))],
        headers=h,
    )
    assert broken.status_code == 422 and broken.json()["problems"]
    assert (
        client.post(
            "/api/issues", files=[("files", ("../issue.md", b"x", "text/plain"))], headers=h
        ).status_code
        == 422
    )


def test_campaign_create_start_progress_deliveries_and_stats(
    client, web_app, engine, settings, tokens
):
    s = seed(engine, settings)
    editor, admin = bearer(tokens["editor"]), bearer(tokens["admin"])
    again = client.post(
        "/api/campaigns", json={"issue_id": s.issue_id, "list_ids": [s.list_id]}, headers=editor
    )
    assert (
        again.status_code == 201
        and again.json()["id"] == s.campaign_id
        and again.json()["created"] is False
    )
    progress = client.get(f"/api/campaigns/{s.campaign_id}/progress", headers=editor).json()
    assert progress["total"] == 3 and progress["status"] == "running"
    first = s.delivery_ids[0]
    client.get(f"/t/o/{make_open_token(settings, first)}.gif")
    client.get(f"/t/o/{make_open_token(settings, first)}.gif")
    client.get(f"/t/c/{make_click_token(settings, first, 0)}", follow_redirects=False)
    client.post(
        f"/u/{make_unsubscribe_token(settings, s.subscriber_ids[0], s.list_id)}",
        data={"List-Unsubscribe": "One-Click"},
    )
    stats = client.get(f"/api/campaigns/{s.campaign_id}/stats", headers=editor).json()
    assert stats["counts"]["opened"] == 1 and stats["counts"]["clicked"] == 1
    assert stats["counts"]["unsubscribed"] == 1
    assert sum(b["opened"] for b in stats["timeline"]["buckets"]) == 1
    deliveries = client.get(f"/api/campaigns/{s.campaign_id}/deliveries", headers=admin).json()
    row = next(d for d in deliveries["items"] if d["id"] == first)
    assert row["opens"] == 2 and row["clicks"] == 1
    assert [e["kind"] for e in row["events"] if e["kind"] in ("opened", "clicked")] == [
        "opened",
        "clicked",
    ]
    assert (
        client.post(f"/api/campaigns/{s.campaign_id}/pause", headers=admin).json()["status"]
        == "paused"
    )
    assert client.post(f"/api/campaigns/{s.campaign_id}/pause", headers=admin).status_code == 409
    resumed = client.post(f"/api/campaigns/{s.campaign_id}/resume", headers=admin)
    assert resumed.status_code == 200 and resumed.json()["status"] == "running"
    assert web_app.state.batch_queue.items  # batches were handed to the queue
    assert (
        client.post(f"/api/campaigns/{s.campaign_id}/cancel", headers=admin).json()["status"]
        == "cancelled"
    )
    page = client.get(f"/admin/campaigns/{s.campaign_id}", headers=admin)
    assert page.status_code == 200 and "<svg" in page.text


def test_test_send_creates_a_test_campaign_and_starts_it(client, web_app, engine, settings, tokens):
    s = seed(engine, settings)
    r = client.post(
        "/api/campaigns/test",
        json={"issue_id": s.issue_id, "addresses": ["qa@example.org"]},
        headers=bearer(tokens["editor"]),
    )
    assert r.status_code == 201, r.text
    assert r.json()["is_test"] is True and r.json()["status"] == "running"
    assert any(cid == r.json()["id"] for cid, _ in web_app.state.batch_queue.items)


def test_hostile_inputs_get_4xx_not_500(client, engine, settings, tokens):
    s = seed(engine, settings)
    admin = bearer(tokens["admin"])
    assert client.get("/api/subscribers", params={"q": "a\x00b"}, headers=admin).status_code == 200
    assert (
        client.get(
            f"/api/campaigns/{s.campaign_id}/deliveries", params={"q": "\x00"}, headers=admin
        ).status_code
        == 200
    )
    assert (
        client.post("/api/issues/publish", json={"path": "/tmp/\x00x"}, headers=admin).status_code
        == 422
    )
    assert (
        client.post(
            "/api/campaigns", json={"issue_id": s.issue_id, "list_ids": [2**40]}, headers=admin
        ).status_code
        == 422
    )
    assert client.get(f"/api/lists/{2**40}", headers=admin).status_code == 422
    assert (
        client.get("/admin/subscribers", params={"list_id": 2**40}, headers=admin).status_code
        == 200
    )
    assert (
        client.post(
            "/api/subscribers", json={"email": "x\x00@example.org"}, headers=admin
        ).status_code
        == 422
    )


def test_upload_problems_name_the_uploaded_file_not_the_server_path(
    client, engine, settings, tokens
):
    """Issue 9: `var/issues/b5af…/issue.md:5: …` became `issue.md:5: …`."""
    h = bearer(tokens["editor"])
    source = (SAMPLE_ISSUE_DIR / "issue.md").read_text(encoding="utf-8")
    broken = source.replace("![", "![](missing.png) ![", 1)
    answer = client.post(
        "/api/issues",
        files=[("files", ("issue.md", broken.encode(), "text/markdown"))],
        headers=h,
    )
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["problems"] and {p["file"] for p in body["problems"]} == {"issue.md"}
    assert str(settings.data_dir) not in answer.text and "issues/" not in answer.text
    assert body["detail"].startswith("issue.md:")
