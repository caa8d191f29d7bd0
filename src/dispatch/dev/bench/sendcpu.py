"""`dispatch bench send-cpu`: where a send worker's CPU goes, per message.

Why a second send bench: `dispatch bench send` measures the pipeline against the SMTP ceiling
with two Celery workers, where the figure that decides the ratio is each worker's CPU per
message (the sink, the workers and PostgreSQL share two cores). This one runs every batch of a
campaign in one thread of this process (no Celery, same engine code, PostgreSQL, Postfix's
smtp-sink) and charges the thread's CPU clock to the innermost of a few named phases: building
messages, the SMTP wire, the recording transaction, the claim … A profiler's per-call overhead
would inflate the many small calls of message building; a handful of wrapped functions does not.
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from dispatch.i18n import Catalog

MESSAGES = Catalog(
    {
        "total": (
            "{n} 封，单线程：CPU {cpu:.3f} 毫秒/封，{rate:.0f} 封/秒（负载 {load}）",
            "{n} messages, one thread: CPU {cpu:.3f} ms per message, {rate:.0f} msg/s "
            "(load {load})",
        ),
        "phase": (
            "  {name:<28} {ms:.4f} 毫秒/封（{share:.0%}）",
            "  {name:<28} {ms:.4f} ms/msg ({share:.0%})",
        ),
    }
)

# (module, attribute, phase): CPU inside the call, less what inner phases took, goes to phase
PHASES: tuple[tuple[str, str, str], ...] = (
    ("dispatch.delivery.engine", "deliver_batch", "engine (the rest)"),
    ("dispatch.delivery.engine", "_runnable_campaign", "campaign read"),
    ("dispatch.delivery.engine", "_prepare_channel", "prepare (render, cached)"),
    ("dispatch.delivery.engine", "_claim", "claim + eligibility"),
    ("dispatch.delivery.engine", "record_results", "recording transaction"),
    ("dispatch.delivery.engine", "_close_all", "channel close (QUIT)"),
    ("dispatch.delivery.campaigns", "finish_if_done", "finish check"),
    ("dispatch.channels.smtp.SmtpChannel", "send", "channel (results, the rest)"),
    ("dispatch.channels.smtp.SmtpChannel", "open", "connect (EHLO)"),
    ("dispatch.channels.smtp_conversation.SmtpConversation", "transaction", "SMTP wire"),
    ("dispatch.channels.email_source.EmailCampaignSource", "message_for", "message build"),
)


class PhaseClock:
    """The thread's CPU time charged to the innermost active phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stack: list[str] = []
        self._mark = time.thread_time()

    def _charge(self) -> None:
        now = time.thread_time()
        if self._stack:
            top = self._stack[-1]
            self.seconds[top] = self.seconds.get(top, 0.0) + now - self._mark
        self._mark = now

    def wrap(self, phase: str, func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._charge()
            self._stack.append(phase)
            try:
                return func(*args, **kwargs)
            finally:
                self._charge()
                self._stack.pop()

        return timed

    def reset(self) -> None:
        self.seconds.clear()
        self._mark = time.thread_time()


def _owner(path: str) -> Any:
    import importlib

    module_name, _, attr = path.rpartition(".")
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        return getattr(importlib.import_module(module_name), attr)


@contextmanager
def timed_phases(clock: PhaseClock) -> Iterator[None]:
    """Wrap every function of PHASES for the duration; put the originals back after."""
    saved = []
    for owner_path, name, phase in PHASES:
        owner = _owner(owner_path)
        original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        saved.append((owner, name, original))
        setattr(owner, name, clock.wrap(phase, getattr(owner, name)))
    try:
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


class _Batches:
    """A BatchQueue that keeps the batch numbers, for this thread to run one by one."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def enqueue(self, campaign_id: int, batch_no: int) -> None:
        self.batches.append(batch_no)


def measure(recipients: int) -> dict[str, Any]:
    """Fan out a campaign of `recipients`, send its first batch untimed (rendering, first
    connections), then every other batch timed; CPU per message by phase."""
    from sqlalchemy.orm import Session

    from dispatch.config import set_settings
    from dispatch.db import make_engine
    from dispatch.delivery import campaigns
    from dispatch.delivery import engine as delivery
    from dispatch.dev.bench import bench_settings
    from dispatch.dev.bench.population import seed_list
    from dispatch.dev.bench.send import REDIS_URL, fresh_database, running_sink

    with running_sink() as sink, fresh_database() as url:
        settings = bench_settings(
            data_dir=Path(tempfile.mkdtemp(prefix="dispatch-bench-sendcpu-")) / "var",
            secret_key="bench-secret-key",
            public_base_url="https://bulletin.example.org",
            unsubscribe_mailto="unsubscribe@example.org",
            database_url=url,
            smtp_url=sink.url,
            redis_url=REDIS_URL,
            redis_key_prefix=f"dispatch-bench-sendcpu:{time.time_ns()}:",
        )
        set_settings(settings)
        engine = make_engine(url)
        try:
            issue_id, list_id = seed_list(engine, recipients)
            with Session(engine) as session, session.begin():
                campaign, _ = campaigns.create_or_get(
                    session, issue_id=issue_id, channel="email", list_ids=[list_id]
                )
                campaign_id = campaign.id
            queue = _Batches()
            campaigns.start(engine, settings, campaign_id, queue)
            first, *rest = queue.batches
            delivery.deliver_batch(engine, settings, campaign_id, first)
            sent_before = _sent(engine, campaign_id)
            clock = PhaseClock()
            with timed_phases(clock):
                clock.reset()
                started, wall = time.thread_time(), time.perf_counter()
                for batch_no in rest:
                    delivery.deliver_batch(engine, settings, campaign_id, batch_no)
                cpu, wall = time.thread_time() - started, time.perf_counter() - wall
            timed = _sent(engine, campaign_id) - sent_before
        finally:
            engine.dispose()
    return _figures(clock.seconds, cpu, wall, max(timed, 1), sink.kind)


def _sent(engine: Any, campaign_id: int) -> int:
    from sqlalchemy.orm import Session

    from dispatch.delivery import campaigns

    with Session(engine) as session:
        return int(campaigns.counts(session, campaign_id).get("sent", 0))


def _figures(
    seconds: dict[str, float], cpu: float, wall: float, messages: int, sink: str
) -> dict[str, Any]:
    per_message = {name: round(1000 * s / messages, 4) for name, s in seconds.items()}
    per_message["outside the phases"] = round(1000 * (cpu - sum(seconds.values())) / messages, 4)
    return {
        "messages": messages,
        "sink": sink,
        "cpu_ms_per_message": round(1000 * cpu / messages, 4),
        "rate": round(messages / wall, 1),
        "phases_ms_per_message": dict(sorted(per_message.items(), key=lambda kv: -kv[1])),
    }


@click.command("send-cpu")
@click.option("--recipients", default=10_000, show_default=True, help="campaign size")
@click.option("--json", "as_json", is_flag=True, help="print the figures as JSON")
def command(recipients: int, as_json: bool) -> None:
    """Where a send worker's CPU goes, per message (one thread, smtp-sink, PostgreSQL)."""
    from dispatch.dev.bench.send import load_average

    result = {"recipients": recipients, "load_before": load_average(), **measure(recipients)}
    result["load_after"] = load_average()
    if as_json:
        click.echo(json.dumps(result, ensure_ascii=False, indent=2))
        return
    total = result["cpu_ms_per_message"]
    click.echo(
        MESSAGES.both(
            "total", n=result["messages"], cpu=total, rate=result["rate"], load=result["load_after"]
        )
    )
    for name, ms in result["phases_ms_per_message"].items():
        click.echo(MESSAGES.both("phase", name=name, ms=ms, share=ms / total if total else 0))
