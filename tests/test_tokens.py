"""Signed tokens: round trips, and every kind of tampering refused with TokenError."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from dispatch.config import load_settings
from dispatch.models import Event
from dispatch.models.subscriber import Subscriber, Subscription
from dispatch.render.slots import RecipientSlots
from dispatch.subscribers import service
from dispatch.subscribers.service import unsubscribe_by_token
from dispatch.tokens import (
    TokenError,
    make_click_token,
    make_confirmation_token,
    make_open_token,
    make_unsubscribe_token,
    tracking_slots,
    verify_click_token,
    verify_confirmation_token,
    verify_open_token,
    verify_unsubscribe_token,
)

KEY = "test-secret-key-not-for-production"


@pytest.fixture
def keyed(tmp_path):
    return load_settings(env={}).replace(
        data_dir=tmp_path, secret_key=KEY, public_base_url="https://bulletin.example.org/"
    )


def _variants(token: str):
    """Every token obtained by changing exactly one character."""
    for i, ch in enumerate(token):
        for other in ("0", "A", "_"):
            if other != ch:
                yield token[:i] + other + token[i + 1 :]
                break


def test_round_trips(keyed):
    assert verify_unsubscribe_token(keyed, make_unsubscribe_token(keyed, 12, 3)) == (12, 3)
    assert verify_unsubscribe_token(keyed, make_unsubscribe_token(keyed, 12, None)) == (12, None)
    claim = verify_confirmation_token(keyed, make_confirmation_token(keyed, 7, 2))
    assert (claim.subscriber_id, claim.list_id) == (7, 2)
    assert claim.expires_at > time.time() + 6 * 24 * 3600
    assert verify_open_token(keyed, make_open_token(keyed, 99)) == 99
    assert verify_click_token(keyed, make_click_token(keyed, 99, 4)) == (99, 4)


@pytest.mark.parametrize(
    "make, verify",
    [
        (lambda s: make_unsubscribe_token(s, 12, 3), verify_unsubscribe_token),
        (lambda s: make_confirmation_token(s, 7, 2), verify_confirmation_token),
        (lambda s: make_open_token(s, 123456), verify_open_token),
        (lambda s: make_click_token(s, 123456, 7), verify_click_token),
    ],
)
def test_one_changed_character_is_refused(keyed, make, verify):
    token = make(keyed)
    variants = list(_variants(token))
    assert len(variants) == len(token)
    for forged in variants:
        with pytest.raises(TokenError):
            verify(keyed, forged)


def test_other_key_and_other_purpose_are_refused(keyed):
    other = keyed.replace(secret_key="another-deployment-key")
    with pytest.raises(TokenError) as info:
        verify_unsubscribe_token(keyed, make_unsubscribe_token(other, 1, 1))
    assert info.value.reason == "bad_signature"
    with pytest.raises(TokenError):
        verify_click_token(keyed, make_click_token(other, 5, 0))
    # the same payload signed for another purpose: an open token "5.0"-shaped click is refused
    with pytest.raises(TokenError):
        verify_unsubscribe_token(keyed, make_click_token(keyed, 5, 0))
    with pytest.raises(TokenError):
        verify_click_token(keyed, make_unsubscribe_token(keyed, 5, 0))


def test_expired_confirmation_is_refused(keyed):
    token = make_confirmation_token(keyed, 7, 2, ttl_seconds=60)
    assert verify_confirmation_token(keyed, token, now=time.time() + 59).list_id == 2
    with pytest.raises(TokenError) as info:
        verify_confirmation_token(keyed, token, now=time.time() + 61)
    assert info.value.reason == "expired"
    assert "expired" in str(info.value) and "过期" in str(info.value)


@pytest.mark.parametrize(
    "junk", ["", ".", "abc", "1.2.3.4.5", "1." + "A" * 16, "x" * 500, "١.AAAAAAAAAAAAAAAA"]
)
def test_malformed_tokens_are_refused(keyed, junk):
    with pytest.raises(TokenError):
        verify_open_token(keyed, junk)


def test_generated_key_is_used_when_none_configured(tmp_path):
    embedded = load_settings(env={}).replace(data_dir=tmp_path / "var", secret_key="")
    token = make_open_token(embedded, 5)
    assert verify_open_token(embedded, token) == 5
    assert (tmp_path / "var" / "secret_key").exists()
    with pytest.raises(TokenError):
        verify_open_token(embedded.replace(secret_key="configured"), token)


def test_tracking_slots_build_signed_urls(keyed):
    slots = tracking_slots(
        keyed, delivery_id=41, subscriber_id=8, list_id=3, name="张三", n_links=3, tracking=True
    )
    assert isinstance(slots, RecipientSlots)
    assert slots.name == "张三"
    base = "https://bulletin.example.org"
    assert slots.unsubscribe_url.startswith(base + "/u/")
    assert verify_unsubscribe_token(keyed, slots.unsubscribe_url.rsplit("/", 1)[1]) == (8, 3)
    assert slots.open_url.startswith(base + "/t/o/") and slots.open_url.endswith(".gif")
    assert verify_open_token(keyed, slots.open_url.rsplit("/", 1)[1].removesuffix(".gif")) == 41
    assert len(slots.click_urls) == 3
    for index, url in enumerate(slots.click_urls):
        assert url.startswith(base + "/t/c/")
        assert verify_click_token(keyed, url.rsplit("/", 1)[1]) == (41, index)

    plain = tracking_slots(
        keyed, delivery_id=41, subscriber_id=8, list_id=None, name="", n_links=3, tracking=False
    )
    assert plain.open_url is None and plain.click_urls is None
    assert verify_unsubscribe_token(keyed, plain.unsubscribe_url.rsplit("/", 1)[1]) == (8, None)


def _events(session, kind):
    return session.scalar(select(func.count()).select_from(Event).where(Event.kind == kind))


def test_unsubscribe_by_token_is_idempotent_and_records_one_event(session, settings):
    news = service.create_list(session, "news", "News")
    other = service.create_list(session, "other", "Other")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, news)
    service.subscribe(session, person, other)
    session.commit()

    token = make_unsubscribe_token(settings, person.id, news.id)
    assert unsubscribe_by_token(session, settings, token) is True
    session.commit()
    assert unsubscribe_by_token(session, settings, token) is False
    session.commit()
    assert _events(session, "unsubscribed") == 1
    assert session.get(Subscription, (person.id, news.id)).status == "unsubscribed"
    assert session.get(Subscription, (person.id, other.id)).status == "confirmed"
    assert session.get(Subscriber, person.id).status == "active"

    everything = make_unsubscribe_token(settings, person.id, None)
    assert unsubscribe_by_token(session, settings, everything) is True
    session.commit()
    assert session.get(Subscriber, person.id).status == "unsubscribed"
    assert session.get(Subscription, (person.id, other.id)).status == "unsubscribed"
    assert _events(session, "unsubscribed") == 2


def test_refused_unsubscribe_tokens_change_nothing(session, settings):
    news = service.create_list(session, "news", "News")
    person = service.add_subscriber(session, email="a@example.org")
    service.subscribe(session, person, news)
    session.commit()
    good = make_unsubscribe_token(settings, person.id, news.id)
    foreign = make_unsubscribe_token(
        settings.replace(secret_key="someone-else"), person.id, news.id
    )
    altered = good[:-1] + ("A" if good[-1] != "A" else "B")
    nobody = make_unsubscribe_token(settings, person.id + 1000, None)
    for token in (foreign, altered, nobody, "garbage"):
        with pytest.raises(TokenError):
            unsubscribe_by_token(session, settings, token)
        session.rollback()
    assert session.get(Subscription, (person.id, news.id)).status == "confirmed"
    assert _events(session, "unsubscribed") == 0


def test_token_format_is_plain_truncated_hmac_sha256(keyed):
    """Pinned: tokens sit in emails already sent, so the format must never change by accident."""
    import base64
    import hmac

    def expected(purpose: str, payload: str) -> str:
        key = hmac.digest(KEY.encode(), b"dispatch-token-v1:" + purpose.encode(), "sha256")
        sig = base64.urlsafe_b64encode(hmac.digest(key, payload.encode(), "sha256")).decode()[:16]
        return f"{payload}.{sig}"

    assert make_open_token(keyed, 41) == expected("open", "41")
    assert make_click_token(keyed, 41, 2) == expected("click", "41.2")
    assert make_unsubscribe_token(keyed, 8, None) == expected("unsubscribe", "8.-")
    assert make_confirmation_token(keyed, 8, 3, now=1_000, ttl_seconds=10) == expected(
        "confirm", "8.3.1010"
    )
