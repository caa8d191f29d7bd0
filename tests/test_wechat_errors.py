"""The error table: every code has a bounded action; the policy never retries forever."""

from __future__ import annotations

import pytest
from wechatpy.exceptions import WeChatClientException

from dispatch.wechat.errors import (
    ERROR_TABLE,
    RetryPolicy,
    WechatError,
    call_with_retries,
    classify,
)


@pytest.mark.parametrize(
    ("code", "action"),
    [
        (-1, "retry"),
        (40001, "refresh_token"),
        (40014, "refresh_token"),
        (42001, "refresh_token"),
        (45009, "quota"),
        (45011, "backoff"),
        (45028, "pause"),
        (45065, "already_sent"),
        (45066, "retry"),
        (40007, "fail"),
        (45002, "fail"),
        (None, "retry"),
        (99999, "fail"),
    ],
)
def test_codes_map_to_actions(code, action):
    assert classify(code).action == action


def test_every_rule_has_a_reason():
    assert all(rule.reason for rule in ERROR_TABLE.values())


def test_busy_is_retried_a_bounded_number_of_times_with_growing_waits():
    calls, sleeps = [], []

    def busy():
        calls.append(1)
        raise WeChatClientException(-1, "system error")

    with pytest.raises(WechatError) as info:
        call_with_retries(busy, RetryPolicy(attempts=4, scale=0.01), sleeps.append)
    assert info.value.errcode == -1 and len(calls) == 4 and len(sleeps) == 3
    assert sleeps[0] < sleeps[2]


def test_content_errors_are_not_retried():
    calls = []

    def bad():
        calls.append(1)
        raise WeChatClientException(40007, "invalid media_id")

    with pytest.raises(WechatError) as info:
        call_with_retries(bad, RetryPolicy(attempts=5), lambda s: None)
    assert len(calls) == 1 and info.value.action == "fail" and "invalid media_id" in str(info.value)


def test_jitter_stays_within_bounds():
    policy = RetryPolicy(max_delay=100.0)
    for attempt in range(1, 10):
        delay = policy.delay(classify(45011), attempt)
        cap = min(10.0 * 2 ** (attempt - 1), 100.0)  # 45011: 10 s base
        assert cap * 0.5 <= delay <= cap
