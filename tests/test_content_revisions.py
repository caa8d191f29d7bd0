"""Republishing an issue that people received keeps what they received (issue 9, item 10):
a changed source becomes a new revision `<slug>-r<N>` with a warning."""

from __future__ import annotations

import shutil

from click.testing import CliRunner
from sqlalchemy import func, select, update

from dispatch.cli import main
from dispatch.content.store import publish_source
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.models import Delivery, Issue, utcnow
from dispatch.paths import SAMPLE_ISSUE_DIR
from test_delivery_support import make_list_with


def _copy(tmp_path):
    folder = tmp_path / "2023-02"
    shutil.copytree(SAMPLE_ISSUE_DIR, folder)
    return folder


def _edit(folder, old: str, new: str) -> None:
    source = folder / "issue.md"
    text = source.read_text(encoding="utf-8")
    assert old in text
    source.write_text(text.replace(old, new, 1), encoding="utf-8")


def _send_to_someone(engine, session, settings, issue_id: int, test: bool = False) -> None:
    if test:
        campaign = campaigns.create_test_send(
            session, issue_id=issue_id, channel="email", addresses=["t@example.org"]
        )
    else:
        members = make_list_with(session, "members", ["a@example.org"])
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue_id, channel="email", list_ids=[members]
        )
    session.commit()
    campaigns.start(engine, settings, campaign.id, ListQueue())
    session.execute(
        update(Delivery)
        .where(Delivery.campaign_id == campaign.id)
        .values(status="sent", sent_at=utcnow())
    )
    session.commit()


def test_a_sent_issue_keeps_its_content_and_a_change_is_a_new_revision(
    engine, session, settings, tmp_path
):
    folder = _copy(tmp_path)
    original = publish_source(session, folder)
    session.commit()
    sent_hash, sent_text = original.content_hash, original.source_text

    # only a test went out: the issue is still a draft of itself, updated in place
    _send_to_someone(engine, session, settings, original.id, test=True)
    _edit(folder, "title:", "title: 修订")
    same = publish_source(session, folder)
    session.commit()
    assert same.id == original.id and same.publish_note is None
    sent_hash, sent_text = same.content_hash, same.source_text

    _send_to_someone(engine, session, settings, original.id)
    _edit(folder, "title: 修订", "title: 再修订")
    revised = publish_source(session, folder)
    session.commit()
    assert revised.id != original.id
    assert (revised.slug, revised.revision, revised.revision_of_id) == (
        "2023-02-r2",
        2,
        original.id,
    )
    assert "stays as people received it" in revised.publish_note
    assert "revision 2" in revised.publish_note and "第 2 版" in revised.publish_note
    session.expire_all()
    kept = session.get(Issue, original.id)
    assert (kept.content_hash, kept.source_text) == (sent_hash, sent_text)

    # the same changed source again: the same revision, no third row
    again = publish_source(session, folder)
    session.commit()
    assert again.id == revised.id
    # the revision nobody received yet is updated in place
    _edit(folder, "title: 再修订", "title: 三修订")
    updated = publish_source(session, folder)
    session.commit()
    assert updated.id == revised.id and updated.publish_note is None
    assert session.scalar(select(func.count(Issue.id))) == 2


def test_cli_publish_warns_about_the_new_revision(engine, session, settings, tmp_path):
    folder = _copy(tmp_path)
    original = publish_source(session, folder)
    session.commit()
    _send_to_someone(engine, session, settings, original.id)
    _edit(folder, "title:", "title: 修订")
    result = CliRunner().invoke(main, ["issues", "publish", str(folder)])
    assert result.exit_code == 0, result.output
    assert "issue 2023-02 has been sent" in result.stderr and "2023-02-r2" in result.stderr
