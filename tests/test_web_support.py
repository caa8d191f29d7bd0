"""Shared fixtures and helpers of the web tests (no tests of its own).

The app runs in-process through Starlette's TestClient over https (so Secure cookies are sent),
on each backend of the `settings` fixture; starting a campaign puts batches on a ListQueue.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from dispatch.config import Settings
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.models.delivery import Delivery
from dispatch.paths import SAMPLE_ISSUE_DIR
from dispatch.subscribers import service
from dispatch.web.app import create_app
from dispatch.web.users import create_api_token, create_user

PASSWORD = "correct horse battery"


@dataclass
class Seed:
    issue_id: int
    issue_slug: str
    list_id: int
    subscriber_ids: list[int]
    campaign_id: int
    delivery_ids: list[int]
    n_links: int


@pytest.fixture(autouse=True)
def cheap_password_hashing() -> Iterator[None]:
    """argon2 with its default cost takes ~1 s here; the tests need the scheme, not the cost."""
    from argon2 import PasswordHasher

    from dispatch.web import users

    original = users._hasher
    users.use_hasher(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    yield
    users.use_hasher(original)


@pytest.fixture
def web_app(settings: Settings, engine):
    app = create_app(settings)
    app.state.batch_queue = ListQueue()
    app.state.link_tables.clear()
    return app


@pytest.fixture
def client(web_app) -> Iterator[TestClient]:
    with TestClient(web_app, base_url="https://testserver") as c:
        yield c


def make_user(engine, role: str, email: str | None = None) -> str:
    """Create a user of `role`; returns a fresh API token for them."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = create_user(session, email or f"{role}@example.org", PASSWORD, role, "en")
        return create_api_token(session, user, "test")


@pytest.fixture
def tokens(engine) -> dict[str, str]:
    return {
        "admin": make_user(engine, "admin"),
        "editor": make_user(engine, "editor"),
        "reviewer": make_user(engine, "reviewer"),
    }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client: TestClient, email: str, password: str = PASSWORD) -> str:
    """Log in through the form (with its CSRF token); returns the session's CSRF token."""
    page = client.get("/admin/login")
    token = page.text.split('name="csrf_token" value="')[1].split('"')[0]
    response = client.post(
        "/admin/login",
        data={"email": email, "password": password, "csrf_token": token, "next": "/admin/"},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    home = client.get("/admin/")
    return home.text.split('name="csrf_token" value="')[1].split('"')[0]


def seed(engine, settings: Settings, n_subscribers: int = 3, tracking: bool = True) -> Seed:
    """The sample issue, a list with subscribers and a started campaign with its deliveries."""
    with Session(engine, expire_on_commit=False) as session, session.begin():
        issue = publish_source(session, SAMPLE_ISSUE_DIR)
        mailing_list = service.create_list(session, "members", "Members")
        ids = []
        for i in range(n_subscribers):
            sub = service.add_subscriber(
                session,
                email=f"reader{i}@example.org",
                name=f"Reader {i}",
                locale="en" if i % 2 else "zh-CN",
            )
            service.subscribe(session, sub, mailing_list, settings=settings)
            ids.append(sub.id)
        campaign, _ = campaigns.create_or_get(
            session,
            issue_id=issue.id,
            channel="email",
            list_ids=[mailing_list.id],
            tracking=tracking,
        )
        issue_id, slug, list_id, campaign_id = issue.id, issue.slug, mailing_list.id, campaign.id
        n_links = len(issue.summary["links"])
    campaigns.start(engine, settings, campaign_id, ListQueue())
    with Session(engine) as session:
        delivery_ids = list(
            session.scalars(
                Delivery.__table__.select()
                .with_only_columns(Delivery.id)
                .where(Delivery.campaign_id == campaign_id)
                .order_by(Delivery.id)
            )
        )
    return Seed(issue_id, slug, list_id, ids, campaign_id, delivery_ids, n_links)
