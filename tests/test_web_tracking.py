"""Open pixel and click redirect: recorded once per delivery (and link), never an open redirect."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatch.models import Event
from dispatch.models.web import TrackingHit
from dispatch.tokens import make_click_token, make_open_token
from test_web_support import seed

pytest_plugins = ["test_web_support"]


def _events(engine, kind: str) -> list[Event]:
    with Session(engine) as session:
        return list(session.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def test_open_recorded_once_per_delivery_later_ones_counted(client, engine, settings):
    s = seed(engine, settings)
    first, second = s.delivery_ids[:2]
    for _ in range(3):
        r = client.get(f"/t/o/{make_open_token(settings, first)}.gif")
        assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
        assert r.content.startswith(b"GIF89a")
    client.get(f"/t/o/{make_open_token(settings, second)}.gif")
    opened = _events(engine, "opened")
    assert sorted(e.delivery_id for e in opened) == sorted([first, second])
    assert all(e.campaign_id == s.campaign_id for e in opened)
    with Session(engine) as session:
        count = session.scalar(
            select(TrackingHit.count).where(
                TrackingHit.delivery_id == first, TrackingHit.link_index == -1
            )
        )
    assert count == 3


def test_bad_open_token_still_gets_the_gif_and_records_nothing(client, engine, settings):
    s = seed(engine, settings)
    good = make_open_token(settings, s.delivery_ids[0])
    for token in (
        good[:-2] + "xx",
        "abc",
        make_open_token(settings, 999_999),
        make_click_token(settings, s.delivery_ids[0], 0),
    ):
        r = client.get(f"/t/o/{token}.gif")
        assert r.status_code == 200 and r.content.startswith(b"GIF")
    assert _events(engine, "opened") == []


def test_click_redirects_to_the_link_table_url_once_recorded_per_link(client, engine, settings):
    s = seed(engine, settings)
    from dispatch.content.parse import parse_issue
    from dispatch.paths import SAMPLE_ISSUE_DIR

    links = parse_issue(SAMPLE_ISSUE_DIR).links
    delivery = s.delivery_ids[0]
    for index in (0, 1, 0, 0):
        r = client.get(
            f"/t/c/{make_click_token(settings, delivery, index)}", follow_redirects=False
        )
        assert r.status_code == 302
        assert r.headers["location"] == links[index]
    clicked = _events(engine, "clicked")
    assert [(e.delivery_id, e.data["link_index"]) for e in clicked] == [
        (delivery, 0),
        (delivery, 1),
    ]
    assert clicked[0].data["url"] == links[0]
    with Session(engine) as session:
        assert (
            session.scalar(
                select(TrackingHit.count).where(
                    TrackingHit.delivery_id == delivery, TrackingHit.link_index == 0
                )
            )
            == 3
        )


def test_forged_or_out_of_range_click_or_query_url_never_redirects(client, engine, settings):
    s = seed(engine, settings)
    delivery = s.delivery_ids[0]
    good = make_click_token(settings, delivery, 0)
    attempts = [
        f"/t/c/{good[:-3]}abc",  # forged signature
        f"/t/c/{make_click_token(settings, delivery, s.n_links)}",  # one past the table
        f"/t/c/{make_click_token(settings, delivery, 10_000)}",
        f"/t/c/{make_click_token(settings, 999_999, 0)}",  # no such delivery
        f"/t/c/{make_open_token(settings, delivery)}",  # a token of another purpose
        "/t/c/?url=https://evil.example/",
        "/t/c/x?url=https://evil.example/",
    ]
    for path in attempts:
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 404, path
        assert "location" not in r.headers, path
    # a valid token with a URL in the query string goes to the table's URL, never the query's
    r = client.get(
        f"/t/c/{good}?url=https://evil.example/&next=https://evil.example/", follow_redirects=False
    )
    assert r.status_code == 302 and "evil" not in r.headers["location"]
    with Session(engine) as session:
        assert (
            session.scalar(select(func.count()).select_from(Event).where(Event.kind == "clicked"))
            == 1
        )
