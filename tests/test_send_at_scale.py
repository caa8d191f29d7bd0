"""A 50,000-recipient campaign on PostgreSQL, sent by two Celery worker processes over the Redis
broker into Postfix's smtp-sink, reaches everyone exactly once (issue 17): every delivery `sent`
once, one `sent` event each, and the sink itself counted 50,000 messages, no more.

No timing assertion (speed is `dispatch bench send`'s job); the test uses the bench's own
pipeline so the figures the bench prints come from the path this test pins.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from dispatch.config import load_settings
from dispatch.dev.bench.send import REDIS_URL, fresh_database, pipeline, running_sink

RECIPIENTS = 50_000


@pytest.mark.slow
@pytest.mark.timeout(3600)  # a loaded shared machine sends slowly; no figure is asserted
def test_fifty_thousand_recipients_two_workers_each_reached_once(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]
    settings = load_settings(env={}).replace(
        review_required=False,  # the sample is sent without an approval step
        data_dir=tmp_path / "var",
        secret_key="test-secret-key-not-for-production",
        public_base_url="https://bulletin.example.org",
        unsubscribe_mailto="unsubscribe@example.org",
        broker_url=REDIS_URL,
        redis_url=REDIS_URL,
        redis_key_prefix=f"dispatch-test-scale:{tag}:",
        celery_queue=f"dispatch-test-scale-{tag}",
        provider_mx_lookup=False,
        lease_seconds=120.0,
    )
    with running_sink() as sink:
        assert sink.counter is not None, "Postfix smtp-sink is needed (Debian package postfix)"
        with fresh_database() as url:
            measured = pipeline(
                settings.replace(database_url=url, smtp_url=sink.url),
                RECIPIENTS,
                2,
                tmp_path,
                sink,
            )
        accepted = sink.wait_settled()  # from zero: this sink served nothing else
    assert measured["status"] == "finished"
    assert measured["counts"]["sent"] == RECIPIENTS
    assert sum(measured["counts"].values()) == RECIPIENTS
    assert measured["sent_events"] == RECIPIENTS
    assert measured["sink_accepted"] == RECIPIENTS
    assert measured["exactly_once"] is True
    assert accepted == RECIPIENTS  # no message went out twice
    assert measured["worker_restarts"] == 0
