"""The shared vocabulary: members equal the strings stored, the sets partition the states,
and the module stays at the bottom of the import graph."""

from __future__ import annotations

import ast
import inspect

from dispatch import vocabulary
from dispatch.vocabulary import (
    CAMPAIGN_FINAL,
    CAMPAIGN_TRANSITIONS,
    DELIVERY_CLAIMABLE,
    DELIVERY_DONE,
    DELIVERY_OPEN,
    CampaignStatus,
    DeliveryStatus,
    EventKind,
    Outcome,
)


def test_members_equal_their_stored_strings():
    assert DeliveryStatus.PENDING == "pending"
    assert f"{CampaignStatus.RUNNING}" == "running"
    assert {"sent": 1}[EventKind.SENT] == 1  # same hash as the string: dict keys interoperate
    for enum in (CampaignStatus, DeliveryStatus, EventKind, Outcome, vocabulary.Channel):
        for member in enum:
            assert member == member.value and member.value.islower()


def test_every_member_has_a_one_line_meaning():
    source = inspect.getsource(vocabulary)
    for enum in (CampaignStatus, DeliveryStatus, EventKind, Outcome, vocabulary.Channel):
        for member in enum:
            line = next(ln for ln in source.splitlines() if f'= "{member.value}"' in ln)
            assert "#" in line and len(line.split("#", 1)[1].strip()) > 10, line


def test_delivery_sets_partition_the_statuses():
    assert set(DELIVERY_CLAIMABLE) < set(DELIVERY_OPEN)
    assert not set(DELIVERY_OPEN) & set(DELIVERY_DONE)
    assert set(DELIVERY_OPEN) | set(DELIVERY_DONE) == set(DeliveryStatus)


def test_transition_table_covers_every_status_and_final_states_lead_nowhere():
    assert set(CAMPAIGN_TRANSITIONS) == set(CampaignStatus)
    for status, following in CAMPAIGN_TRANSITIONS.items():
        assert following <= set(CampaignStatus)
        assert (not following) == (status in CAMPAIGN_FINAL)
    assert CampaignStatus.RUNNING in CAMPAIGN_TRANSITIONS[CampaignStatus.PAUSED]


def test_outcomes_that_end_an_attempt_name_a_delivery_status_and_an_event():
    # paused and throttled give the row back (pending / deferred) instead of naming a state
    for outcome in (Outcome.SENT, Outcome.DEFERRED, Outcome.BOUNCED, Outcome.FAILED):
        assert outcome in set(DeliveryStatus) and outcome in set(EventKind)


def test_vocabulary_imports_nothing_from_dispatch():
    tree = ast.parse(inspect.getsource(vocabulary))
    modules = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    assert modules and not [m for m in modules if m.startswith("dispatch")]
