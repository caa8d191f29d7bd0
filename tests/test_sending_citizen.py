"""Issue 12 end to end in one process: the real engine and SMTP channel, scripted SMTP servers
on loopback as relays and as provider MXs answering real throttle replies, the real Redis,
SQLite and PostgreSQL. (test_sending_workers.py runs the throttle case through real Celery
workers.)"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import redis as redis_lib
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from dispatch.content.store import publish_source
from dispatch.delivery import campaigns, warmup
from dispatch.delivery.engine import drain, sweep
from dispatch.delivery.queue import ListQueue
from dispatch.models import (
    Campaign,
    DailyUsage,
    Delivery,
    Event,
    MailingList,
    Subscriber,
    Subscription,
)
from smtp_server import ScriptedSmtpServer

SHANGHAI = ZoneInfo("Asia/Shanghai")
SMALL_ISSUE = """---
title: 工作简报
number: 7
period_from: 2023-07-01
period_to: 2023-07-31
publisher: 测试出版方
---

# 质量要闻

## 一篇短文
source: 测试
source_url: https://example.org/a
date: 2023-07-03

短短一段正文。
"""

# the shipped table's replies, with rates that do not slow a test down (a provider override
# changes only the fields it names)
FAST_PROVIDERS = """
[providers.qq]
rate_per_second = 0
max_connections = 0
[providers.netease]
rate_per_second = 0
rate_per_hour = 0
max_connections = 0
[providers.gmail]
rate_per_second = 0
max_connections = 0
"""


@pytest.fixture
def servers():
    started: list[ScriptedSmtpServer] = []

    def make() -> ScriptedSmtpServer:
        server = ScriptedSmtpServer().start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def base(settings, redis_url, redis_prefix, tmp_path, engine):
    providers = tmp_path / "providers.toml"
    providers.write_text(FAST_PROVIDERS)
    with Session(engine) as session, session.begin():
        folder = tmp_path / "issue"
        folder.mkdir()
        (folder / "issue.md").write_text(SMALL_ISSUE, encoding="utf-8")
        issue_id = publish_source(session, folder).id
    s = settings.replace(
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        providers_file=str(providers),
        throttle_base_seconds=1.0,
        throttle_max_seconds=4.0,
        throttle_recovery_seconds=2.0,
        retry_base_seconds=0.2,
        retry_max_seconds=0.5,
        lease_seconds=30,
        batch_size=50,
        relay_down_seconds=60,
        smtp_timeout=10,
    )
    yield s, issue_id
    client = redis_lib.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{redis_prefix}*", count=1000):
        client.delete(key)
    client.close()


def relay(name: str, server: ScriptedSmtpServer, **extra) -> dict:
    return {"name": name, "url": server.url, **extra}


def people(engine, tag: str, addresses: list[str]) -> int:
    with Session(engine) as session, session.begin():
        mailing_list = MailingList(slug=tag, name=tag, optin="single")
        session.add(mailing_list)
        session.flush()
        session.execute(
            insert(Subscriber),
            [{"email": a, "name": "读者", "status": "active"} for a in addresses],
        )
        ids = session.scalars(select(Subscriber.id).where(Subscriber.email.in_(addresses))).all()
        session.execute(
            insert(Subscription),
            [{"subscriber_id": i, "list_id": mailing_list.id, "status": "confirmed"} for i in ids],
        )
        return mailing_list.id


def start(engine, settings, issue_id, list_id, options=None, now=None) -> tuple[int, ListQueue]:
    queue = ListQueue()
    with Session(engine) as session, session.begin():
        campaign, _ = campaigns.create_or_get(
            session, issue_id=issue_id, channel="email", list_ids=[list_id], options=options
        )
        campaign_id = campaign.id
    campaigns.start(engine, settings, campaign_id, queue, now=now)
    return campaign_id, queue


def run(
    engine,
    settings,
    campaign_id: int,
    queue: ListQueue,
    *,
    clock: Callable[[], datetime] | None = None,
    timeout: float = 60.0,
    until: Callable[[Campaign], bool] | None = None,
) -> Campaign:
    """Drain and sweep (as the workers and beat would) until the campaign is done."""
    until = until or (lambda c: c.status == "finished")
    deadline = time.monotonic() + timeout
    kwargs = {"clock": clock} if clock else {}
    while True:
        drain(engine, settings, queue, **kwargs)
        with Session(engine) as session:
            campaign = session.get(Campaign, campaign_id)
            if until(campaign) or time.monotonic() > deadline:
                return campaign
        time.sleep(0.2)
        sweep(engine, settings, queue, now=clock() if clock else None)


def received(*servers: ScriptedSmtpServer) -> Counter:
    return Counter(r for s in servers for m in s.messages for r in m.rcpt_tos)


def test_163_throttling_slows_only_netease(engine, base, servers):
    """163.com answers 421 HL:IFC after 50 messages: QQ and Gmail go on untouched, every 163
    recipient arrives exactly once after the backoff, the campaign never pauses."""
    settings, issue_id = base
    qq, netease, gmail = servers(), servers(), servers()
    netease.script.throttle_after = 50
    netease.script.throttle_reply = "421 HL:IFC 127.0.0.1 too many mails in a short time"
    netease.script.throttle_seconds = 1.5
    settings = settings.replace(
        relays=[
            relay("qq-mx", qq, providers=["qq"]),
            relay("163-mx", netease, providers=["netease"]),
            relay("gmail-mx", gmail, providers=["gmail", "other"]),
        ]
    )
    addresses = (
        [f"q{i}@qq.com" for i in range(120)]
        + [f"n{i}@163.com" for i in range(60)]
        + [f"n{i}@126.com" for i in range(30)]
        + [f"g{i}@gmail.com" for i in range(60)]
    )
    list_id = people(engine, "mix", addresses)
    campaign_id, queue = start(engine, settings, issue_id, list_id)
    campaign = run(engine, settings, campaign_id, queue, timeout=90)
    assert campaign.status == "finished", campaign.paused_reason
    got = received(qq, netease, gmail)
    assert set(got) == set(addresses) and max(got.values()) == 1  # everyone exactly once
    assert netease.script.throttled_replies >= 1
    with Session(engine) as session:
        throttled = session.execute(
            select(Delivery.provider, func.count())
            .join(Event, Event.delivery_id == Delivery.id)
            .where(Event.campaign_id == campaign_id, Event.kind == "throttled")
            .group_by(Delivery.provider)
        ).all()
        assert dict(throttled).keys() == {"netease"}
        kept = session.scalars(
            select(Event.data).where(Event.campaign_id == campaign_id, Event.kind == "throttled")
        ).first()
        assert "HL:IFC" in kept["text"] and kept["rule"].startswith("netease:")  # raw reply kept
        # QQ and Gmail were never held: each sent on its first attempt
        never_held = session.scalar(
            select(func.count()).where(
                Delivery.campaign_id == campaign_id,
                Delivery.provider.in_(("qq", "gmail")),
                Delivery.attempts != 1,
            )
        )
        assert never_held == 0
    # the progress (campaign page, CLI, API) per provider, with NetEase's throttle state
    from dispatch.config import set_settings

    set_settings(settings)
    with Session(engine) as session:
        by_provider = {
            p["provider"]: p for p in campaigns.progress(session, campaign_id)["providers"]
        }
    assert {k: v["sent"] for k, v in by_provider.items()} == {"qq": 120, "netease": 90, "gmail": 60}
    assert by_provider["netease"]["throttle"]["strikes"] >= 1 or by_provider["netease"]["throttle"][
        "state"
    ] in ("normal", "recovering")
    assert by_provider["qq"]["throttle"]["state"] == "normal"
    # and they did not wait for NetEase: all of them arrived before 163's last message
    last_netease = max(m.received_at for m in netease.messages)
    assert max(m.received_at for m in qq.messages + gmail.messages) < last_netease


def test_fan_out_interleaves_providers(engine, base):
    settings, issue_id = base
    addresses = [f"q{i}@qq.com" for i in range(150)] + [f"n{i}@163.com" for i in range(50)]
    list_id = people(engine, "inter", addresses)
    campaign_id, _ = start(engine, settings, issue_id, list_id)
    with Session(engine) as session:
        rows = session.execute(
            select(Delivery.batch_no, Delivery.provider, func.count())
            .where(Delivery.campaign_id == campaign_id)
            .group_by(Delivery.batch_no, Delivery.provider)
        ).all()
    per_batch: dict[int, dict[str, int]] = {}
    for batch_no, provider, n in rows:
        per_batch.setdefault(batch_no, {})[provider] = n
    assert len(per_batch) == 4
    for counts in per_batch.values():  # each batch of 50 holds NetEase's quarter
        assert counts == {"qq": 37, "netease": 13} or counts == {"qq": 38, "netease": 12}


def test_a_relay_going_down_moves_its_work_and_nobody_gets_two(engine, base, servers):
    settings, issue_id = base
    flaky, steady = servers(), servers()
    flaky.script.drop_after = 15  # every connection dies at MAIL after 15 messages
    settings = settings.replace(
        relays=[relay("flaky", flaky, weight=5), relay("steady", steady, weight=1)]
    )
    addresses = [f"p{i}@example.net" for i in range(200)]
    list_id = people(engine, "failover", addresses)
    campaign_id, queue = start(engine, settings, issue_id, list_id)
    campaign = run(engine, settings, campaign_id, queue)
    assert campaign.status == "finished", campaign.paused_reason
    got = received(flaky, steady)
    assert set(got) == set(addresses) and max(got.values()) == 1
    assert flaky.drops >= 2 and len(steady.messages) > 0
    with Session(engine) as session:
        relays_used = Counter(
            e["relay"]
            for e in session.scalars(
                select(Event.data).where(Event.campaign_id == campaign_id, Event.kind == "sent")
            )
        )
    assert relays_used == Counter({"flaky": len(flaky.messages), "steady": len(steady.messages)})


def test_a_relay_that_refuses_connections_is_skipped(engine, base, servers):
    settings, issue_id = base
    steady = servers()
    closed = ScriptedSmtpServer().start()
    closed.stop()  # a port nobody listens on
    settings = settings.replace(
        relays=[relay("closed", closed, weight=10), relay("steady", steady, weight=1)]
    )
    addresses = [f"c{i}@example.net" for i in range(60)]
    list_id = people(engine, "refused", addresses)
    campaign_id, queue = start(engine, settings, issue_id, list_id)
    campaign = run(engine, settings, campaign_id, queue)
    assert campaign.status == "finished"
    assert received(steady) == Counter(dict.fromkeys(addresses, 1))


def _clock(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def test_a_daily_quota_of_300_stops_at_300_and_resumes_the_next_day(engine, base, servers):
    settings, issue_id = base
    small = servers()
    settings = settings.replace(relays=[relay("small", small, daily_quota=300)])
    addresses = [f"d{i}@example.net" for i in range(420)]
    list_id = people(engine, "quota", addresses)
    day1 = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
    campaign_id, queue = start(engine, settings, issue_id, list_id, now=day1)
    campaign = run(
        engine,
        settings,
        campaign_id,
        queue,
        clock=_clock(day1),
        timeout=20,
        until=lambda c: c.waiting_reason is not None and not queue.items,
    )
    assert len(small.messages) == 300
    assert campaign.status == "running" and "quota" in campaign.waiting_reason
    next_day = datetime(2026, 3, 3, 0, 0, tzinfo=SHANGHAI)
    with Session(engine) as session:
        due = session.scalars(
            select(Delivery.next_attempt_at).where(
                Delivery.campaign_id == campaign_id, Delivery.status != "sent"
            )
        ).all()
        assert len(due) == 120 and all(d >= next_day for d in due)
        assert session.get(DailyUsage, ("relay:small", "2026-03-02")).used == 300
    # Redis forgets (restart): the database still knows today's 300
    redis_lib.Redis.from_url(settings.redis_url).delete(
        f"{settings.redis_key_prefix}daily:relay:small:2026-03-02"
    )
    run(engine, settings, campaign_id, queue, clock=_clock(day1), timeout=3, until=lambda c: False)
    assert len(small.messages) == 300
    day2 = datetime(2026, 3, 3, 8, 0, tzinfo=SHANGHAI)
    campaign = run(engine, settings, campaign_id, queue, clock=_clock(day2))
    assert campaign.status == "finished" and campaign.waiting_reason is None
    assert received(small) == Counter(dict.fromkeys(addresses, 1))
    with Session(engine) as session:
        assert session.get(DailyUsage, ("relay:small", "2026-03-03")).used == 120


def test_a_sending_window_holds_messages_outside_it(engine, base, servers):
    settings, issue_id = base
    server = servers()
    settings = settings.replace(relays=[relay("only", server)])
    addresses = [f"w{i}@example.net" for i in range(30)]
    list_id = people(engine, "window", addresses)
    noon = datetime(2026, 3, 2, 12, 0, tzinfo=SHANGHAI)
    campaign_id, queue = start(
        engine, settings, issue_id, list_id, options={"window": "09:00-10:00"}, now=noon
    )
    campaign = run(
        engine, settings, campaign_id, queue, clock=_clock(noon), timeout=3, until=lambda c: False
    )
    assert server.messages == []
    assert "09:00-10:00" in campaign.waiting_reason
    opens = datetime(2026, 3, 3, 9, 0, tzinfo=SHANGHAI)
    with Session(engine) as session:
        due = set(
            session.scalars(
                select(Delivery.next_attempt_at).where(Delivery.campaign_id == campaign_id)
            )
        )
    assert due == {opens}
    campaign = run(engine, settings, campaign_id, queue, clock=_clock(opens + timedelta(minutes=5)))
    assert campaign.status == "finished"
    assert received(server) == Counter(dict.fromkeys(addresses, 1))


def test_warm_up_caps_day_one_across_campaigns(engine, base, servers):
    settings, issue_id = base
    server = servers()
    domain = settings.from_address.rpartition("@")[2]
    settings = settings.replace(
        relays=[relay("only", server)], warmup_domains=[domain], warmup_start=200
    )
    first = people(engine, "warm-a", [f"a{i}@example.net" for i in range(150)])
    second = people(engine, "warm-b", [f"b{i}@example.net" for i in range(150)])
    day1 = datetime(2026, 3, 2, 10, 0, tzinfo=SHANGHAI)
    a_id, a_queue = start(engine, settings, issue_id, first, now=day1)
    run(engine, settings, a_id, a_queue, clock=_clock(day1), timeout=20)
    b_id, b_queue = start(engine, settings, issue_id, second, now=day1)
    b = run(
        engine,
        settings,
        b_id,
        b_queue,
        clock=_clock(day1),
        timeout=20,
        until=lambda c: c.waiting_reason is not None and not b_queue.items,
    )
    assert len(server.messages) == 200  # 150 of the first campaign, 50 of the second
    assert "warming up" in b.waiting_reason
    with Session(engine) as session, session.begin():
        today = warmup.allowance_today(session, settings, domain, now=day1)
        assert (today.day_number, today.allowance, today.used, today.left) == (1, 200, 200, 0)
    day2 = datetime(2026, 3, 3, 9, 0, tzinfo=SHANGHAI)
    b = run(engine, settings, b_id, b_queue, clock=_clock(day2))
    assert b.status == "finished" and len(server.messages) == 300
    with Session(engine) as session, session.begin():
        tomorrow = warmup.allowance_today(session, settings, domain, now=day2)
        assert (tomorrow.day_number, tomorrow.allowance, tomorrow.used) == (2, 400, 100)
        assert tomorrow.reason.startswith("grown")


def test_relays_status_shows_quota_use_throttles_and_warm_up(engine, base, servers, tmp_path):
    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings
    from dispatch.delivery.throttle import provider_throttle

    settings, issue_id = base
    server = servers()
    domain = settings.from_address.rpartition("@")[2]
    settings = settings.replace(
        relays=[relay("only", server, daily_quota=1000)], warmup_domains=[domain]
    )
    addresses = [f"s{i}@example.net" for i in range(20)]
    list_id = people(engine, "status", addresses)
    campaign_id, queue = start(engine, settings, issue_id, list_id)
    run(engine, settings, campaign_id, queue)
    provider_throttle(settings).throttled("netease", "421 HL:IFC too fast")
    set_settings(settings)
    result = CliRunner().invoke(main, ["relays", "status", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["relays"][0]["used_today"] == 20 and data["relays"][0]["left_today"] == 980
    netease = next(p for p in data["providers"] if p["provider"] == "netease")
    assert netease["state"] == "backoff" and "HL:IFC" in netease["reason"]
    assert data["warmup"]["allowance"] == 200 and data["warmup"]["used"] == 20
    text = CliRunner().invoke(main, ["relays", "status"]).output
    assert "only" in text and "预热" in text and "warm-up" in text


def test_a_relays_own_rate_is_kept(engine, base, servers):
    settings, issue_id = base
    server = servers()
    settings = settings.replace(relays=[relay("slow", server, rate_per_second=20)])
    addresses = [f"r{i}@example.net" for i in range(70)]
    list_id = people(engine, "relay-rate", addresses)
    campaign_id, queue = start(engine, settings, issue_id, list_id)
    campaign = run(engine, settings, campaign_id, queue)
    assert campaign.status == "finished"
    assert received(server) == Counter(dict.fromkeys(addresses, 1))
    times = sorted(m.received_at for m in server.messages)
    assert times[-1] - times[0] >= 2.0  # 70 at 20/s: at least three one-second windows
