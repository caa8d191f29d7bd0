"""Keyset pagination: walking a million-row list page by page returns every row once, even
while people join and leave the list in front of the cursor (OFFSET repeats or skips them)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.orm import Session

from dispatch.models.subscriber import Subscription
from dispatch.subscribers import service
from test_web_support import bearer, seed

pytest_plugins = ["test_web_support"]


def _people(engine, settings, n: int) -> tuple[int, list[int]]:
    """n people, the even-numbered ones on list "walk"; (list id, every subscriber id)."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        walk = service.create_list(session, "walk", "Walk")
        ids = []
        for i in range(n):
            person = service.add_subscriber(session, email=f"walker{i:03d}@example.org")
            if i % 2 == 0:
                service.subscribe(session, person, walk, settings=settings)
            ids.append(person.id)
        return walk.id, ids


def _churn(engine, settings, list_id: int, join: list[int], leave: list[int]) -> None:
    """People join the list and others leave it, all of them before the reader's cursor."""
    with Session(engine) as session, session.begin():
        walk = session.get(service.MailingList, list_id)
        for subscriber_id in join:
            person = session.get(service.Subscriber, subscriber_id)
            service.subscribe(session, person, walk, settings=settings)
        session.execute(
            delete(Subscription).where(
                Subscription.list_id == list_id, Subscription.subscriber_id.in_(leave)
            )
        )


def _walk(client, token, engine, settings, list_id, ids, keyset: bool) -> tuple[list[int], set]:
    """Read the list page by page (10 a page); after each page two earlier people join and
    one earlier member leaves. Returns the ids seen in order and those never touched."""
    odd = [i for n, i in enumerate(ids) if n % 2 == 1]
    even = [i for n, i in enumerate(ids) if n % 2 == 0]
    untouched = set(even)
    seen: list[int] = []
    params: dict = {"list_id": list_id, "per_page": 10}
    for page in range(1, 40):
        if keyset:
            params.pop("page", None)
        else:
            params["page"] = page
        body = client.get("/api/subscribers", params=params, headers=bearer(token)).json()
        items = [item["id"] for item in body["items"]]
        seen += items
        if keyset:
            if body["next_after"] is None:
                break
            params["after"] = body["next_after"]
        elif not items:
            break
        joining, odd = odd[:2], odd[2:]
        leaving = [i for i in even if i in items][:1] if page > 1 else []
        leaving = [i for i in even if i < min(items)][:1] or leaving
        even = [i for i in even if i not in leaving]
        untouched -= set(leaving)
        _churn(engine, settings, list_id, joining, leaving)
    return seen, untouched


def test_keyset_pages_return_every_row_once_while_rows_change(client, engine, settings, tokens):
    list_id, ids = _people(engine, settings, 120)
    seen, untouched = _walk(client, tokens["admin"], engine, settings, list_id, ids, keyset=True)
    assert len(seen) == len(set(seen)), "a row came twice"
    assert untouched <= set(seen), "a member who never left was skipped"
    assert seen == sorted(seen)


def test_offset_pages_under_the_same_changes_repeat_or_skip_rows(client, engine, settings, tokens):
    """The same walk by page number shows what the keys prevent (so the test above can fail)."""
    list_id, ids = _people(engine, settings, 120)
    seen, untouched = _walk(client, tokens["admin"], engine, settings, list_id, ids, keyset=False)
    assert len(seen) != len(set(seen)) or not untouched <= set(seen)


def test_walking_back_with_before_gives_the_previous_page(client, engine, settings, tokens):
    list_id, ids = _people(engine, settings, 60)
    h = bearer(tokens["admin"])
    first = client.get("/api/subscribers", params={"list_id": list_id, "per_page": 10}, headers=h)
    first = first.json()
    second = client.get(
        "/api/subscribers",
        params={"list_id": list_id, "per_page": 10, "after": first["next_after"]},
        headers=h,
    ).json()
    back = client.get(
        "/api/subscribers",
        params={"list_id": list_id, "per_page": 10, "before": second["prev_before"]},
        headers=h,
    ).json()
    assert [i["id"] for i in back["items"]] == [i["id"] for i in first["items"]]
    assert first["total"] == 30 and first["total_capped"] is False


def test_search_matches_the_start_of_email_or_name_and_counts_up_to_the_cap(
    client, engine, settings, tokens, monkeypatch
):
    from dispatch.web import api_subscribers

    with Session(engine) as session, session.begin():
        service.add_subscriber(session, email="li_lei@example.org", name="李雷")
        service.add_subscriber(session, email="lixlei@example.org", name="Han Meimei")
        service.add_subscriber(session, email="meimei@example.org", name="韩梅梅")
    h = bearer(tokens["admin"])

    def found(q: str) -> list[str]:
        body = client.get("/api/subscribers", params={"q": q}, headers=h).json()
        return sorted(i["email"] for i in body["items"])

    assert found("LI_") == ["li_lei@example.org"]  # _ is a character here, not a wildcard
    assert found("李") == ["li_lei@example.org"]
    assert found("han") == ["lixlei@example.org"]  # the start of the name
    assert found("mei") == ["meimei@example.org"]  # not the middle of a name or address
    monkeypatch.setattr(api_subscribers, "COUNT_CAP", 2)
    monkeypatch.setattr(api_subscribers.capped_count, "__defaults__", (2,))
    body = client.get("/api/subscribers", headers=h).json()
    assert body["total"] == 2 and body["total_capped"] is True and len(body["items"]) == 3


def test_campaign_deliveries_walk_by_key(client, engine, settings, tokens):
    s = seed(engine, settings, n_subscribers=7)
    h = bearer(tokens["admin"])
    url = f"/api/campaigns/{s.campaign_id}/deliveries"
    seen, params = [], {"per_page": 3}
    while True:
        body = client.get(url, params=params, headers=h).json()
        seen += [d["id"] for d in body["items"]]
        if body["next_after"] is None:
            break
        params["after"] = body["next_after"]
    assert seen == s.delivery_ids
