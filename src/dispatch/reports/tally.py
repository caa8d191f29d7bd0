"""Turn a campaign's events into report counts: pure, so the hand-computed tests read it whole.

Every count is of **people** (deliveries), never of hits: a delivery's first `sent`, first
open, first click, first bounce … adds 1. The tracking hot path already writes one `opened`
event per delivery and one `clicked` event per delivery and link; other kinds may repeat (two
DSNs for one message) and are counted once using what came before (`Prior`).

The counts land in (dimension, key, metric) cells:
- dimensions: `total` (key ""), `hour` (UTC hour "YYYY-MM-DDTHH"), `link` (link index),
  `provider`, `list` (list id), `client` and `device` (from the user agent of the hit);
- metrics: `sent`, `failed`, `skipped`, `bounced`, `bounced_late` (a bounce after the relay
  accepted), `complained`, `unsubscribed`, `opens:<origin>` (people by the origin of their
  first open),
  `clicks:<origin>` (first clicks per link), `clickers:<origin>` (people by their first click),
  where origin is person, mpp or scanner (dispatch.reports.classify).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatch.reports.agents import parse_agent
from dispatch.reports.classify import classify_click, classify_open, in_burst
from dispatch.vocabulary import EventKind

Cell = tuple[str, str, str]  # (dim, key, metric)

# event kind → the people metric it counts (once per delivery)
PEOPLE_KINDS: dict[str, str] = {
    EventKind.SENT: "sent",
    EventKind.FAILED: "failed",
    EventKind.SKIPPED: "skipped",
    EventKind.BOUNCED: "bounced",
    EventKind.BOUNCE_HARD: "bounced",
    EventKind.COMPLAINED: "complained",
    EventKind.COMPLAINT: "complained",
    EventKind.UNSUBSCRIBED: "unsubscribed",
}
TRACKED_KINDS = (EventKind.OPENED, EventKind.CLICKED)
REPORT_KINDS = tuple(PEOPLE_KINDS) + TRACKED_KINDS
# kinds a delivery may have more than once, so a batch needs what came before to count people
# once; `sent` (the engine never re-sends a sent row) and `opened` (the tracking counter writes
# one per delivery) are unique per delivery by construction and need no look-back
REPEATING_KINDS = tuple(k for k in REPORT_KINDS if k not in (EventKind.SENT, EventKind.OPENED))


@dataclass(frozen=True)
class EventRec:
    id: int
    kind: str
    at: datetime
    delivery_id: int | None
    subscriber_id: int | None
    data: Mapping[str, Any]


@dataclass(frozen=True)
class DeliveryRec:
    provider: str | None
    sent_at: datetime | None
    subscriber_id: int | None


@dataclass
class Prior:
    """What a delivery already had before the events being tallied."""

    metrics: set[str] = field(default_factory=set)  # people metrics already counted
    click_times: list[datetime] = field(default_factory=list)


def hour_key(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H")


class _Tally:
    def __init__(
        self,
        deliveries: Mapping[int, DeliveryRec],
        prior: dict[int, Prior],
        lists_of: Callable[[int | None], Sequence[int]],
    ):
        self.cells: Counter[Cell] = Counter()
        self.deliveries = deliveries
        self.prior = prior
        self.lists_of = lists_of

    def audience(self, delivery: DeliveryRec | None, metric: str) -> None:
        """Add one person to `metric` in the total, their provider and each of their lists."""
        self.cells["total", "", metric] += 1
        provider = (delivery.provider if delivery else None) or "other"
        self.cells["provider", provider, metric] += 1
        for list_id in self.lists_of(delivery.subscriber_id if delivery else None):
            self.cells["list", str(list_id), metric] += 1

    def first(self, delivery_id: int | None, metric: str) -> bool:
        """True (and remembered) when this delivery has not counted for `metric` yet."""
        if delivery_id is None:
            return True
        seen = self.prior.setdefault(delivery_id, Prior()).metrics
        if metric in seen:
            return False
        seen.add(metric)
        return True

    def people(self, event: EventRec, metric: str) -> None:
        delivery = self.deliveries.get(event.delivery_id or 0)
        if self.first(event.delivery_id, metric):
            self.audience(delivery, metric)
        if event.kind == EventKind.BOUNCE_HARD and self.first(event.delivery_id, "bounced_late"):
            self.audience(delivery, "bounced_late")

    def agent_cells(self, event: EventRec, metric: str) -> None:
        agent = parse_agent(_text(event.data.get("ua")))
        self.cells["client", agent.client, metric] += 1
        self.cells["device", agent.device, metric] += 1

    def opened(self, event: EventRec) -> None:
        delivery = self.deliveries.get(event.delivery_id or 0)
        sent_at = delivery.sent_at if delivery else None
        origin = classify_open(
            _text(event.data.get("ua")), _text(event.data.get("ip")), event.at, sent_at
        )
        metric = f"opens:{origin}"
        if not self.first(event.delivery_id, "opened"):
            return
        self.audience(delivery, metric)
        self.cells["hour", hour_key(event.at), metric] += 1
        self.agent_cells(event, metric)

    def clicked(self, event: EventRec, burst: bool) -> None:
        delivery = self.deliveries.get(event.delivery_id or 0)
        sent_at = delivery.sent_at if delivery else None
        origin = (
            "scanner"
            if burst
            else classify_click(
                _text(event.data.get("ua")), _text(event.data.get("ip")), event.at, sent_at
            )
        )
        self.cells["total", "", f"clicks:{origin}"] += 1
        self.cells["hour", hour_key(event.at), f"clicks:{origin}"] += 1
        link = event.data.get("link_index")
        self.cells["link", str(link if isinstance(link, int) else -1), f"clicks:{origin}"] += 1
        if self.first(event.delivery_id, "clicked"):
            self.audience(delivery, f"clickers:{origin}")
            self.agent_cells(event, f"clickers:{origin}")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _click_times(events: Sequence[EventRec], prior: Mapping[int, Prior]) -> dict[int, list]:
    """Each clicking delivery's click times: earlier ones (prior) and these events'."""
    times: dict[int, list[datetime]] = {}
    for event in events:
        if event.kind == EventKind.CLICKED and event.delivery_id is not None:
            if event.delivery_id not in times:
                earlier = prior.get(event.delivery_id)
                times[event.delivery_id] = list(earlier.click_times) if earlier else []
            times[event.delivery_id].append(event.at)
    return times


def tally(
    events: Sequence[EventRec],
    deliveries: Mapping[int, DeliveryRec],
    prior: dict[int, Prior],
    lists_of: Callable[[int | None], Sequence[int]],
) -> Counter[Cell]:
    """The report cells `events` add (in id order), given what each delivery had before.

    `prior` is updated in place, so tallying a campaign in several batches counts each person
    once, the same as tallying it in one.
    """
    state = _Tally(deliveries, prior, lists_of)
    times = _click_times(events, prior)
    for event in sorted(events, key=lambda e: e.id):
        if event.kind == EventKind.OPENED:
            state.opened(event)
        elif event.kind == EventKind.CLICKED:
            burst = in_burst(event.at, times.get(event.delivery_id or 0, ()))
            state.clicked(event, burst)
            if event.delivery_id is not None:
                state.prior.setdefault(event.delivery_id, Prior()).click_times.append(event.at)
        elif event.kind in PEOPLE_KINDS:
            state.people(event, PEOPLE_KINDS[event.kind])
    return state.cells
