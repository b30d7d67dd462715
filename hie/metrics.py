"""Prometheus metrics of a production, read at scrape time.

Per-item counters come from the message store's counters, which only grow, even when old
messages are purged (the record, shared by every process, so any one process can serve them):
``hie_item_received_total``, ``hie_item_completed_total``,
``hie_item_failed_total``, ``hie_item_retried_total``, and ``hie_queue_depth``: the messages
waiting for each item (what backpressure counts, whatever number of tasks carry them).
``hie_end_to_end_seconds`` observes, once per message completed at an operation, the time from
the first message of its session being stored to that completion. ``hie_ack_seconds`` (receipt to
ACK written) is fed by the gateway's listeners.

Example::

    registry = CollectorRegistry()
    registry.register(ProductionCollector(production, settings, store))
    print(generate_latest(registry).decode())
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from hie.production import Production
    from hie.settings import Settings
    from hie.store import MessageStore

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: How many completed message ids are remembered so a re-updated row is not observed twice.
_REMEMBER = 200_000


def _latency_histogram(
    name: str, documentation: str, registry: CollectorRegistry | None
) -> Histogram:
    """A histogram of seconds per production and item, in the buckets all HIE latencies use."""
    return Histogram(
        name, documentation, ["production", "item"], buckets=LATENCY_BUCKETS, registry=registry
    )


class ProductionCollector(Collector):
    """Counters and gauges of one production, computed when Prometheus scrapes."""

    def __init__(
        self,
        production: Production,
        settings: Settings,
        store: MessageStore,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.production = production
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._watermark: datetime | None = None
        self._seen: set[str] = set()
        self._order: deque[str] = deque()
        self.end_to_end = _latency_histogram(
            "hie_end_to_end_seconds",
            "Seconds from a session's first message stored to its completion at an operation.",
            registry,
        )

    def collect(self) -> Iterator[Metric]:
        """The production's counters and queue depths, read now."""
        from hie.supervisor.status import item_counts

        name = self.production.name
        labels = ["production", "item"]
        families = {
            key: CounterMetricFamily(f"hie_item_{key}", text, labels=labels)
            for key, text in (
                ("received", "Messages stored for (or, for a service, sent in by) the item."),
                ("completed", "Messages the item completed."),
                ("failed", "Messages that failed for good at the item."),
                ("retried", "Retries scheduled by the item."),
            )
        }
        try:
            counts = item_counts(self.store, self.production)
        except Exception as exc:  # a scrape must answer even when the store does not
            log.warning("metrics: cannot read the store: %s", exc)
            counts = {}
        for item, c in counts.items():
            families["received"].add_metric([name, item], c.received)
            families["completed"].add_metric([name, item], c.processed)
            families["failed"].add_metric([name, item], c.failed)
            families["retried"].add_metric([name, item], c.retried)
        yield from families.values()
        text = "Messages waiting for the item (queued: on the broker, retrying or parked)."
        depth = GaugeMetricFamily("hie_queue_depth", text, labels=labels)
        kinds = {i.name: self.production.host_class(i.name).kind for i in self.production.items}
        workers = [n for n, kind in kinds.items() if kind != "service"]
        try:
            depths = self.store.waiting(workers)
        except Exception as exc:
            log.warning("metrics: cannot read queue depths: %s", exc)
            depths = {}
        for item, waiting in depths.items():
            depth.add_metric([name, item], waiting)
        yield depth

    def observe_completions(self) -> None:
        """Observe end-to-end latency of every operation completion since the last scrape."""
        operations = [
            i.name
            for i in self.production.items
            if self.production.host_class(i.name).kind == "operation"
        ]
        if not operations:
            return
        with self._lock:
            for done in self.store.completions(operations, since=self._watermark):
                self._watermark = done.completed_at
                if done.message_id in self._seen:
                    continue
                self._remember(done.message_id)
                seconds = max(0.0, (done.completed_at - done.session_started).total_seconds())
                self.end_to_end.labels(self.production.name, done.item).observe(seconds)

    def _remember(self, message_id: str) -> None:
        self._seen.add(message_id)
        self._order.append(message_id)
        if len(self._order) > _REMEMBER:
            self._seen.discard(self._order.popleft())


class AckLatency:
    """Feeds ``hie_ack_seconds`` from listeners' ``stats.ack_seconds`` lists at scrape time."""

    def __init__(self, registry: CollectorRegistry, production: str) -> None:
        self.production = production
        self.histogram = _latency_histogram(
            "hie_ack_seconds",
            "Seconds from a message's last byte received to its ACK written (gateway).",
            registry,
        )
        self._taken: dict[str, int] = {}

    def update(self, samples: dict[str, list[float]]) -> None:
        """Observe the samples appended since the last call, per item."""
        for item, values in samples.items():
            start = self._taken.get(item, 0)
            if start > len(values):  # the list was trimmed: start over from its beginning
                start = 0
            for value in values[start:]:
                self.histogram.labels(self.production, item).observe(value)
            self._taken[item] = len(values)


def production_registry(
    production: Production,
    settings: Settings,
    store: MessageStore,
    ack_samples: Callable[[], dict[str, list[float]]] | None = None,
) -> tuple[CollectorRegistry, Callable[[], Any]]:
    """A registry with the production's metrics, and the function to call before each scrape."""
    registry = CollectorRegistry()
    collector = ProductionCollector(production, settings, store, registry)
    registry.register(collector)
    ack = AckLatency(registry, production.name)

    def before_scrape() -> None:
        # Histograms are fed here, before the registry collects them, so a scrape is current.
        if ack_samples is not None:
            ack.update(ack_samples())
        try:
            collector.observe_completions()
        except Exception as exc:  # a scrape must answer even when the store does not
            log.warning("metrics: cannot read completions: %s", exc)

    return registry, before_scrape
