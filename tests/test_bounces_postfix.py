"""The whole loop through a real relay: dispatch sends to Postfix, Postfix relays to a scripted
remote server that refuses some recipients and accepts the others, Postfix writes real DSNs to
the VERP address, and its transport map hands the bounce domain to `dispatch bounces serve`.
The refused recipients end bounced and suppressed, the accepted ones sent, nothing else changes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery, Event
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Subscriber, Suppression
from dispatch.outbox import free_port
from dispatch.paths import PROJECT_ROOT
from dispatch.tokens import bounce_token_in, verify_bounce_token
from mta import PostfixRelay, have_postfix, wait_for_port
from smtp_server import ScriptedSmtpServer
from test_delivery_support import make_list_with

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_postfix(), reason="needs Debian's postfix and root"),
]

BOUNCE_DOMAIN = "bounce.dispatch-test.example"
ACCEPTED = [f"reader{i}@mx.example.net" for i in range(4)]
REFUSED = ["gone1@mx.example.net", "gone2@mx.example.net", "nobody@mx.example.net"]


@pytest.fixture
def remote(tmp_path):
    with ScriptedSmtpServer(record_dir=tmp_path / "remote") as server:
        for address in REFUSED:
            server.script.rcpt[address] = (
                f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
            )
        yield server


@pytest.fixture
def intake(settings, tmp_path):
    """`dispatch bounces serve` as its own process, as a deployment runs it."""
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        "DISPATCH_DATABASE_URL": settings.database_url,
        "DISPATCH_DATA_DIR": str(settings.data_dir),
        "DISPATCH_SECRET_KEY": settings.secret_key,
        "DISPATCH_BOUNCE_ADDRESS": f"bounces@{BOUNCE_DOMAIN}",
        "DISPATCH_CONFIG": str(tmp_path / "none.toml"),
    }
    log = (tmp_path / "intake.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "dispatch"), "bounces", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
        cwd=PROJECT_ROOT,
    )
    try:
        wait_for_port(port)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def test_relay_dsns_come_back_through_postfix_and_suppress_exactly_the_refused(
    engine, session, settings, remote, intake, tmp_path
):
    with PostfixRelay(
        relay_to=("127.0.0.1", remote.port),
        bounce_domain=BOUNCE_DOMAIN,
        bounce_to=("127.0.0.1", intake),
    ) as postfix:
        settings = settings.replace(
            smtp_url=postfix.url, bounce_address=f"bounces@{BOUNCE_DOMAIN}", smtp_timeout=10.0
        )
        issue = publish_source(session, PROJECT_ROOT / "examples" / "2023-02", settings=settings)
        list_id = make_list_with(session, "readers", ACCEPTED + REFUSED)
        bystander = make_list_with(session, "others", ["bystander@example.org"])
        session.commit()
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue.id, channel="email", list_ids=[list_id]
        )
        session.commit()
        queue = ListQueue()
        campaigns.start(engine, settings, campaign.id, queue)
        drain(engine, settings, queue)
        # the relay said 250 for everyone: that is all dispatch learns while sending
        assert campaigns.counts(session, campaign.id)["sent"] == len(ACCEPTED + REFUSED)

        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if session.scalar(select(func.count()).select_from(BounceMessage)) >= len(REFUSED):
                break
            postfix.flush()
            time.sleep(0.5)
        else:
            pytest.fail(f"DSNs did not arrive; Postfix log:\n{postfix.maillog[-4000:]}")
        time.sleep(1.0)  # anything extra would show up now
        session.expire_all()

        rows = session.scalars(select(BounceMessage).order_by(BounceMessage.id)).all()
        assert sorted(r.recipient for r in rows) == sorted(REFUSED)
        assert {(r.kind, r.status, r.source) for r in rows} == {("hard", "5.1.1", "smtp")}
        assert all("VERP" in r.reason for r in rows)  # matched by the signed token
        deliveries = {
            d.email: d
            for d in session.scalars(select(Delivery).where(Delivery.campaign_id == campaign.id))
        }
        assert {r.delivery_id for r in rows} == {deliveries[a].id for a in REFUSED}
        assert {a: d.status for a, d in deliveries.items()} == {
            **dict.fromkeys(ACCEPTED, "sent"),
            **dict.fromkeys(REFUSED, "bounced"),
        }
        suppressed = {s.email: s.reason for s in session.scalars(select(Suppression))}
        assert suppressed == dict.fromkeys(REFUSED, "bounced")
        statuses = dict(session.execute(select(Subscriber.email, Subscriber.status)).all())
        assert statuses == {
            **dict.fromkeys(ACCEPTED + ["bystander@example.org"], "active"),
            **dict.fromkeys(REFUSED, "bounced"),
        }
        assert session.scalar(
            select(func.count()).where(
                Event.kind == "bounce_hard", Event.campaign_id == campaign.id
            )
        ) == len(REFUSED)
        assert bystander

    # the remote server got exactly the accepted recipients, each once, from the VERP sender
    received = sorted(a for m in remote.messages for a in m.rcpt_tos)
    assert received == sorted(ACCEPTED)
    for message in remote.messages:
        token = bounce_token_in(settings, message.mail_from)
        assert token is not None
        claim = verify_bounce_token(settings, token)
        assert deliveries[message.rcpt_tos[0]].id == claim.ref_id
