"""The first open and click keep who made them (user agent, cut; address) for the reports, and
a real tracked open through the web app lands in the report as the right origin."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatch.models import Event
from dispatch.models.delivery import Campaign
from dispatch.reports import report
from dispatch.tokens import make_click_token, make_open_token
from dispatch.web.routes_tracking import MAX_AGENT
from test_web_support import seed

pytest_plugins = ["test_web_support"]

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148"
)


def test_hits_keep_agent_and_address_and_the_report_reads_them(client, engine, settings):
    s = seed(engine, settings, n_subscribers=3)
    person, proxy, huge = s.delivery_ids
    client.get(f"/t/o/{make_open_token(settings, person)}.gif", headers={"User-Agent": IPHONE})
    client.get(
        f"/t/o/{make_open_token(settings, proxy)}.gif", headers={"User-Agent": "Mozilla/5.0"}
    )
    client.get(f"/t/o/{make_open_token(settings, huge)}.gif", headers={"User-Agent": "b" * 10_240})
    client.get(f"/t/c/{make_click_token(settings, person, 1)}", headers={"User-Agent": IPHONE})
    with Session(engine) as session:
        events = {
            (e.kind, e.delivery_id): e.data
            for e in session.scalars(select(Event).where(Event.kind.in_(("opened", "clicked"))))
        }
        assert events["opened", person]["ua"] == IPHONE
        assert events["opened", person]["ip"]  # the test client's address
        assert len(events["opened", huge]["ua"]) == MAX_AGENT
        assert events["clicked", person]["link_index"] == 1
        assert events["clicked", person]["ua"] == IPHONE
        r = report.campaign_report(session, session.get_one(Campaign, s.campaign_id), None)
    assert r["counts"]["opened"]["mpp"] == 1
    assert r["counts"]["opened"]["person"] == 2
    assert r["counts"]["clicked"]["person"] == 1
    assert {row["key"] for row in r["by_client"]} >= {"Apple Mail", "Apple Mail (MPP)"}
