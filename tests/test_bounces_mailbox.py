"""The bounce mailbox against a real Dovecot (IMAP and POP3): real DSN and ARF messages are
appended over IMAP, the poller runs twice, and each message is processed exactly once."""

from __future__ import annotations

import imaplib

import pytest
from sqlalchemy import func, select

from bounce_helpers import arf_report, postfix_dsn, sent_campaign
from dispatch.bounces.mailbox import MailboxError, parse_mailbox_url, poll_mailbox
from dispatch.models import Event
from dispatch.models.bounce import BounceMessage
from dispatch.models.subscriber import Subscription, Suppression
from dispatch.tokens import verp_address
from mta import DovecotServer, have_dovecot

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_dovecot(), reason="needs Debian's dovecot and root"),
]

ADDRESSES = ["alice@example.net", "bob@example.net", "carol@example.net"]
VACATION = (
    b"From: Bob <bob@example.net>\r\nTo: bounces@bounce.example.org\r\n"
    b"Subject: Out of Office: back on Monday\r\nAuto-Submitted: auto-replied\r\n\r\naway\r\n"
)


@pytest.fixture
def dovecot():
    with DovecotServer() as server:
        yield server


def _imap(server: DovecotServer) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port)
    client.login(server.user, server.password)
    return client


def _append(server: DovecotServer, *messages: bytes) -> None:
    client = _imap(server)
    try:
        for raw in messages:
            status, _ = client.append(
                "INBOX", None, None, raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
            )
            assert status == "OK"
    finally:
        client.logout()


def _count(server: DovecotServer, folder: str) -> int:
    client = _imap(server)
    try:
        status, data = client.select(f'"{folder}"', readonly=True)
        return int(data[0]) if status == "OK" else -1
    finally:
        client.logout()


def _messages(sent, settings):
    dsn = postfix_dsn(
        "alice@example.net",
        envelope_to=verp_address(
            settings, "c", sent.campaign_id, sent.deliveries["alice@example.net"]
        ),
    )
    complaint = arf_report(
        "carol@example.net",
        mail_from=verp_address(
            settings, "c", sent.campaign_id, sent.deliveries["carol@example.net"]
        ),
    )
    return dsn, complaint, VACATION


def test_imap_poller_processes_each_message_once_and_moves_it(engine, session, settings, dovecot):
    settings = settings.replace(
        bounce_address="bounces@bounce.example.org",
        bounce_mailbox_url=f"imap://{dovecot.user}@127.0.0.1:{dovecot.imap_port}/INBOX",
        bounce_mailbox_password=dovecot.password,
        bounce_mailbox_done_folder="Processed",
    )
    sent = sent_campaign(session, ADDRESSES)
    _append(dovecot, *_messages(sent, settings))

    first = poll_mailbox(engine, settings)
    second = poll_mailbox(engine, settings)
    assert (first.seen, first.processed, first.duplicates) == (3, 3, 0)
    assert first.kinds == {"hard": 1, "complaint": 1, "auto_reply": 1}
    assert (second.seen, second.processed) == (0, 0)
    assert _count(dovecot, "INBOX") == 0 and _count(dovecot, "Processed") == 3

    session.expire_all()
    assert session.scalar(select(func.count()).select_from(BounceMessage)) == 3
    assert {r.source for r in session.scalars(select(BounceMessage))} == {"imap"}
    suppressed = {s.email: s.reason for s in session.scalars(select(Suppression))}
    assert suppressed == {"alice@example.net": "bounced", "carol@example.net": "complained"}
    carol = sent.subscribers["carol@example.net"]
    assert set(
        session.scalars(select(Subscription.status).where(Subscription.subscriber_id == carol))
    ) == {"unsubscribed"}
    kinds = sorted(
        session.scalars(
            select(Event.kind).where(Event.kind.in_(["bounce_hard", "complaint", "auto_reply"]))
        )
    )
    assert kinds == ["auto_reply", "bounce_hard", "complaint"]


def test_a_message_left_behind_is_not_processed_again(engine, session, settings, dovecot):
    """Crash between commit and move: the next poll sees the digest and only moves it."""
    settings = settings.replace(
        bounce_address="bounces@bounce.example.org",
        bounce_mailbox_url=f"imap://{dovecot.user}@127.0.0.1:{dovecot.imap_port}/INBOX",
        bounce_mailbox_password=dovecot.password,
        bounce_mailbox_done_folder="",  # delete when done
    )
    sent = sent_campaign(session, ADDRESSES)
    dsn, _, _ = _messages(sent, settings)
    _append(dovecot, dsn)
    assert poll_mailbox(engine, settings).processed == 1
    _append(dovecot, dsn)  # the same message again, as if the move had never happened
    again = poll_mailbox(engine, settings)
    assert (again.seen, again.processed, again.duplicates) == (1, 0, 1)
    assert _count(dovecot, "INBOX") == 0
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(BounceMessage)) == 1
    assert session.scalar(select(func.count()).where(Event.kind == "bounce_hard")) == 1


def test_pop3_poller_deletes_after_storing(engine, session, settings, dovecot):
    settings = settings.replace(
        bounce_address="bounces@bounce.example.org",
        bounce_mailbox_url=f"pop3://{dovecot.user}@127.0.0.1:{dovecot.pop3_port}",
        bounce_mailbox_password=dovecot.password,
    )
    sent = sent_campaign(session, ADDRESSES)
    _append(dovecot, *_messages(sent, settings))
    first = poll_mailbox(engine, settings)
    second = poll_mailbox(engine, settings)
    assert (first.seen, first.processed) == (3, 3)
    assert (second.seen, second.processed) == (0, 0)
    assert _count(dovecot, "INBOX") == 0


def test_wrong_password_is_a_clear_error(engine, settings, dovecot):
    settings = settings.replace(
        bounce_mailbox_url=f"imap://{dovecot.user}@127.0.0.1:{dovecot.imap_port}/INBOX",
        bounce_mailbox_password="wrong",
    )
    with pytest.raises(MailboxError, match="cannot log in"):
        poll_mailbox(engine, settings)


@pytest.mark.parametrize(
    "url,problem",
    [
        ("http://u@host/INBOX", "scheme"),
        ("imaps://host/INBOX", "user@host"),
        ("imaps://u:secret@host/INBOX", "password"),
        ("imap://u@host:notaport/INBOX", "port"),
    ],
)
def test_bad_mailbox_urls_name_the_problem(url, problem):
    with pytest.raises(MailboxError, match=problem):
        parse_mailbox_url(url)
