"""Account types, send options, previews by WeChat ID, the stable token and WeChat's own
numbers, against the fake WeChat API over HTTP."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from dispatch.cli import main
from dispatch.config import set_settings
from dispatch.delivery import campaigns as campaign_service
from dispatch.delivery.engine import drain
from dispatch.delivery.queue import ListQueue
from dispatch.dev.wechat_testing import drafted_issue, seed_followers
from dispatch.models import Campaign, Delivery
from dispatch.wechat.client import WechatClient
from dispatch.wechat.errors import RetryPolicy, WechatError
from dispatch.wechat.token_source import FORCE_PER_DAY, ForceBudget


@pytest.fixture
def issue(session, wechat_settings, tmp_path):
    issue = drafted_issue(session, wechat_settings, tmp_path, 2, 1)
    return issue


def _factory(kind, settings, context):
    from dispatch.channels.wechat import WechatChannel

    return WechatChannel(settings, context, policy=RetryPolicy(attempts=1), sleep=lambda s: None)


def _create(session, settings, issue, list_id, **options):
    return campaign_service.create_or_get(
        session,
        issue_id=issue.id,
        channel="wechat",
        list_ids=[list_id],
        options=options,
        settings=settings,
    )


@pytest.mark.parametrize(
    ("account", "options", "refused"),
    [
        ({"wechat_account_type": "subscription"}, {"wechat_mode": "openids"}, "service account"),
        ({"wechat_account_type": "subscription"}, {"wechat_mode": "tag"}, "wechat_tag_id"),
        ({"wechat_verified": False}, {"wechat_mode": "all"}, "unverified"),
        ({"wechat_account_type": "service", "wechat_verified": False}, {}, "unverified"),
        ({}, {"wechat_mode": "template"}, "template"),
        ({"wechat_account_type": "personal"}, {}, "wechat_account_type"),
    ],
)
def test_each_account_type_refuses_what_it_cannot_do_before_anything_exists(
    session, wechat_settings, issue, account, options, refused
):
    list_id = seed_followers(session, 3)
    with pytest.raises(campaign_service.CampaignError) as info:
        _create(session, wechat_settings.replace(**account), issue, list_id, **options)
    assert refused in str(info.value) and any("\u4e00" <= ch <= "\u9fff" for ch in str(info.value))
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Campaign)) == 0


@pytest.mark.parametrize(
    ("account", "options"),
    [
        ({"wechat_account_type": "subscription"}, {}),  # default: all followers
        ({"wechat_account_type": "subscription"}, {"wechat_mode": "tag", "wechat_tag_id": 2}),
        ({}, {"wechat_mode": "openids"}),
        ({}, {"wechat_mode": "all"}),
    ],
)
def test_what_the_account_can_do_is_created(session, wechat_settings, issue, account, options):
    list_id = seed_followers(session, 3)
    campaign, created = _create(
        session, wechat_settings.replace(**account), issue, list_id, **options
    )
    assert created and campaign.status == "draft"


def test_subscription_account_sends_once_a_day_and_to_all(
    session, engine, wechat_settings, fake, issue
):
    fake.state.account_type = "subscription"
    settings = wechat_settings.replace(wechat_account_type="subscription")
    first_list = seed_followers(session, 4, list_slug="a", openid_prefix="oA")
    campaign, _ = _create(session, settings, issue, first_list)
    session.commit()
    queue = ListQueue()
    campaign_service.start(engine, settings, campaign.id, queue)
    drain(engine, settings, queue, channel_factory=_factory)
    sends = fake.state.mass_sends()
    assert [(m.mode, m.tag_id) for m in sends] == [("tag", None)]  # one sendall, is_to_all
    assert fake.state.calls["message/mass/sendall"] == 1
    second_list = seed_followers(session, 4, list_slug="b", openid_prefix="oB")
    second, _ = _create(session, settings, issue, second_list)
    session.commit()
    campaign_service.start(engine, settings, second.id, queue)
    drain(engine, settings, queue, channel_factory=_factory)
    session.expire_all()
    paused = session.get(Campaign, second.id)
    assert paused.status == "paused" and "45028" in paused.paused_reason  # one a day


def test_send_options_reach_wechat(session, engine, wechat_settings, fake, issue):
    list_id = seed_followers(session, 3)
    campaign, _ = _create(
        session,
        wechat_settings,
        issue,
        list_id,
        wechat_ignore_reprint=False,
        wechat_open_comment=True,
        wechat_fans_only_comment=True,
    )
    session.commit()
    queue = ListQueue()
    campaign_service.start(engine, wechat_settings, campaign.id, queue)
    drain(engine, wechat_settings, queue, channel_factory=_factory)
    record = fake.state.mass_sends()[0]
    articles = fake.state.sent_articles[record.msg_data_id]
    assert {(a["need_open_comment"], a["only_fans_can_comment"]) for a in articles} == {(1, 1)}
    assert all(a["pic_crop_235_1"] and a["pic_crop_1_1"] for a in articles)
    assert set(
        session.scalars(select(Delivery.status).where(Delivery.campaign_id == campaign.id))
    ) == {"sent"}


def test_default_send_goes_on_as_a_reprint(session, wechat_settings, fake, issue):
    client = WechatClient(wechat_settings)
    seen = []
    original = client.post

    def spy(url, **kwargs):
        seen.append((url, kwargs.get("data")))
        return original(url, **kwargs)

    client.post = spy  # type: ignore[method-assign]
    from dispatch.channels.base import CampaignContext, Recipient
    from dispatch.channels.wechat import WechatChannel

    channel = WechatChannel(
        wechat_settings,
        CampaignContext(3, issue.id, 0, (1,), False),
        client=client,
        policy=RetryPolicy(1),
    )
    channel.send([Recipient(i, i, None, "", "zh-CN", f"o{i}") for i in (1, 2)])
    body = next(d for u, d in seen if u == "message/mass/send")
    assert body["send_ignore_reprint"] == 1


def test_preview_to_a_wechat_id_and_to_an_openid(session, wechat_settings, fake, tmp_path):
    from dispatch.content.store import publish_source
    from dispatch.paths import SAMPLE_ISSUE_DIR

    set_settings(wechat_settings)
    sample = publish_source(session, SAMPLE_ISSUE_DIR)
    session.commit()
    runner = CliRunner()
    out = runner.invoke(
        main, ["wechat", "preview", sample.slug, "--wxname", "editor_wx01", "--json"]
    )
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["wechat", "preview", sample.slug, "--openid", "oEditor", "--json"])
    assert out.exit_code == 0, out.output
    previews = fake.state.mass_sends("preview")
    assert [p.openids for p in previews] == [["wxname:editor_wx01"], ["oEditor"]]
    assert len({p.media_id for p in previews}) == 1  # a preview does not consume the draft
    bad = runner.invoke(main, ["wechat", "preview", sample.slug])
    assert bad.exit_code == 1 and "--wxname" in bad.output


def test_account_command_names_modes_and_limits(wechat_settings):
    set_settings(wechat_settings.replace(wechat_account_type="subscription"))
    out = CliRunner().invoke(main, ["wechat", "account", "--json"])
    data = json.loads(out.output)
    assert data["modes"] == ["all", "tag"]
    assert any("1" in line and "订阅号" in line for line in data["limits"])
    set_settings(wechat_settings)
    data = json.loads(CliRunner().invoke(main, ["wechat", "account", "--json"]).output)
    assert "openids" in data["modes"] and any("4" in line for line in data["limits"])


def test_stable_token_is_used_and_classic_token_never(wechat_settings, fake):
    client = WechatClient(wechat_settings)
    client.tags_get()
    assert fake.state.calls["stable_token"] == 1 and fake.state.calls["token"] == 0


def test_forced_refreshes_stay_within_wechats_budget(wechat_settings, redis_url):
    budget = ForceBudget(wechat_settings, wechat_settings.redis_key_prefix + "budget")
    now = 1_800_000_000.0
    taken = [budget.take(now + 31 * i) for i in range(FORCE_PER_DAY + 3)]
    assert taken.count(True) == FORCE_PER_DAY  # 20 a day
    fresh = ForceBudget(wechat_settings, wechat_settings.redis_key_prefix + "budget2")
    assert fresh.take(now) and not fresh.take(now + 5)  # 30 s apart


def test_token_from_a_central_token_service(wechat_settings, fake):
    issued = fake.api.stable_token(
        {
            "grant_type": "client_credential",
            "appid": fake.state.app_id,
            "secret": fake.state.app_secret,
        }
    )["access_token"]
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            asked.append(self.path)
            body = json.dumps({"access_token": issued, "expires_in": 600}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/token"
        client = WechatClient(wechat_settings.replace(wechat_token_url=url))
        assert client.tags_get() == []
        assert asked and fake.state.calls["stable_token"] == 0 and fake.state.calls["token"] == 0
    finally:
        server.shutdown()


def test_ip_whitelist_error_names_the_fix(wechat_settings, fake):
    fake.state.ip_whitelist_error = True
    with pytest.raises(Exception) as info:
        WechatClient(wechat_settings).tags_get()
    err = WechatError.from_exception(info.value)
    assert err.errcode == 40164 and "IP白名单" in err.rule.reason and err.action == "pause"


def test_wechat_numbers_and_article_figures(session, engine, wechat_settings, fake, issue):
    from dispatch.dev.wechat_fake import new_aes_key
    from dispatch.wechat.callbacks import handle_callback
    from dispatch.wechat.stats import campaign_report, pull_article_stats

    fake.state.callback_token, fake.state.callback_aes_key = "tok", new_aes_key()
    hooked = wechat_settings.replace(wechat_token="tok", wechat_aes_key=fake.state.callback_aes_key)
    list_id = seed_followers(session, 6)
    campaign, _ = _create(session, hooked, issue, list_id)
    session.commit()
    queue = ListQueue()
    campaign_service.start(engine, hooked, campaign.id, queue)
    drain(engine, hooked, queue, channel_factory=_factory)
    fake.state.filter_ratio = 0.5
    msg_id = fake.state.mass_sends()[0].msg_id
    params, body = fake.api.sign_and_encrypt(fake.api.mass_finish_xml(msg_id))
    handle_callback(session, hooked, params, body)
    session.commit()
    assert pull_article_stats(session, WechatClient(hooked), campaign.id) == 2  # 2 articles
    session.commit()
    report = campaign_report(session, campaign.id)
    assert report["totals"] == {"recipients": 6, "total": 6, "filtered": 3, "sent": 3, "errors": 0}
    assert [a["read"] for a in report["articles"]] == [13, 16]
    assert report["articles"][0]["title"] == "测试文章 1"


def test_the_fakes_minute_limit_defers_the_next_chunk(session, wechat_settings, fake, issue):
    from dispatch.channels.base import CampaignContext, Recipient
    from dispatch.channels.wechat import WechatChannel

    fake.state.mass_per_minute = 1  # WeChat: about 60 mass-send requests a minute
    outcomes = []
    for batch in (0, 1):
        channel = WechatChannel(
            wechat_settings,
            CampaignContext(4, issue.id, batch, (1,), False),
            policy=RetryPolicy(attempts=2, scale=0.0),
            sleep=lambda s: None,
        )
        people = [Recipient(i, i, None, "", "zh-CN", f"o{batch}-{i}") for i in (1, 2)]
        outcomes.append({r.outcome for r in channel.send(people)})
    assert outcomes == [{"sent"}, {"deferred"}]
    assert fake.state.calls["message/mass/send"] == 3  # the second chunk: tried twice, 45011
