"""Charts end at the present: the campaign page's chart pads a short campaign's axis only up
to now, and the report charts draw one bar per bucket up to the one holding now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from dispatch.web.chart import PERSON_COLOUR, opens_clicks_svg, stacked_time_svg


def test_campaign_chart_axis_stops_at_the_present():
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    timeline = {
        "bucket_seconds": 3600,
        "buckets": [{"start": hour - timedelta(hours=2), "opened": 3, "clicked": 1}],
    }
    svg = opens_clicks_svg(timeline)
    starts = re.findall(r"<title>([0-9-]+ [0-9:]+)\+00:00:", svg)
    latest = max(datetime.fromisoformat(s).replace(tzinfo=UTC) for s in starts)
    assert latest <= datetime.now(UTC)
    assert len(set(starts)) == 3  # two hours ago, one hour ago, this hour: nothing later


def test_report_chart_has_one_bar_per_bucket_and_names_its_table():
    buckets = [
        {"start": datetime(2026, 11, 1, h), "hours": 1, "values": {"person": h}} for h in range(4)
    ]
    svg = stacked_time_svg(
        buckets,
        [("person", "people", PERSON_COLOUR)],
        label="opens",
        table_id="t1",
        tick=lambda b: b["start"].strftime("%H"),
    )
    assert 'aria-describedby="t1"' in svg and 'role="img"' in svg
    assert svg.count(f'fill="{PERSON_COLOUR}"><title>') == 3  # the empty first hour: no bar
    assert "<script" not in svg
