"""A receiving server's reply is input from outside: whatever bytes it holds, the result is
recorded. PostgreSQL text cannot hold the NUL character; a reply carrying one made the whole
chunk's recording transaction fail, so its rows stayed 'sending' until their lease ran out and
were then sent again."""

from __future__ import annotations

from sqlalchemy import select

from dispatch.channels.smtp_replies import decode_reply
from dispatch.models import Delivery, Event
from dispatch.paths import PROJECT_ROOT
from smtp_server import smtp_server  # noqa: F401
from test_delivery_support import send_sample_campaign

SAMPLE_ISSUE = PROJECT_ROOT / "examples" / "2023-02"


def test_a_reply_with_a_nul_character_is_recorded_not_resent(
    engine,
    session,
    settings,
    smtp_server,  # noqa: F811
):
    smtp_server.script.rcpt["gone@example.net"] = "550 5.1.1 <gone@example.net>\x00 no such user"
    emails = ["gone@example.net", "here@example.net"]
    settings = settings.replace(smtp_url=smtp_server.url)
    campaign_id = send_sample_campaign(
        session, engine, settings, "nul-replies", emails, tracking=False
    )
    session.expire_all()
    rows = {
        d.email: d
        for d in session.scalars(select(Delivery).where(Delivery.campaign_id == campaign_id))
    }
    assert rows["here@example.net"].status == "sent"
    gone = rows["gone@example.net"]
    assert gone.status == "bounced"
    assert "no such user" in gone.last_text and "\x00" not in gone.last_text
    event = session.scalars(
        select(Event).where(Event.delivery_id == gone.id, Event.kind == "bounced")
    ).one()
    assert "\x00" not in event.data["text"]


def test_decoded_replies_never_hold_a_nul():
    assert decode_reply(b"550 bad\x00 user") == "550 bad\ufffd user"
    assert decode_reply("550 坏\x00".encode("gb18030")) == "550 坏\ufffd"


def test_a_last_deferral_with_a_nul_is_stored_without_it(settings):
    """The give-up text of a deferral past max_attempts is written too (it quotes the reply)."""
    from dispatch.channels.base import SendResult
    from dispatch.delivery.claiming import ClaimedRow
    from dispatch.delivery.engine import _decide_all
    from dispatch.models import utcnow

    row = ClaimedRow(7, 70, "late@example.net", None, "", "en", attempts=4)
    reply = SendResult(7, "deferred", 451, "451 4.3.0\x00 try later")
    params, _, _ = _decide_all(settings.replace(max_attempts=5), [row], [reply], "t", utcnow())
    assert params[0]["b_status"] == "failed"
    assert params[0]["b_text"].startswith("gave up after 5 attempts: 451 4.3.0\ufffd")
