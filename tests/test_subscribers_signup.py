"""The public form's rules (dispatch.subscribers.signup) against real Redis counters: caps per
address and per IP, the honeypot, proof-of-work and its no-JavaScript path, header injection,
domains without MX (a dnsmasq on loopback), internationalised addresses, and one answer for
new, known and suppressed addresses alike."""

from __future__ import annotations

import time

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from dispatch.delivery.ratelimit import RedisRateLimiter
from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.subscribers import proof, service, signup
from dispatch.web.signup_guards import Guards
from dispatch.web.signup_guards import make_guards as _make_guards
from dns_server import DnsmasqServer, Zone


@pytest.fixture
def form_settings(settings, redis_url, redis_prefix):
    s = settings.replace(
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        signup_pow_bits=6,
        signup_check_mx=False,
    )
    yield s
    client = redis_lib.Redis.from_url(redis_url)
    for key in client.scan_iter(match=f"{redis_prefix}*"):
        client.delete(key)
    client.close()


@pytest.fixture
def lists(session):
    news = service.create_list(session, "news", "News", optin="double")
    news.public = True
    open_list = service.create_list(session, "open", "Open", optin="single")
    open_list.public = True
    service.create_list(session, "staff", "Staff")  # private
    session.commit()
    return {"news": news.id, "open": open_list.id}


def make_guards(settings) -> Guards:
    """The app's guards, but with the rate limiter's clock frozen mid-window (a test that
    crosses a 10-minute boundary would otherwise be granted a second confirmation)."""
    real = _make_guards(settings)
    frozen = (time.time() // 86400) * 86400 + 300
    limiter = RedisRateLimiter(
        redis_lib.Redis.from_url(settings.redis_url),
        prefix=settings.redis_key_prefix,
        clock=lambda: frozen,
    )
    return Guards(limiter, real.ledger)


def _solved(settings, email: str) -> tuple[str, str]:
    challenge = proof.new_challenge(settings, now=time.time() - 5)
    return challenge, str(proof.solve(challenge, email, settings.signup_pow_bits))


def _post(
    session, settings, guards, email="reader@example.org", *, pow=True, ip="192.0.2.1", **fields
):
    challenge, counter = _solved(settings, email) if pow else ("", "")
    form = signup.SignupForm(
        email=email,
        name=fields.pop("name", "Reader"),
        lists=fields.pop("lists", ["news"]),
        locale=fields.pop("locale", "en"),
        challenge=challenge,
        pow=counter,
        client_ip=ip,
        **fields,
    )
    result = signup.process(session, settings, guards.limiter, guards.ledger, form)
    session.commit()
    return result


def test_a_new_address_gets_an_unconfirmed_subscription_and_one_confirmation(
    session, form_settings, lists
):
    guards = make_guards(form_settings)
    result = _post(session, form_settings, guards)
    assert result.outcome == "accepted"
    person = session.scalar(select(Subscriber).where(Subscriber.email == "reader@example.org"))
    assert result.confirmation == (person.id, (lists["news"],))
    sub = session.get(Subscription, (person.id, lists["news"]))
    assert sub.status == "unconfirmed" and sub.source == "web-form"
    assert person.locale == "en" and person.name == "Reader"


def test_two_hundred_rapid_posts_for_one_address_send_at_most_the_cap(
    session, form_settings, lists
):
    guards = make_guards(form_settings.replace(signup_ip_per_minute=0))
    granted = 0
    for i in range(200):
        result = _post(session, form_settings, guards, ip=f"198.51.100.{i % 250}")
        assert result.outcome == "accepted", result
        granted += result.confirmation is not None
    assert granted == 1  # one per address per 10 minutes, whatever the client IPs
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 1
    capped = session.scalar(select(func.count()).where(Event.kind == "optin_capped"))
    assert capped == 199


def test_the_daily_cap_holds_across_windows(session, form_settings, lists):
    tight = form_settings.replace(signup_address_interval_seconds=0, signup_address_per_day=3)
    guards = make_guards(tight)
    granted = sum(
        _post(session, tight, guards, ip=f"203.0.113.{i}").confirmation is not None
        for i in range(10)
    )
    assert granted == 3


def test_one_ip_flooding_the_form_is_limited(session, form_settings, lists):
    limited = form_settings.replace(signup_ip_per_minute=5)
    guards = make_guards(limited)
    outcomes = [
        _post(session, limited, guards, f"r{i}@example.org", ip="192.0.2.9").outcome
        for i in range(8)
    ]
    assert outcomes[:5] == ["accepted"] * 5 and outcomes[5:] == ["limited"] * 3
    other = _post(session, limited, guards, "someone@example.org", ip="192.0.2.10")
    assert other.outcome == "accepted"


def test_known_suppressed_and_new_addresses_get_the_same_answer(session, form_settings, lists):
    guards = make_guards(form_settings)
    known = service.add_subscriber(session, email="known@example.org", name="Known", locale="zh-CN")
    service.subscribe(session, known, service.get_list(session, "news"), send_confirmation=False)
    session.get(Subscription, (known.id, lists["news"])).status = "confirmed"
    service.suppress(session, email="blocked@example.org", reason="complained")
    session.commit()
    answers = [
        _post(session, form_settings, guards, email, ip=f"192.0.2.{n}")
        for n, email in enumerate(["new@example.org", "known@example.org", "blocked@example.org"])
    ]
    assert {(a.outcome, a.message_key) for a in answers} == {("accepted", "signup_done")}
    session.refresh(known)
    assert known.name == "Known" and known.locale == "zh-CN"  # a stranger cannot rename them
    assert answers[1].confirmation is None and answers[2].confirmation is None
    assert service.find_subscriber(session, email="blocked@example.org") is None


def test_honeypot_posts_are_thanked_and_dropped(session, form_settings, lists):
    guards = make_guards(form_settings)
    result = _post(session, form_settings, guards, honeypot="http://spam.example")
    assert result.outcome == "accepted" and result.confirmation is None
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_proof_of_work_is_checked_and_used_once(session, form_settings, lists):
    guards = make_guards(form_settings)
    email = "worker@example.org"
    challenge, counter = _solved(form_settings, email)
    bad = signup.SignupForm(
        email=email, lists=["news"], challenge=challenge, pow="1", client_ip="x"
    )
    # a wrong counter is (almost surely) refused; find one that really fails
    while (
        proof.leading_zero_bits(
            __import__("hashlib").sha256(proof.work_input(challenge, email, bad.pow)).digest()
        )
        >= form_settings.signup_pow_bits
    ):
        bad.pow = str(int(bad.pow) + 1)
    refused = signup.process(session, form_settings, guards.limiter, guards.ledger, bad)
    assert (refused.outcome, refused.message_key) == ("invalid", "pow_invalid")
    good = signup.SignupForm(
        email=email, lists=["news"], challenge=challenge, pow=counter, client_ip="x"
    )
    assert signup.process(session, form_settings, guards.limiter, guards.ledger, good).outcome == (
        "accepted"
    )
    again = signup.process(session, form_settings, guards.limiter, guards.ledger, good)
    assert again.message_key == "pow_reused"
    # the work is bound to the address: the same solution for another address fails
    other = signup.SignupForm(
        email="other@example.org", lists=["news"], challenge=challenge, pow=counter, client_ip="x"
    )
    assert signup.process(session, form_settings, guards.limiter, guards.ledger, other).outcome == (
        "invalid"
    )


def test_scripted_posts_without_proof_of_work_share_a_small_cap(session, form_settings, lists):
    capped = form_settings.replace(signup_nojs_per_hour=3)
    guards = make_guards(capped)
    outcomes = [
        _post(session, capped, guards, f"bot{i}@example.org", pow=False, ip=f"10.0.0.{i}").outcome
        for i in range(6)
    ]
    assert outcomes == ["accepted"] * 3 + ["limited"] * 3
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 3


@pytest.mark.parametrize(
    ("email", "name", "key", "field"),
    [
        ("a@example.org\r\nBcc: victim@example.org", "A", "email_invalid", "email"),
        ("a@example.org", "Eve\r\nBcc: victim@example.org", "name_invalid", "name"),
        ("a@example.org", "x" * 201, "name_invalid", "name"),
        ("用户@example.org", "U", "email_utf8", "email"),
        ("not-an-address", "N", "email_invalid", "email"),
        ("", "N", "email_required", "email"),
    ],
)
def test_bad_fields_are_refused_with_the_field_named(
    session, form_settings, lists, email, name, key, field
):
    guards = make_guards(form_settings)
    result = _post(session, form_settings, guards, email, pow=False, name=name)
    assert (result.outcome, result.message_key, result.field_name) == ("invalid", key, field)
    assert result.message("en") and result.message("zh-CN")
    assert session.scalar(select(func.count()).select_from(Subscriber)) == 0


def test_private_or_unknown_lists_cannot_be_joined(session, form_settings, lists):
    guards = make_guards(form_settings)
    for slugs in (["staff"], ["nope"], []):
        result = _post(session, form_settings, guards, lists=slugs)
        assert result.outcome == "invalid" and result.field_name == "lists"


def test_single_opt_in_confirms_at_once_but_a_former_unsubscriber_must_confirm(
    session, form_settings, lists
):
    guards = make_guards(form_settings)
    first = _post(session, form_settings, guards, "solo@example.org", lists=["open"])
    person = service.find_subscriber(session, email="solo@example.org")
    assert first.confirmation is None
    assert session.get(Subscription, (person.id, lists["open"])).status == "confirmed"
    service.unsubscribe(session, person.id, None)
    session.commit()
    again = _post(session, form_settings, guards, "solo@example.org", lists=["open"], ip="1.2.3.4")
    assert again.confirmation == (person.id, (lists["open"],))
    assert session.get(Subscription, (person.id, lists["open"])).status == "unconfirmed"


def test_a_domain_without_mx_is_reported(session, form_settings, lists, tmp_path):
    zone = Zone(mx={"mail-ok.dispatch-test.cn": [("mx.mail-ok.dispatch-test.cn", 10)]})
    zone.a["mx.mail-ok.dispatch-test.cn"] = "127.0.0.1"
    with DnsmasqServer(zone, tmp_path / "dns") as server:
        checked = form_settings.replace(signup_check_mx=True, dns_nameservers=server.nameservers)
        guards = make_guards(checked)
        bad = _post(session, checked, guards, "someone@no-mail.dispatch-test.cn")
        assert (bad.outcome, bad.message_key) == ("invalid", "email_no_mx")
        assert "no-mail.dispatch-test.cn" in bad.message("en")
        good = _post(session, checked, guards, "someone@mail-ok.dispatch-test.cn", ip="192.0.2.7")
        assert good.outcome == "accepted" and good.confirmation is not None
