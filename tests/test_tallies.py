"""Stored tallies of a closed campaign (dispatch.tallies): used while nothing happened to the
campaign, counted again (and equal to counting now) after each kind of later change."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from dispatch import events
from dispatch.deliverability.stats import overview
from dispatch.delivery import campaigns
from dispatch.models import Delivery, utcnow
from dispatch.models.delivery import Campaign
from dispatch.models.subscriber import MailingList, Subscriber
from dispatch.models.tally import Tally
from dispatch.subscribers import preferences, service
from dispatch.subscribers.csv_import import import_csv
from dispatch.subscribers.views import list_view
from dispatch.web.stats import campaign_progress, campaign_stats, count_stats

PEOPLE = 6


def _closed_campaign(session) -> Campaign:
    """A campaign finished two hours ago: six deliveries sent, two opened, one clicked."""
    then = utcnow() - timedelta(hours=2)
    campaign = Campaign(
        channel="email",
        list_ids=[],
        dedupe_key="tally-test",
        status="finished",
        tracking=True,
        started_at=then,
        finished_at=then + timedelta(minutes=5),
        created_at=then,
        updated_at=then + timedelta(minutes=5),
        total=PEOPLE,
    )
    session.add(campaign)
    session.flush()
    for i in range(PEOPLE):
        person = Subscriber(email=f"p{i}@qq.com", name=f"P{i}", status="active")
        session.add(person)
        session.flush()
        delivery = Delivery(
            campaign_id=campaign.id,
            subscriber_id=person.id,
            email=person.email,
            batch_no=0,
            provider="qq",
            status="sent",
            attempts=1,
            sent_at=then,
            updated_at=then,
        )
        session.add(delivery)
        session.flush()
        if i < 2:
            events.record(
                session,
                "opened",
                campaign_id=campaign.id,
                delivery_id=delivery.id,
                subscriber_id=person.id,
                at=then,
            )
        if i == 0:
            events.record(
                session,
                "clicked",
                campaign_id=campaign.id,
                delivery_id=delivery.id,
                subscriber_id=person.id,
                at=then,
            )
    # the same campaign row, as a later request reads it (updated_at as stored)
    session.execute(update(Campaign).where(Campaign.id == campaign.id).values(updated_at=then))
    session.commit()
    session.expire_all()
    return session.get(Campaign, campaign.id)


def _tamper(session, kind: str, campaign_id: int, field: str = "total") -> None:
    """Mark the stored tally, so a read that uses it shows the mark."""
    tally = session.get(Tally, (kind, campaign_id))
    assert tally is not None, f"no {kind} tally stored"
    tally.data = {**tally.data, field: -1}
    session.commit()


def _counts(session, campaign: Campaign) -> dict:
    found = campaign_stats(session, campaign)
    session.commit()
    return {"total": found["total"], **found["counts"]}


def _live(session, campaign: Campaign) -> dict:
    found = count_stats(session, campaign)
    return {"total": found["total"], **found["counts"]}


def test_stored_stats_are_used_until_the_campaign_changes(session):
    campaign = _closed_campaign(session)
    first = _counts(session, campaign)
    assert first["total"] == PEOPLE and first["opened"] == 2 and first["clicked"] == 1
    _tamper(session, "stats", campaign.id)
    assert _counts(session, campaign)["total"] == -1  # nothing happened: the stored tally
    session.query(Tally).delete()  # (opens are added to what is stored: store it untampered)
    session.commit()
    _counts(session, campaign)
    delivery = session.query(Delivery).filter_by(campaign_id=campaign.id, email="p3@qq.com").one()

    # an open arrives: counted again, equal to counting now
    events.record(session, "opened", campaign_id=campaign.id, delivery_id=delivery.id)
    session.commit()
    assert _counts(session, campaign) == _live(session, campaign)
    assert _counts(session, campaign)["opened"] == 3

    # a signup elsewhere (an event without a campaign that changes nothing here) keeps it
    _tamper(session, "stats", campaign.id)
    events.record(session, "subscribed", subscriber_id=delivery.subscriber_id)
    session.commit()
    assert _counts(session, campaign)["total"] == -1

    # a late bounce changes a delivery row
    _tamper(session, "stats", campaign.id)
    delivery.status, delivery.updated_at = "bounced", utcnow()
    session.commit()
    assert _counts(session, campaign) == _live(session, campaign)
    assert _counts(session, campaign)["bounced"] == 1

    # an unsubscribe from the preference centre (an event without a campaign)
    _tamper(session, "stats", campaign.id)
    events.record(session, "unsubscribed", subscriber_id=delivery.subscriber_id)
    session.commit()
    assert _counts(session, campaign) == _live(session, campaign)
    assert _counts(session, campaign)["unsubscribed"] == 1

    # a person erased: their opens and clicks go, so the counts drop
    _tamper(session, "stats", campaign.id)
    opener = session.get(
        Subscriber, session.query(Delivery).filter_by(email="p0@qq.com").one().subscriber_id
    )
    preferences.forget(session, opener)
    session.commit()
    assert _counts(session, campaign) == _live(session, campaign)
    assert _counts(session, campaign)["clicked"] == 0


def test_reopened_or_running_campaigns_are_counted_live(session):
    campaign = _closed_campaign(session)
    _counts(session, campaign)
    _tamper(session, "stats", campaign.id)
    campaign.status = "running"  # a retry of the failed rows reopens it
    session.commit()
    assert _counts(session, campaign) == _live(session, campaign)


def test_stored_progress_and_deliverability_match_counting(session, settings):
    campaign = _closed_campaign(session)
    assert campaign_progress(session, campaign)["counts"] == campaigns.counts(session, campaign.id)
    session.commit()
    _tamper(session, "progress", campaign.id)
    assert campaign_progress(session, campaign)["total"] == -1
    first = overview(session, settings)
    session.commit()
    assert first["deliveries"] == PEOPLE and first["complaints"] == 0
    _tamper(session, "deliverability", campaign.id, "deliveries")
    assert overview(session, settings)["deliveries"] == -1
    session.commit()

    delivery = session.query(Delivery).filter_by(campaign_id=campaign.id, email="p1@qq.com").one()
    events.record(session, "complained", campaign_id=campaign.id, delivery_id=delivery.id)
    session.commit()
    after = overview(session, settings)
    assert after["deliveries"] == PEOPLE and after["complaints"] == 1
    progress = campaign_progress(session, campaign)
    assert progress["total"] == PEOPLE and progress["counts"]["sent"] == PEOPLE


def _members(engine, list_id: int, *, stored: bool) -> dict:
    """The list's member counts as the read-only views show them (stored) or counted now."""
    from sqlalchemy.orm import Session

    with Session(engine) as fresh:
        found = list_view(fresh, fresh.get(MailingList, list_id), stored_counts=stored)
        return found["members"]


def _tamper_list(engine, list_id: int) -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as fresh, fresh.begin():
        tally = fresh.get(Tally, ("list", list_id))
        assert tally is not None and tally.data, "no list tally stored"
        tally.data = {**tally.data, "confirmed": -1}


def test_list_counts_stored_until_the_subscriptions_change(engine, tmp_path):
    from sqlalchemy.orm import Session

    with Session(engine) as s, s.begin():
        news = service.create_list(s, "news", "News")
        people = [service.add_subscriber(s, email=f"m{i}@qq.com") for i in range(3)]
        for person in people:
            service.subscribe(s, person, news, send_confirmation=False)
        list_id, first_id, second_id = news.id, people[0].id, people[1].id

    def check_after(change) -> None:
        _members(engine, list_id, stored=True)
        _tamper_list(engine, list_id)
        assert _members(engine, list_id, stored=True)["confirmed"] == -1  # the stored tally
        change()
        assert _members(engine, list_id, stored=True) == _members(engine, list_id, stored=False)

    def unsubscribe() -> None:
        with Session(engine) as s, s.begin():
            service.unsubscribe(s, first_id, list_id)

    def csv_import() -> None:
        path = tmp_path / "more.csv"
        path.write_text("email\nn1@qq.com\nn2@163.com\n")
        import_csv(engine, path, "news")

    def remove() -> None:
        with Session(engine) as s, s.begin():
            service.remove_subscriber(s, s.get(Subscriber, first_id))

    check_after(unsubscribe)
    assert _members(engine, list_id, stored=True)["unsubscribed"] == 1
    check_after(csv_import)
    assert _members(engine, list_id, stored=True)["confirmed"] == 4
    check_after(remove)
    assert _members(engine, list_id, stored=False)["unsubscribed"] == 0

    # a write that rolls back leaves the stored tally as it was
    _tamper_list(engine, list_id)
    with Session(engine) as s:
        service.unsubscribe(s, second_id, list_id)
        s.rollback()
    assert _members(engine, list_id, stored=True)["confirmed"] == -1


def test_new_opens_and_clicks_are_added_to_the_stored_stats(session):
    campaign = _closed_campaign(session)
    campaign_stats(session, campaign)
    session.commit()
    counted_at = session.get(Tally, ("stats", campaign.id)).computed_at
    rows = session.query(Delivery).filter_by(campaign_id=campaign.id).order_by(Delivery.id).all()
    soon = campaign.started_at + timedelta(minutes=40)
    # a new opener, a second click (another link) by the one who clicked, a first click
    events.record(session, "opened", campaign_id=campaign.id, delivery_id=rows[4].id, at=soon)
    events.record(session, "clicked", campaign_id=campaign.id, delivery_id=rows[0].id, at=soon)
    events.record(session, "clicked", campaign_id=campaign.id, delivery_id=rows[1].id, at=soon)
    session.commit()
    grown = campaign_stats(session, campaign)
    session.commit()
    assert grown == count_stats(session, campaign)
    assert grown["counts"]["opened"] == 3 and grown["counts"]["clicked"] == 2
    session.expire_all()
    tally = session.get(Tally, ("stats", campaign.id))
    assert tally.computed_at == counted_at  # added to, not counted again
    # a hit days later: the timeline's buckets change size, so it is counted again
    later = campaign.started_at + timedelta(days=3)
    events.record(session, "opened", campaign_id=campaign.id, delivery_id=rows[5].id, at=later)
    session.commit()
    assert campaign_stats(session, campaign) == count_stats(session, campaign)
    # progress does not depend on opens: its tally stays
    campaign_progress(session, campaign)
    session.commit()
    _tamper(session, "progress", campaign.id)
    events.record(session, "clicked", campaign_id=campaign.id, delivery_id=rows[5].id, at=later)
    session.commit()
    assert campaign_progress(session, campaign)["total"] == -1


def _age(engine, kind: str, campaign_id: int, by: timedelta) -> None:
    from sqlalchemy.orm import Session

    with Session(engine) as fresh, fresh.begin():
        tally = fresh.get(Tally, (kind, campaign_id))
        assert tally is not None, f"no {kind} tally stored"
        tally.computed_at = tally.computed_at - by


def test_a_sending_campaign_is_counted_every_few_seconds_not_per_view(session, engine, monkeypatch):
    from dispatch import tallies

    monkeypatch.setattr(tallies, "IN_BACKGROUND", False)  # the recount before the answer
    campaign = _closed_campaign(session)
    campaign.status, campaign.finished_at = "running", None
    rows = session.query(Delivery).filter_by(campaign_id=campaign.id).order_by(Delivery.id).all()
    for row in rows[3:]:
        row.status, row.sent_at = "pending", None
    session.commit()

    def shown() -> dict:
        session.expire_all()  # (a new request: nothing cached)
        found = campaign_progress(session, session.get(Campaign, campaign.id))
        session.commit()
        return found

    first = shown()
    assert first["counts"] == campaigns.counts(session, campaign.id)  # the live count
    assert first["counts"]["sent"] == 3 and first["counted_at"] is not None
    rows[3].status, rows[3].sent_at, rows[3].updated_at = "sent", utcnow(), utcnow()
    session.commit()
    # within LIVE_FRESH: the last count, with its time (the page shows it)
    assert shown()["counts"]["sent"] == 3
    # older than LIVE_FRESH: counted again (PostgreSQL: after answering with the last count)
    _age(engine, "live-progress", campaign.id, tallies.LIVE_FRESH + timedelta(seconds=1))
    shown()
    assert shown()["counts"] == campaigns.counts(session, campaign.id)
    assert shown()["counts"]["sent"] == 4
    # older than LIVE_MAX: the view waits for a count
    rows[4].status, rows[4].updated_at = "bounced", utcnow()
    session.commit()
    _age(engine, "live-progress", campaign.id, tallies.LIVE_MAX + timedelta(seconds=1))
    assert shown()["counts"] == campaigns.counts(session, campaign.id)
    # the campaign row's own fields are always current, even from a stored count
    session.execute(update(Campaign).where(Campaign.id == campaign.id).values(status="paused"))
    session.commit()
    assert shown()["status"] == "paused"
    stats = campaign_stats(session, session.get(Campaign, campaign.id))
    assert {"total": stats["total"], **stats["counts"]} == _live(session, campaign)


def test_the_beat_counts_stale_figures_again_before_a_view(session, engine, settings):
    from dispatch import tallies

    campaign = _closed_campaign(session)
    _counts(session, campaign)
    campaign_progress(session, campaign)
    session.commit()
    rows = session.query(Delivery).filter_by(campaign_id=campaign.id).order_by(Delivery.id).all()
    # the tallies were counted 3 minutes ago; since then a bounce (2 minutes ago: past the
    # late-commit margin, as the beat finds it a minute later), an unsubscribe from the
    # preference centre, a complaint
    for kind in ("stats", "progress"):
        _age(engine, kind, campaign.id, timedelta(minutes=3))
    rows[1].status, rows[1].updated_at = "bounced", utcnow() - timedelta(minutes=2)
    events.record(session, "unsubscribed", subscriber_id=rows[2].subscriber_id)
    events.record(session, "complained", campaign_id=campaign.id, delivery_id=rows[3].id)
    session.commit()
    assert tallies.recount_stale(engine, settings) == {"checked": 2, "recounted": 2, "running": 0}
    session.expire_all()
    campaign = session.get(Campaign, campaign.id)
    for kind in ("stats", "progress"):
        stored = session.get(Tally, (kind, campaign.id))
        assert tallies.check(session, campaign, stored, kind == "progress") == "valid"
    stored = tallies._decode(session.get(Tally, ("stats", campaign.id)).data)
    assert {"total": stored["total"], **stored["counts"]} == _live(session, campaign)
    assert stored["counts"]["bounced"] == 1 and stored["counts"]["unsubscribed"] == 1
    progress = tallies._decode(session.get(Tally, ("progress", campaign.id)).data)
    assert progress["counts"] == campaigns.counts(session, campaign.id)
    assert (
        progress["after_send"]["counts"]
        == campaign_progress(session, campaign)["after_send"]["counts"]
    )
    again = tallies.recount_stale(engine, settings)
    assert again["recounted"] == 0 and again["running"] == 0  # nothing new: no count


def test_the_beat_counts_sending_campaigns_ahead_of_the_first_view(session, engine, settings):
    from dispatch import tallies

    campaign = _closed_campaign(session)
    campaign.status = "running"
    session.commit()
    assert tallies.recount_stale(engine, settings)["running"] == 1
    session.expire_all()
    stored = session.get(Tally, ("live-progress", campaign.id))
    assert stored is not None
    assert tallies._decode(stored.data)["counts"] == campaigns.counts(session, campaign.id)
    _tamper(session, "live-progress", campaign.id)
    assert campaign_progress(session, session.get(Campaign, campaign.id))["total"] == -1


def test_deliverability_counted_in_sql_equals_the_rows_read_one_by_one(session, settings):
    from dispatch.deliverability import stats

    campaign = _closed_campaign(session)
    rows = session.query(Delivery).filter_by(campaign_id=campaign.id).order_by(Delivery.id).all()
    rows[0].status = "bounced"
    rows[1].status, rows[1].sent_at = "failed", None
    rows[2].email = "p2@163.com"
    rows[5].status = "pending"
    for row, kind in ((rows[3], "bounce_hard"), (rows[1], "bounced"), (rows[4], "complained")):
        events.record(session, kind, campaign_id=campaign.id, delivery_id=row.id)
    events.record(session, "bounced", campaign_id=campaign.id, delivery_id=rows[0].id)
    session.commit()
    namer = stats.provider_namer(settings)
    for since in (None, utcnow() - timedelta(days=30)):
        by_rows = stats._signals_in_python(session, namer, campaign.id, since)
        assert by_rows["hard_bounces"] == 3 and by_rows["complaints"] == 1
        assert stats._signals(session, namer, campaign.id, since) == by_rows
