"""Issue 19 item 4: review and approval before any send to real lists.

Pinned here, on SQLite and PostgreSQL: a version moves draft → submitted → approved (or back
to draft with comments); the approver is never its last editor; the approval names the
content hash and any change after it voids it (a new version, or an image replaced on disk);
two reviewers approving at once take turns with a clear message; a setting asks for two
approvals. The one send guard is obeyed by `dispatch send`, the API, the web page and the
scheduler's sweep; test sends always go.
"""

from __future__ import annotations

import shutil
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.content.parse import parse_issue
from dispatch.content.store import publish_issue
from dispatch.delivery import campaigns
from dispatch.delivery.queue import ListQueue
from dispatch.editorial import review, versions
from dispatch.editorial.guard import NotApproved, check_sendable
from dispatch.models.delivery import Campaign
from dispatch.models.editorial import IssueReview, IssueVersion
from dispatch.models.issue import Issue
from dispatch.models.web import User
from dispatch.web.users import create_user
from test_delivery_support import make_list_with

VALID = Path(__file__).parent / "fixtures" / "issues" / "valid"


@pytest.fixture
def settings(settings):
    """The suite's settings with review on (the product default; conftest turns it off)."""
    on = settings.replace(review_required=True)
    set_settings(on)
    return on


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "issue"
    shutil.copytree(VALID, folder)
    return folder


def _people(session: Session) -> dict[str, User]:
    return {
        role: create_user(session, f"{role}@example.org", "a long password here", kind)
        for role, kind in (
            ("editor", "editor"),
            ("reviewer", "reviewer"),
            ("second", "reviewer"),
            ("admin", "admin"),
        )
    }


def _published(session: Session, settings, folder: Path, author: User | None = None) -> Issue:
    issue = publish_issue(
        session, parse_issue(folder), settings=settings, author_id=author.id if author else None
    )
    session.commit()
    return issue


def _approved(session, settings, issue: Issue, people) -> IssueVersion:
    version = versions.latest_version(session, issue.id)
    assert version is not None
    review.submit(session, version, people["editor"].id)
    review.approve(session, settings, version, people["reviewer"], seen_hash=version.content_hash)
    session.commit()
    return version


def test_a_version_moves_draft_submitted_approved_and_the_guard_names_the_approver(
    session, settings, tmp_path
):
    people = _people(session)
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    version = versions.latest_version(session, issue.id)
    assert version.number == 1 and version.status == "draft"
    assert version.author_id == people["editor"].id
    with pytest.raises(NotApproved, match="only an approved version"):
        check_sendable(session, settings, issue.id)
    review.submit(session, version, people["editor"].id)
    with pytest.raises(NotApproved, match="submitted"):
        check_sendable(session, settings, issue.id)
    review.approve(session, settings, version, people["reviewer"], seen_hash=issue.content_hash)
    session.commit()
    clearance = check_sendable(session, settings, issue.id)
    assert clearance.approvers == ["reviewer@example.org"]
    assert clearance.content_hash == issue.content_hash == version.content_hash
    stored = session.scalars(select(IssueReview)).one()
    assert stored.verdict == "approved" and stored.content_hash == issue.content_hash
    # with review off, anything published may go
    off = settings.replace(review_required=False)
    assert check_sendable(session, off, issue.id).approvers == []


def test_the_author_or_submitter_cannot_approve_and_an_editor_cannot_review(
    session, settings, tmp_path
):
    people = _people(session)
    # an admin wrote it: even an admin cannot approve their own version
    issue = _published(session, settings, _folder(tmp_path), people["admin"])
    version = versions.latest_version(session, issue.id)
    review.submit(session, version, people["reviewer"].id)
    session.commit()
    for who in ("admin", "reviewer"):  # the last editor, then the one who submitted it
        with pytest.raises(review.ReviewError, match="cannot review your own version") as info:
            review.approve(session, settings, version, people[who], seen_hash=issue.content_hash)
        assert info.value.kind == "forbidden"
    with pytest.raises(review.ReviewError, match="only a reviewer or an admin"):
        review.approve(session, settings, version, people["editor"], seen_hash=issue.content_hash)
    session.rollback()
    assert session.scalars(select(IssueReview)).all() == []
    assert session.get(IssueVersion, version.id).status == "submitted"


def test_a_change_after_approval_voids_it(session, settings, tmp_path):
    people = _people(session)
    folder = _folder(tmp_path)
    issue = _published(session, settings, folder, people["editor"])
    approved = _approved(session, settings, issue, people)
    assert check_sendable(session, settings, issue.id).version_number == 1
    # the editor changes one word in the browser: a new version, a draft; the approval is void
    text = issue.source_text.replace("第二行与第一行合成一段。", "第二行改过了。")
    saved = versions.save_source(
        session, settings, issue, text, author_id=people["editor"].id, base_number=1
    )
    session.commit()
    assert saved.created and saved.version.number == 2 and saved.version.status == "draft"
    assert session.get(IssueVersion, approved.id).status == "approved"  # history is kept
    with pytest.raises(NotApproved, match="version 2 is draft"):
        check_sendable(session, settings, issue.id)
    # restoring the approved text is a change too: version 3, to be reviewed again
    restored = versions.restore(session, settings, issue, 1, author_id=people["editor"].id)
    session.commit()
    assert restored.version.number == 3 and restored.version.source_text == approved.source_text
    with pytest.raises(NotApproved, match="version 3 is draft"):
        check_sendable(session, settings, issue.id)
    # a reviewer who opened version 1 cannot approve what is now there
    with pytest.raises(review.ReviewError, match="not the latest"):
        review.approve(
            session, settings, approved, people["second"], seen_hash=approved.content_hash
        )


def test_an_image_replaced_on_disk_after_approval_voids_it(session, settings, tmp_path):
    people = _people(session)
    folder = _folder(tmp_path)
    issue = _published(session, settings, folder, people["editor"])
    _approved(session, settings, issue, people)
    check_sendable(session, settings, issue.id)
    shutil.copy(folder / "images" / "cover.png", folder / "images" / "photo.png")
    with pytest.raises(NotApproved, match="changed after version 1 was approved"):
        check_sendable(session, settings, issue.id)


def test_approving_content_other_than_what_was_reviewed_is_refused(session, settings, tmp_path):
    people = _people(session)
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    version = versions.latest_version(session, issue.id)
    review.submit(session, version, people["editor"].id)
    with pytest.raises(review.ReviewError, match="not the content you reviewed"):
        review.approve(session, settings, version, people["reviewer"], seen_hash="0" * 64)


def test_sending_back_with_comments_returns_to_draft_and_needs_a_comment(
    session, settings, tmp_path
):
    people = _people(session)
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    version = versions.latest_version(session, issue.id)
    review.submit(session, version, people["editor"].id)
    with pytest.raises(review.ReviewError, match="say what to change"):
        review.request_changes(session, version, people["reviewer"], "   ")
    review.request_changes(session, version, people["reviewer"], "标题有错字")
    session.commit()
    assert version.status == "draft"
    comment = session.scalars(select(IssueReview)).one()
    assert (comment.verdict, comment.comment) == ("changes_requested", "标题有错字")
    with pytest.raises(review.ReviewError, match="not submitted"):
        review.approve(session, settings, version, people["reviewer"], seen_hash=issue.content_hash)


def test_two_approvals_when_the_setting_asks_and_the_same_reviewer_counts_once(
    session, settings, tmp_path
):
    settings = settings.replace(review_approvals=2)
    people = _people(session)
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    version = versions.latest_version(session, issue.id)
    review.submit(session, version, people["editor"].id)
    review.approve(session, settings, version, people["reviewer"], seen_hash=issue.content_hash)
    assert version.status == "submitted"
    with pytest.raises(review.ReviewError, match="approved version 1 already"):
        review.approve(session, settings, version, people["reviewer"], seen_hash=issue.content_hash)
    review.approve(session, settings, version, people["second"], seen_hash=issue.content_hash)
    session.commit()
    assert version.status == "approved"
    assert check_sendable(session, settings, issue.id).approvers == [
        "reviewer@example.org",
        "second@example.org",
    ]
    # raising the setting afterwards: the guard counts again
    with pytest.raises(NotApproved, match="needs 3 approvals, it has 2"):
        check_sendable(session, settings.replace(review_approvals=3), issue.id)


def test_two_reviewers_approving_at_once_are_serialised(engine, settings, tmp_path):
    """Two sessions approve the same version at the same moment: one wins, the other waits for
    the row lock and is told who approved it; exactly one approval is stored."""
    with Session(engine, expire_on_commit=False) as session:
        people = _people(session)
        issue = _published(session, settings, _folder(tmp_path), people["editor"])
        version = versions.latest_version(session, issue.id)
        review.submit(session, version, people["editor"].id)
        session.commit()
        ids = {k: u.id for k, u in people.items()}
    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def approve_as(who: str) -> None:
        with Session(engine) as s:
            reviewer = s.get(User, ids[who])
            v = s.get(IssueVersion, version.id)
            barrier.wait()  # both have read "submitted" before either decides
            try:
                review.approve(s, settings, v, reviewer, seen_hash=v.content_hash)
                s.commit()
                outcomes[who] = "approved"
            except review.ReviewError as exc:
                s.rollback()
                outcomes[who] = str(exc)

    threads = [threading.Thread(target=approve_as, args=(w,)) for w in ("reviewer", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["reviewer", "second"]
    winners = [w for w, o in outcomes.items() if o == "approved"]
    assert len(winners) == 1, outcomes
    loser = "second" if winners == ["reviewer"] else "reviewer"
    assert "was approved already by " + f"{winners[0]}@example.org" in outcomes[loser]
    with Session(engine) as s:
        assert len(s.scalars(select(IssueReview)).all()) == 1
        assert s.get(IssueVersion, version.id).status == "approved"


def _draft_campaign(session, settings, tmp_path, people) -> tuple[Issue, int]:
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    list_id = make_list_with(session, "members", ["a@example.org", "b@example.org"])
    campaign, _ = campaigns.create_or_get(
        session, issue_id=issue.id, channel="email", list_ids=[list_id]
    )
    session.commit()
    return issue, campaign.id


def test_the_core_refuses_to_start_or_schedule_an_unapproved_issue_but_tests_go(
    engine, session, settings, tmp_path
):
    people = _people(session)
    issue, campaign_id = _draft_campaign(session, settings, tmp_path, people)
    with pytest.raises(NotApproved, match="only an approved version"):
        campaigns.start(engine, settings, campaign_id, ListQueue())
    at = datetime.now(UTC) + timedelta(hours=1)
    with pytest.raises(NotApproved):
        campaigns.schedule(session, campaign_id, at, settings=settings)
    session.rollback()
    assert session.get(Campaign, campaign_id).status == "draft"
    test = campaigns.create_test_send(
        session, issue_id=issue.id, channel="email", addresses=["t@example.org"]
    )
    session.commit()
    assert campaigns.start(engine, settings, test.id, ListQueue())  # a test always goes
    _approved(session, settings, issue, people)
    assert campaigns.start(engine, settings, campaign_id, ListQueue())


def test_the_sweep_returns_a_schedule_to_draft_when_the_issue_changed_after_approval(
    engine, session, settings, tmp_path
):
    from dispatch.delivery.engine import sweep

    people = _people(session)
    issue, campaign_id = _draft_campaign(session, settings, tmp_path, people)
    _approved(session, settings, issue, people)
    campaigns.schedule(session, campaign_id, datetime.now(UTC) + timedelta(minutes=5))
    session.commit()
    text = issue.source_text.replace("第二行与第一行合成一段。", "定时之后改过了。")
    versions.save_source(
        session, settings, issue, text, author_id=people["editor"].id, base_number=1
    )
    session.commit()
    report = sweep(engine, settings, ListQueue(), now=datetime.now(UTC) + timedelta(minutes=6))
    assert report.started == []
    with Session(engine) as s:
        campaign = s.get(Campaign, campaign_id)
        assert campaign.status == "draft" and campaign.total == 0


def test_dispatch_send_refuses_an_unapproved_issue_and_stores_nothing(session, settings, tmp_path):
    people = _people(session)
    issue = _published(session, settings, _folder(tmp_path), people["editor"])
    make_list_with(session, "members", ["a@example.org"])
    session.commit()
    result = CliRunner().invoke(main, ["send", issue.slug, "--lists", "members"])
    assert result.exit_code != 0
    assert "only an approved version can be sent" in result.output
    assert "只有审核通过的版本才能发送" in result.output
    assert session.scalars(select(Campaign)).all() == []
    # a test send from the CLI is always allowed
    test = CliRunner().invoke(main, ["send", issue.slug, "--test", "t@example.org", "--json"])
    assert test.exit_code == 0, test.output
    assert session.scalars(select(Campaign.is_test)).all() == [True]


def test_a_paused_campaign_whose_issue_changed_is_not_resumed_until_approved_again(
    engine, session, settings, tmp_path
):
    people = _people(session)
    issue, campaign_id = _draft_campaign(session, settings, tmp_path, people)
    _approved(session, settings, issue, people)
    campaigns.start(engine, settings, campaign_id, ListQueue())
    campaigns.pause(session, campaign_id)
    session.commit()
    # nothing has reached anyone yet, so the save changes this issue row in place
    text = issue.source_text.replace("第二行与第一行合成一段。", "暂停时改过了。")
    versions.save_source(
        session, settings, issue, text, author_id=people["editor"].id, base_number=1
    )
    session.commit()
    with pytest.raises(NotApproved, match="version 2 is draft"):
        campaigns.resume(engine, settings, campaign_id, ListQueue())
    session.expire_all()
    assert session.get(Campaign, campaign_id).status == "paused"
