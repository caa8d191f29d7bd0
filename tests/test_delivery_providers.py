"""Issue 12: the provider table (data file, overridable, line-numbered errors), domain → provider
lookups (table, then MX, cached), and the per-provider reply rules (GB18030 replies included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatch.channels.smtp_replies import classify_for_provider, decode_reply
from dispatch.config import load_settings
from dispatch.delivery import providers as P


@pytest.fixture
def plain_settings(tmp_path):
    return load_settings(env={}).replace(data_dir=tmp_path, provider_mx_lookup=True)


def test_shipped_table_maps_the_issue_domains(plain_settings):
    table = P.load_providers(plain_settings)
    expected = {
        "qq.com": "qq",
        "foxmail.com": "qq",
        "vip.qq.com": "qq",
        "163.com": "netease",
        "126.com": "netease",
        "yeah.net": "netease",
        "vip.163.com": "netease",
        "sina.com": "sina",
        "sina.cn": "sina",
        "gmail.com": "gmail",
        "googlemail.com": "gmail",
        "outlook.com": "microsoft",
        "hotmail.com": "microsoft",
        "live.com": "microsoft",
        "msn.com": "microsoft",
    }
    assert {d: table.by_domain(d) for d in expected} == expected
    assert table.by_domain("example.edu.cn") is None
    for provider in table.providers.values():  # every rule says where it comes from
        assert provider.replies == () or all(r.source and r.meaning for r in provider.replies)


@pytest.mark.parametrize(
    "provider,code,text,outcome",
    [
        ("netease", 421, "HL:IFC 127.0.0.1 too many mails in a short time", "throttled"),
        ("netease", 421, "HL:ICC too many connections", "throttled"),
        ("netease", 451, "MI:SFQ sender 15-minute quota", "throttled"),
        ("netease", 450, "MI:DMC too many mails per connection", "throttled"),
        ("netease", 450, "DT:RBL ip in blocklist", "paused"),
        ("netease", 554, "DT:SPM content rejected", "failed"),
        ("qq", 550, "Connection frequency limited. http://service.mail.qq.com/...", "throttled"),
        ("gmail", 421, "4.7.28 Our system has detected an unusual rate", "throttled"),
        ("gmail", 550, "5.7.26 Unauthenticated email from example.org is not accepted", "paused"),
        (
            "microsoft",
            451,
            "4.7.650 The mail server has been temporarily rate limited",
            "throttled",
        ),
        # no provider rule: the generic table decides
        ("qq", 550, "5.1.1 no such user", "bounced"),
        ("other", 451, "4.3.0 try later", "deferred"),
    ],
)
def test_provider_rules_come_before_the_generic_ones(plain_settings, provider, code, text, outcome):
    entry = P.load_providers(plain_settings).get(provider)
    got, rule = classify_for_provider(code, text, stage="rcpt", provider=entry)
    assert got == outcome
    if outcome in ("throttled", "paused") and provider != "other" and "5.1.1" not in text:
        assert rule.startswith(provider + ":")


def test_a_throttle_reply_in_gb18030_is_read_and_kept_raw(plain_settings):
    raw = "550 Connection frequency limited 发信频率超过限制，请稍后再试".encode("gb18030")
    text = decode_reply(raw[4:])
    assert "发信频率超过限制" in text
    entry = P.load_providers(plain_settings).get("qq")
    assert classify_for_provider(550, text, stage="rcpt", provider=entry)[0] == "throttled"
    assert decode_reply(b"\xff\xfe broken").startswith("\ufffd") or "broken" in decode_reply(
        b"\xff\xfe broken"
    )


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "providers.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_syntax_error_names_the_file_and_line(tmp_path):
    path = _write(tmp_path, '[providers.x]\nlabel = "X"\ndomains = "a.com\n')
    with pytest.raises(P.ProviderTableError) as info:
        P.read_table_file(path)
    assert info.value.line == 3 and str(info.value).startswith(f"{path}:3:")


@pytest.mark.parametrize(
    "text,line,words",
    [
        ('[providers.x]\ndomains = ["a.com"]\nrate_per_second = -1\n', 3, "rate_per_second"),
        ('[providers.x]\ndomains = ["a.com"]\nspeed = 3\n', 3, "unknown field"),
        (
            '[providers.x]\ndomains = ["a.com"]\n\n[[providers.x.replies]]\npattern = "("\n'
            'kind = "throttle"\n',
            5,
            "regular expression",
        ),
        (
            '[providers.x]\ndomains = ["a.com"]\n\n[[providers.x.replies]]\npattern = "a"\n'
            'kind = "slow"\n',
            6,
            "kind",
        ),
        ('[providers.x]\ndomains = ["a.com"]\n[providers.y]\ndomains = ["a.com"]\n', 4, "a.com"),
    ],
)
def test_a_bad_field_names_its_line(tmp_path, text, line, words):
    with pytest.raises(P.ProviderTableError) as info:
        P.read_table_file(_write(tmp_path, text))
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)


def test_the_override_file_replaces_and_extends(tmp_path, plain_settings):
    path = _write(
        tmp_path,
        '[providers.netease]\nlabel = "NetEase (ours)"\ndomains = ["163.com"]\n'
        "rate_per_second = 5\n\n"
        '[providers.edu]\nlabel = "CERNET"\ndomains = ["pku.edu.cn", "126.com"]\n',
    )
    table = P.load_providers(plain_settings.replace(providers_file=str(path)))
    assert table.get("netease").rate_per_second == 5
    assert table.by_domain("126.com") == "edu"  # moved out of the shipped entry
    assert table.by_domain("qq.com") == "qq"
    assert str(path) in table.sources


def test_unknown_domains_fall_back_to_mx_and_are_cached(plain_settings, redis_url, redis_prefix):
    import redis

    client = redis.Redis.from_url(redis_url)
    calls: list[str] = []

    def lookup(domain):
        calls.append(domain)
        return {"pku.edu.cn": ["mxbiz1.qq.com"], "zju.edu.cn": ["mx.ym.163.com"]}.get(domain, [])

    settings = plain_settings.replace(redis_key_prefix=redis_prefix)
    domains = ["pku.edu.cn", "zju.edu.cn", "tiny.example.cn", "qq.com"]
    P._mx_cache.clear()
    got = P.provider_for_domains(settings, domains, mx_lookup=lookup, redis_client=client)
    assert got == {
        "pku.edu.cn": "qq",
        "zju.edu.cn": "netease",
        "tiny.example.cn": "other",
        "qq.com": "qq",
    }
    assert sorted(calls) == ["pku.edu.cn", "tiny.example.cn", "zju.edu.cn"]
    P._mx_cache.clear()  # another worker: the Redis cache answers, no DNS
    again = P.provider_for_domains(settings, domains, mx_lookup=lookup, redis_client=client)
    assert again == got and len(calls) == 3
    for key in client.scan_iter(match=f"{redis_prefix}*"):
        client.delete(key)
    client.close()


def test_dispatch_providers_prints_the_table_and_fails_on_a_bad_file(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings

    set_settings(load_settings(env={}).replace(data_dir=tmp_path))
    try:
        result = CliRunner().invoke(main, ["providers", "--json"])
        assert result.exit_code == 0, result.output
        assert '"HL:IFC"' in result.output and '"netease"' in result.output
        bad = _write(tmp_path, '[providers.x]\ndomains = ["a.com"]\nrate_per_hour = "x"\n')
        set_settings(load_settings(env={}).replace(data_dir=tmp_path, providers_file=str(bad)))
        result = CliRunner().invoke(main, ["providers"])
        assert result.exit_code == 1
        assert f"{bad}:3:" in result.output
    finally:
        set_settings(None)


def test_a_worker_refuses_to_start_on_a_bad_table(tmp_path):
    from click.testing import CliRunner

    from dispatch.cli import main
    from dispatch.config import set_settings

    bad = _write(tmp_path, '[providers.x]\ndomains = ["a.com"\n')
    set_settings(load_settings(env={}).replace(data_dir=tmp_path, providers_file=str(bad)))
    try:
        result = CliRunner().invoke(main, ["worker"])
    finally:
        set_settings(None)
    assert result.exit_code == 1
    assert f"{bad}:2:" in result.output and "TOML" in result.output


def test_mx_fallback_through_a_real_dns_server(tmp_path, engine, settings):
    """Institution domains hosted by Tencent Exmail / NetEase Qiye, answered by dnsmasq on
    loopback, become QQ / NetEase at fan-out; an unknown host stays "other"."""
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from dispatch.delivery import campaigns
    from dispatch.models import Delivery
    from dns_server import DnsmasqServer, Zone
    from test_delivery_support import make_issue, make_list_with

    zone = Zone(
        mx={
            "pku.edu.cn": [("mxbiz1.qq.com", 5), ("mxbiz2.qq.com", 10)],
            "zju.edu.cn": [("qiye163mx01.mxmail.netease.com", 10)],
            "corp.cn": [("mail.corp.cn", 10)],
        }
    )
    P._mx_cache.clear()
    with DnsmasqServer(zone, tmp_path / "dns") as dns:
        s = settings.replace(dns_nameservers=dns.nameservers, provider_mx_lookup=True)
        with Session(engine) as session, session.begin():
            issue = make_issue(session)
            list_id = make_list_with(
                session, "edu", ["a@pku.edu.cn", "b@zju.edu.cn", "c@corp.cn", "d@qq.com"]
            )
            campaign, _ = campaigns.create_or_get(
                session, issue_id=issue.id, channel="email", list_ids=[list_id]
            )
            campaigns.begin_running(session, s, campaign.id)
            got = dict(
                session.execute(
                    select(Delivery.email, Delivery.provider).where(
                        Delivery.campaign_id == campaign.id
                    )
                ).all()
            )
    P._mx_cache.clear()
    assert got == {
        "a@pku.edu.cn": "qq",
        "b@zju.edu.cn": "netease",
        "c@corp.cn": "other",
        "d@qq.com": "qq",
    }


def test_mx_lookups_stop_when_their_time_budget_is_spent(plain_settings):
    import time as _time

    calls: list[str] = []

    def slow_lookup(domain):
        calls.append(domain)
        _time.sleep(0.05)
        return ["mxbiz1.qq.com"]

    P._mx_cache.clear()
    domains = [f"school{i}.edu.cn" for i in range(20)]
    got = P.provider_for_domains(
        plain_settings, domains, mx_lookup=slow_lookup, budget_seconds=0.12
    )
    P._mx_cache.clear()
    assert 2 <= len(calls) <= 5  # stopped early
    assert [got[d] for d in domains[: len(calls)]] == ["qq"] * len(calls)
    assert set(got[d] for d in domains[len(calls) :]) == {"other"}
