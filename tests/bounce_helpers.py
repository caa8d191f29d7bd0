"""Builders for the bounce tests: a sent campaign whose deliveries bounces can point at, and
DSN / ARF messages in the exact format Postfix and the feedback loops write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy.orm import Session

from dispatch.models import Campaign, Delivery, Issue, utcnow
from dispatch.models.subscriber import MailingList, Subscriber, Subscription


@dataclass
class Sent:
    campaign_id: int
    list_ids: list[int]
    deliveries: dict[str, int]  # address -> delivery id
    subscribers: dict[str, int]  # address -> subscriber id


def sent_campaign(
    session: Session,
    addresses: list[str],
    *,
    lists: int = 2,
    slug: str = "2026-11",
    status: str = "sent",
) -> Sent:
    """An issue, `lists` lists everyone is on, and a finished email campaign that reached all."""
    issue = Issue(
        slug=slug,
        title="工作简报",
        number=1,
        period_from=date(2026, 11, 1),
        period_to=date(2026, 11, 30),
        publisher="研究院",
        source_path="/tmp",
        source_text="# x",
        content_hash="0" * 64,
        status="published",
    )
    session.add(issue)
    mailing_lists = [MailingList(slug=f"{slug}-list{i}", name=f"List {i}") for i in range(lists)]
    session.add_all(mailing_lists)
    session.flush()
    subscribers = {}
    for address in addresses:
        sub = Subscriber(email=address, name=address.split("@")[0], status="active")
        session.add(sub)
        session.flush()
        subscribers[address] = sub.id
        for ml in mailing_lists:
            session.add(Subscription(subscriber_id=sub.id, list_id=ml.id, status="confirmed"))
    campaign = Campaign(
        issue_id=issue.id,
        channel="email",
        list_ids=[ml.id for ml in mailing_lists],
        dedupe_key=f"{issue.id}:email:{slug}",
        status="finished",
        total=len(addresses),
        batch_count=1,
    )
    session.add(campaign)
    session.flush()
    deliveries = {}
    for address in addresses:
        d = Delivery(
            campaign_id=campaign.id,
            subscriber_id=subscribers[address],
            email=address,
            name="",
            batch_no=0,
            status=status,
            attempts=1,
            sent_at=utcnow(),
            message_id=f"<d0.c{campaign.id}@example.org>",
        )
        session.add(d)
        session.flush()
        deliveries[address] = d.id
    session.commit()
    return Sent(campaign.id, [ml.id for ml in mailing_lists], deliveries, subscribers)


def postfix_dsn(
    recipient: str,
    *,
    envelope_to: str = "editor@example.org",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
    action: str = "failed",
    message_id: str = "<original@example.org>",
    body_charset: str = "us-ascii",
    notification: str | bytes | None = None,
) -> bytes:
    """A DSN laid out exactly as Postfix 3.x writes one (bounce(8) templates)."""
    diag = diagnostic.format(rcpt=recipient)
    note = notification
    if note is None:
        note = (
            "This is the mail system at host relay.example.org.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.\n\n"
            f"<{recipient}>: host mx.example.net[192.0.2.10] said: {diag.split('; ', 1)[-1]}\n"
            "    (in reply to RCPT TO command)\n"
        )
    if isinstance(note, str):
        note = note.encode("utf-8")
    head = (
        "Return-Path: <>\n"
        f"Delivered-To: {envelope_to}\n"
        "From: MAILER-DAEMON@relay.example.org (Mail Delivery System)\n"
        "Subject: Undelivered Mail Returned to Sender\n"
        f"To: {envelope_to}\n"
        "Auto-Submitted: auto-replied\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=delivery-status;\n"
        '\tboundary="ABC123.1700000000/relay.example.org"\n'
        "Content-Transfer-Encoding: 8bit\n"
        "Message-Id: <20261130000000.ABC123@relay.example.org>\n\n"
        "This is a MIME-encapsulated message.\n\n"
        "--ABC123.1700000000/relay.example.org\n"
        "Content-Description: Notification\n"
        f"Content-Type: text/plain; charset={body_charset}\n"
        "Content-Transfer-Encoding: 8bit\n\n"
    ).encode()
    report = (
        "\n--ABC123.1700000000/relay.example.org\n"
        "Content-Description: Delivery report\n"
        "Content-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.example.org\n"
        "X-Postfix-Queue-ID: ABC123\n"
        f"X-Postfix-Sender: rfc822; {envelope_to}\n"
        "Arrival-Date: Mon, 30 Nov 2026 10:00:00 +0800 (CST)\n\n"
        f"Final-Recipient: rfc822; {recipient}\n"
        f"Original-Recipient: rfc822;{recipient}\n"
        f"Action: {action}\n"
        f"Status: {status}\n"
        "Remote-MTA: dns; mx.example.net\n"
        f"Diagnostic-Code: {diag}\n\n"
        "--ABC123.1700000000/relay.example.org\n"
        "Content-Description: Undelivered Message Headers\n"
        "Content-Type: text/rfc822-headers\n\n"
        "From: =?utf-8?b?5bel5L2c566A5oql?= <bulletin@example.org>\n"
        f"To: <{recipient}>\n"
        "Subject: =?utf-8?b?5bel5L2c566A5oql?=\n"
        f"Message-ID: {message_id}\n\n"
        "--ABC123.1700000000/relay.example.org--\n"
    ).encode()
    return head + note + report


def arf_report(
    recipient: str, *, mail_from: str = "bulletin@example.org", message_id: str = "<x@example.org>"
) -> bytes:
    """An RFC 5965 abuse report as mailbox providers' feedback loops send them."""
    return (
        "From: staff@fbl.example.net\n"
        "To: abuse@example.org\n"
        "Subject: FW: Earn money\n"
        "MIME-Version: 1.0\n"
        "Content-Type: multipart/report; report-type=feedback-report; "
        'boundary="part1_13d.2e68ed54"\n\n'
        "--part1_13d.2e68ed54\n"
        'Content-Type: text/plain; charset="US-ASCII"\n\n'
        "This is an email abuse report for an email message received from IP 192.0.2.1.\n\n"
        "--part1_13d.2e68ed54\n"
        "Content-Type: message/feedback-report\n\n"
        "Feedback-Type: abuse\n"
        "User-Agent: SomeGenerator/1.0\n"
        "Version: 1\n"
        f"Original-Mail-From: <{mail_from}>\n"
        f"Original-Rcpt-To: <{recipient}>\n"
        "Arrival-Date: Thu, 8 Mar 2005 14:00:00 EDT\n"
        "Reporting-MTA: dns; mail.example.net\n"
        "Source-IP: 192.0.2.1\n\n"
        "--part1_13d.2e68ed54\n"
        "Content-Type: message/rfc822\n"
        "Content-Disposition: inline\n\n"
        "From: <bulletin@example.org>\n"
        f"To: <{recipient}>\n"
        "Subject: Earn money\n"
        f"Message-ID: {message_id}\n\n"
        "Spam Spam Spam\n"
        "--part1_13d.2e68ed54--\n"
    ).encode()
