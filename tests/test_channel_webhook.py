"""A third channel is one module plus one registration: the test-only webhook channel
(dispatch.dev.webhook_channel) POSTs each message to a local HTTP server, and the engine,
fan-out, campaigns and subscriber rules handle it from its declared traits alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import func, select

from dispatch.channels import CHANNEL_CLASSES, fanout_batch_size
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.dev.webhook_channel import NAME, register_webhook_channel
from dispatch.models import Campaign, Event
from dispatch.subscribers import service as subscribers
from test_delivery_support import make_issue, make_list_with

GONE = "gone@example.org"  # the server answers 410 for this one: a bounce


class Inbox:
    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.lock = threading.Lock()


@pytest.fixture
def webhook() -> Iterator[Inbox]:
    inbox = Inbox()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with inbox.lock:
                inbox.posts.append(body)
            status = 410 if body["email"] == GONE else 202
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    saved = dict(CHANNEL_CLASSES)
    register_webhook_channel(f"http://127.0.0.1:{server.server_port}/hook")
    try:
        yield inbox
    finally:
        CHANNEL_CLASSES.clear()
        CHANNEL_CLASSES.update(saved)
        server.shutdown()
        server.server_close()


def test_a_registered_webhook_channel_sends_everyone_once(engine, session, settings, webhook):
    issue = make_issue(session)
    emails = [f"w{i:02d}@example.org" for i in range(9)] + [GONE]
    list_id = make_list_with(session, "hooked", emails)
    session.commit()
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel=NAME, list_ids=[list_id], tracking=True
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, campaign.id, queue)
    assert fanout_batch_size(NAME, settings) == 4
    assert len(queue.items) == 3  # 10 recipients in the channel's batches of 4

    drain(engine, settings, queue)  # no channel_factory: the registry builds the channel

    assert sorted(p["email"] for p in webhook.posts) == sorted(emails)
    assert {p["campaign_id"] for p in webhook.posts} == {campaign.id}
    assert not any(p["tracking"] for p in webhook.posts)  # the channel has no opens/clicks
    session.expire_all()
    counts = campaigns.counts(session, campaign.id)
    assert counts["sent"] == 9 and counts["bounced"] == 1
    assert session.get(Campaign, campaign.id).status == "finished"
    # the bounce suppressed the channel's address kind (email) with the email rules
    assert subscribers.is_suppressed(session, email=GONE)
    kinds = dict(
        session.execute(
            select(Event.kind, func.count())
            .where(Event.campaign_id == campaign.id)
            .group_by(Event.kind)
        ).all()
    )
    assert kinds == {"sent": 9, "bounced": 1, "suppressed": 1}
    delivery_events = select(Event.channel).where(
        Event.campaign_id == campaign.id, Event.kind.in_(("sent", "bounced"))
    )
    assert set(session.scalars(delivery_events)) == {NAME}


def test_a_test_send_finds_recipients_by_the_channels_address(engine, session, settings, webhook):
    issue = make_issue(session)
    test = campaigns.create_test_send(
        session, issue_id=issue.id, channel=NAME, addresses=["tester@example.org"]
    )
    session.commit()
    queue = ListQueue()
    campaigns.start(engine, settings, test.id, queue)
    drain(engine, settings, queue)
    assert [p["email"] for p in webhook.posts] == ["tester@example.org"]


def test_an_unregistered_channel_is_refused_by_name(session):
    issue = make_issue(session)
    with pytest.raises(campaigns.CampaignError, match="unknown channel 'webhook'"):
        campaigns.create_or_get(session, issue_id=issue.id, channel=NAME, list_ids=[1])
