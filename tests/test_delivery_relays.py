"""Issue 12: relay settings (bad input named by relay and field), credentials from the
environment, certificate checks per relay, GB18030 throttle replies through the channel."""

from __future__ import annotations

import json

import pytest

from dispatch.channels.base import CampaignContext, Recipient
from dispatch.channels.email_source import build_campaign_source
from dispatch.channels.smtp import SmtpChannel
from dispatch.config import ConfigError, load_settings
from dispatch.delivery.relays import parse_relays, pick_relay
from smtp_server import ScriptedSmtpServer, make_self_signed_cert
from test_smtp_channel import SampleRendered, channel_settings


def settings_with(*relays: dict, **changes):
    return load_settings(env={}).replace(relays=list(relays), **changes)


@pytest.mark.parametrize(
    "spec,words",
    [
        ({"name": "a", "url": "http://smtp.example.org:25"}, ["relay a", "smtp://"]),
        ({"name": "a", "url": "smtp://smtp.example.org:99999"}, ["relay a", "port"]),
        ({"name": "a", "url": "smtp://smtp.example.org:abc"}, ["relay a", "port"]),
        ({"name": "a", "url": "smtp://u:p@smtp.example.org"}, ["relay a", "credentials"]),
        ({"name": "a", "url": "smtp:///nohost"}, ["relay a", "no host"]),
        ({"name": "a"}, ["relay a", "missing"]),
        ({"url": "smtp://h:25"}, ["relay #1", "name"]),
        ({"name": "a", "url": "smtp://h:25", "weight": 0}, ["relay a", "weight"]),
        ({"name": "a", "url": "smtp://h:25", "daily_quota": 1.5}, ["relay a", "daily_quota"]),
        ({"name": "a", "url": "smtp://h:25", "speed": 3}, ["relay a", "unknown field", "speed"]),
        ({"name": "a", "url": "smtp://h:25?verify=0"}, ["relay a", "allow_invalid_certificate"]),
        ({"name": "a", "url": "smtp://h:25", "password_env": "NOPE_X"}, ["relay a", "NOPE_X"]),
        ({"name": "a", "url": "smtp://h:25", "providers": "qq"}, ["relay a", "providers"]),
    ],
)
def test_bad_relay_settings_name_the_relay_and_the_field(spec, words):
    with pytest.raises(ConfigError) as info:
        parse_relays(settings_with(spec), env={})
    for word in words:
        assert word in str(info.value)
    assert "p@" not in str(info.value)  # a password in a URL is never echoed


def test_duplicate_names_are_refused():
    with pytest.raises(ConfigError, match="twice"):
        parse_relays(
            settings_with({"name": "a", "url": "smtp://h:25"}, {"name": "a", "url": "smtp://h:26"})
        )


def test_relays_from_toml_and_env_with_the_password_from_the_environment(tmp_path):
    config = tmp_path / "dispatch.toml"
    config.write_text(
        '[[relays]]\nname = "aliyun"\nurl = "smtps://smtpdm.aliyun.com:465"\n'
        'username = "bulletin@mail.example.org"\npassword_env = "ALIYUN_PASS"\nweight = 3\n'
        'daily_quota = 10000\nrate_per_second = 27\nfrom_domains = ["Example.org"]\n\n'
        '[[relays]]\nname = "tencent"\nurl = "smtp://smtp.qcloudmail.com:587?starttls=1"\n'
        "daily_quota = 500\n",
        encoding="utf-8",
    )
    settings = load_settings(config, env={})
    relays = parse_relays(settings, env={"ALIYUN_PASS": "s3cret"})
    aliyun, tencent = relays
    assert (aliyun.host, aliyun.port, aliyun.security) == ("smtpdm.aliyun.com", 465, "tls")
    assert aliyun.password == "s3cret" and "s3cret" not in repr(aliyun)
    assert aliyun.from_domains == ("example.org",) and aliyun.carries("example.org", "qq")
    assert not aliyun.carries("other.org", "qq")
    assert (tencent.port, tencent.security, tencent.daily_quota) == (587, "starttls", 500)
    assert "s3cret" not in json.dumps(aliyun.public())
    env = {"DISPATCH_RELAYS": json.dumps([{"name": "x", "url": "smtp://127.0.0.1:2525"}])}
    assert parse_relays(load_settings(env=env), env={})[0].port == 2525
    with pytest.raises(ConfigError, match="DISPATCH_RELAYS"):
        load_settings(env={"DISPATCH_RELAYS": "[{not json"})


def test_without_relays_smtp_url_is_the_one_relay():
    relays = parse_relays(load_settings(env={}).replace(smtp_url="smtp://127.0.0.1:2525"))
    assert [(r.name, r.port) for r in relays] == [("default", 2525)]


def test_weights_share_the_traffic():
    import random

    relays = parse_relays(
        settings_with(
            {"name": "big", "url": "smtp://h:25", "weight": 3},
            {"name": "small", "url": "smtp://h:26", "weight": 1},
        )
    )
    rng = random.Random(7)
    picks = [pick_relay(relays, rng).name for _ in range(4000)]
    assert 0.70 < picks.count("big") / len(picks) < 0.80
    assert pick_relay([], rng) is None


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    return make_self_signed_cert(tmp_path_factory.mktemp("tls"))


def _send_through(relay_spec: dict, url: str, *addresses: str, provider: str | None = None):
    settings = channel_settings(url, relays=[relay_spec])
    relay = parse_relays(settings, env={})[0]
    context = CampaignContext(
        campaign_id=1, issue_id=1, batch_no=0, list_ids=(1,), tracking=False, relay=relay
    )
    source = build_campaign_source(settings, context, SampleRendered())
    channel = SmtpChannel(settings, context, source=source)
    channel.open()
    try:
        return channel.send(
            [
                Recipient(i + 1, 100 + i, a, "读者", "zh-CN", provider=provider)
                for i, a in enumerate(addresses)
            ]
        )
    finally:
        channel.close()


def test_a_relay_whose_certificate_does_not_verify_is_refused_unless_allowed(tls_files):
    with ScriptedSmtpServer(starttls_cert=tls_files) as server:
        spec = {"name": "selfsigned", "url": server.url}
        refused = _send_through(spec, server.url, "a@example.net")
        assert refused[0].outcome == "paused"
        assert "certificate" in refused[0].text.lower()
        assert refused[0].data["halted_at"] == "connect"  # the relay's fault: fail over
        assert server.messages == []
        allowed = _send_through(
            {**spec, "allow_invalid_certificate": True}, server.url, "a@example.net"
        )
        assert [r.outcome for r in allowed] == ["sent"]
        assert allowed[0].data["relay"] == "selfsigned"
        assert len(server.messages) == 1


def test_a_gb18030_throttle_reply_is_read_and_holds_only_that_provider():
    with ScriptedSmtpServer() as server:
        server.script.encoding = "gb18030"
        server.script.rcpt["q1@qq.com"] = "550 Connection frequency limited 发信频率超过限制"
        results = _send_through(
            {"name": "mx", "url": server.url},
            server.url,
            "q1@qq.com",
            "q2@qq.com",
            provider="qq",
        )
        assert [r.outcome for r in results] == ["throttled", "throttled"]
        assert "发信频率超过限制" in results[0].text  # the raw reply, decoded, kept
        assert results[0].data["rule"].startswith("qq:")
        assert results[1].data["stage"] == "not_attempted"
        assert server.messages == []
