"""Recovery: re-publish stored messages whose broker copy was lost; raise alerts while at it.

The store, not the broker, is the record. A message whose task vanished from the broker (Redis
restarted or flushed, a whole worker killed with its unacknowledged tasks parked until the
visibility timeout) still sits in the store as ``queued`` or ``in_progress``, and stops moving.
``RecoverySweeper`` looks for such messages of one production and publishes them again.

When is a message lost rather than slow? Its row has not changed for ``stale_after`` seconds:

* ``in_progress``: a worker started it and never finished. However long an attempt runs (an
  operation waiting out ``response_timeout``, a FIFO item retrying in place), the worker touches
  the row every 10 s while it runs (``hie.tasks.heartbeat``): it goes stale only once that
  process is gone. An operation's message is flagged as a possible duplicate: the dead attempt
  may have reached the peer.
* ``queued``: it may simply be waiting behind a backlog, so it is re-published only when its
  queue is empty (it cannot be waiting in an empty queue), or after ``BACKLOG_FACTOR`` times
  ``stale_after`` whatever the queue holds. A retry waits as ``queued`` too, its task held by a
  worker until due: for an item with a long ``retry_interval`` the wait is stretched to twice
  that. A message parked behind a failing one of its ordering key is left to its key's resume.

Re-publishing moves the row back to ``queued`` with a ``requeued`` event, which also resets its
clock: a message is re-published at most once per ``stale_after``. The write is a compare-and-set
on (status, updated_at), so a task that finished meanwhile is left alone. A redelivered copy
of a message its item already completed is skipped by the task (``deliveries``), so recovery
never delivers twice what was recorded as delivered.

Run it as ``hie recover FILE``, one per production, next to the workers.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from hie.alerts import Alert, Alerter
from hie.store import MessageHeader, Status

if TYPE_CHECKING:
    from hie.messages import Envelope
    from hie.production import Production
    from hie.settings import Settings
    from hie.store import MessageStore
    from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: Default seconds without progress before a message counts as lost.
DEFAULT_STALE_AFTER = 60.0
#: Default seconds between sweeps.
DEFAULT_INTERVAL = 5.0
#: A queued message behind a backlog is re-published after this many times ``stale_after``.
BACKLOG_FACTOR = 10
#: Events that raise an alert, and the alert kind each raises.
ALERT_EVENTS = {"suspended": "suspended", "failed": "failed"}


@dataclass
class SweepReport:
    """What one sweep did."""

    requeued: list[str] = field(default_factory=list)
    alerts: int = 0
    seconds: float = 0.0


class RecoverySweeper:
    """Re-publishes lost messages of one production and raises its alerts (module docstring).

    Args:
        store: the message store.
        dispatcher: publishes to the production's queues (``Dispatcher.publish``).
        production: the production whose task items (processes, operations) are swept.
        stale_after: seconds without progress before a message counts as lost.
        interval: seconds between sweeps in ``run``.
        alert_depth: alert when an item's queue holds at least this many messages.
        alert_wait: alert when an item has a message queued longer than this many seconds.
        batch: most messages re-published per sweep.
    """

    def __init__(
        self,
        store: MessageStore,
        dispatcher: Dispatcher,
        production: Production,
        *,
        stale_after: float = DEFAULT_STALE_AFTER,
        interval: float = DEFAULT_INTERVAL,
        alert_depth: int | None = None,
        alert_wait: float | None = None,
        batch: int = 1000,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.production = production
        self.stale_after = stale_after
        self.interval = interval
        self.alert_depth = alert_depth
        self.alert_wait = alert_wait
        self.batch = batch
        self.items = {
            i.name: production.host_class(i.name).kind
            for i in production.items
            if production.host_class(i.name).kind != "service"
        }
        #: Per item, how long one of its messages may rest without being lost (see ``_stale``).
        self.stale = {name: self._stale(production, name) for name in self.items}
        self._holds: dict[str, Any] = {}
        self.alerter = Alerter.for_production(dispatcher)
        # Alerts start from now: the history before this sweeper started was someone else's.
        self._event_cursor = store.last_event_id()
        self._depths: Any = None

    def _stale(self, production: Production, name: str) -> float:
        """``stale_after``, or longer for an item whose messages rest longer without being lost:
        a message waiting for its retry (``retry_interval``) is queued, its task held by a
        worker until it is due, not in the queue. (A running attempt keeps its message alive
        itself: ``hie.tasks.heartbeat``.)"""
        try:
            settings = production.host_class(name).Settings.model_validate(
                production.item(name).settings
            )
        except Exception:  # validate reports bad settings; here the default is enough
            return self.stale_after
        return max(self.stale_after, 2 * float(settings.retry_interval))

    # -- the loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None) -> None:
        """Sweep every ``interval`` seconds until ``stop`` is set."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                report = self.sweep_once()
                if report.requeued:
                    log.warning(
                        "re-published %d lost message(s) in %.2f s",
                        len(report.requeued),
                        report.seconds,
                    )
            except Exception:  # a store or broker hiccup: try again next round
                log.exception("recovery sweep failed; retrying in %.1f s", self.interval)
            stop.wait(self.interval)

    def sweep_once(self) -> SweepReport:
        """One pass: re-publish lost messages, then raise alerts."""
        started = time.perf_counter()
        report = SweepReport()
        depths: dict[str, int] = {}
        self._declare_queues()
        for header in self.store.stale(self.stale_after, limit=self.batch * 4):
            if len(report.requeued) >= self.batch:
                break
            if header.target in self.items and self._requeue(header, depths):
                report.requeued.append(header.message_id)
        report.alerts = self._alert_events() + self._alert_queues()
        report.seconds = time.perf_counter() - started
        return report

    # -- re-publishing ---------------------------------------------------------------------------
    def _declare_queues(self) -> None:
        """Declare every queue of the production again (cheap, idempotent).

        A flushed Redis loses kombu's routing table (``_kombu.binding.*``) with the queues, and
        every process declared its queues once, at start: until someone declares them again,
        each publish fails with "Cannot route message". This puts the table back every sweep.
        """
        app = self.dispatcher.app
        with app.connection_for_write() as conn:
            channel = conn.default_channel
            for queue in app.conf.task_queues or ():
                queue.bind(channel).declare()

    def _depth(self, queue: str, cache: dict[str, int]) -> int:
        if queue not in cache:
            cache[queue] = self._queue_depth(queue)
        return cache[queue]

    def _queue_depth(self, queue: str) -> int:
        """Tasks on the broker in ``queue`` (is anything still there to be delivered?)."""
        if self._depths is None:
            from hie.flow import QueueDepth

            self._depths = QueueDepth(str(self.dispatcher.app.conf.broker_url))
        return int(self._depths.read(queue))

    def _requeue(self, header: MessageHeader, depths: dict[str, int]) -> bool:
        age = (datetime.now(UTC) - header.updated_at).total_seconds()
        if age < self.stale.get(header.target or "", self.stale_after):
            return False  # waiting for its retry, not lost
        envelope = self.store.load(header.message_id)
        if "hie-await" in envelope.headers:
            # Part of a request/reply (a chord or a waiting caller): a bare re-publish would run
            # it without its callback. The caller's own timeout reports it instead.
            return False
        if self._parked(header.target or "", envelope):
            return False  # behind a failing message of its key: its key's resume runs it
        queue = self.dispatcher.queue_for(envelope)
        if header.status is Status.QUEUED and age < self.stale_after * BACKLOG_FACTOR:
            if self._depth(queue, depths) > 0:
                return False  # probably waiting behind others in its queue
        detail = f"no progress for {age:.0f} s while {header.status}; re-published by recovery"
        if not self.store.requeue(header.message_id, header.status, header.updated_at, detail):
            return False  # it moved since we read it: not lost after all
        if header.status is Status.IN_PROGRESS and self.items[header.target or ""] == "operation":
            self.store.mark_possible_duplicate(
                header.message_id,
                "an earlier attempt started and never finished; it may have reached the peer",
                item=header.target,
            )
        self.dispatcher.publish(envelope)
        return True

    def _parked(self, item: str, envelope: Envelope) -> bool:
        """True when ``envelope`` waits parked behind an earlier message of its ordering key."""
        definition = self.production.item(item)
        if definition.partitions <= 1 or not envelope.key:
            return False
        if item not in self._holds:
            from hie.tasks.ordering import KeyHold
            from hie.tasks.register import state_url

            url = state_url(self.dispatcher.app)
            self._holds[item] = KeyHold(url, self.dispatcher.queue(item)) if url else None
        hold = self._holds[item]
        return hold is not None and hold.is_held(envelope.key)

    # -- alerts ----------------------------------------------------------------------------------
    def _alert_events(self) -> int:
        raised = 0
        while True:
            events = self.store.events_after(self._event_cursor, ALERT_EVENTS, limit=500)
            for ev in events:
                self._event_cursor = ev.id
                # "failed" is written only when no retry follows (a retry writes "retried").
                if ev.item not in self.items:
                    continue
                alert = Alert(
                    production=self.production.name,
                    item=ev.item,
                    message_id=ev.message_id,
                    kind=ALERT_EVENTS[ev.event],
                    text=f"message {ev.message_id} {ev.event} at {ev.item}: {ev.detail or ''}",
                    at=ev.at,
                )
                raised += self.alerter.raise_alert(alert)
            if len(events) < 500:
                return raised

    def _alert_queues(self) -> int:
        raised = 0
        if self.alert_depth is not None:
            # Messages, as status and /metrics count them: on the broker (every sub-queue of an
            # item ordered by key), retrying or parked behind a failing one of their key.
            for item, depth in self.store.waiting(list(self.items)).items():
                if depth >= self.alert_depth:
                    text = f"queue of {item} holds {depth} messages (alert at {self.alert_depth})"
                    raised += self._queue_alert(item, "queue_depth", text)
        if self.alert_wait is not None:
            waiting: dict[str, MessageHeader] = {}
            for header in self.store.stale(self.alert_wait, [Status.QUEUED], limit=self.batch):
                if header.target in self.items:
                    waiting.setdefault(header.target, header)  # least recent first
            for item, oldest in waiting.items():
                age = (datetime.now(UTC) - oldest.updated_at).total_seconds()
                text = f"a message has waited {age:.0f} s in the queue of {item}"
                raised += self._queue_alert(item, "queue_wait", text, oldest.message_id)
        return raised

    def _queue_alert(self, item: str, kind: str, text: str, message_id: str | None = None) -> int:
        alert = Alert(
            production=self.production.name, item=item, kind=kind, text=text, message_id=message_id
        )
        return int(self.alerter.raise_alert(alert))


def build_sweeper(production: Production, settings: Settings, **options: Any) -> RecoverySweeper:
    """A sweeper for ``production`` with its own app, dispatcher and store."""
    from hie.startup import open_dispatcher, open_store

    store = open_store(settings, production=production.name)
    dispatcher = open_dispatcher(production, settings, store)
    return RecoverySweeper(store, dispatcher, production, **options)


def run_sweeper(
    production: Production,
    settings: Settings,
    *,
    once: bool = False,
    stop: threading.Event | None = None,
    **options: Any,
) -> SweepReport | None:
    """Run the recovery sweeper of ``production`` until SIGTERM/SIGINT (or one pass: ``once``).

    ``options`` are ``RecoverySweeper``'s keyword arguments (stale_after, interval, alerts...).
    """
    sweeper = build_sweeper(production, settings, **options)
    if once:
        return sweeper.sweep_once()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
    log.info(
        "recovery sweeper for %s: stale after %.0f s, every %.1f s",
        production.name,
        sweeper.stale_after,
        sweeper.interval,
    )
    sweeper.run(stop)
    return None
