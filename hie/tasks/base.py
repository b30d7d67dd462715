"""HostTask: the Celery binding of one production item; ``ItemRuntime``: what its tasks share.

Celery builds a task object once per process, so the host instance lives on it: ``on_init`` and
``on_start`` run once per worker process, lazily or from the worker's process-init signal. The
task body stays as thin as a web view: a ``Hop`` runs the task's messages (``hie.tasks.hop``),
``hie.tasks.replies`` runs a process's async replies; what is left here is Celery's part
(arguments, retries of the task itself, what the task returns).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.app.trace import get_actual_ignore_result

from hie.errors import StoreError
from hie.flow import CircuitBreaker, Throttle
from hie.hooks import HookChain
from hie.messages import Envelope
from hie.tasks import replies
from hie.tasks.drain import Drainer, Taken
from hie.settings import get_settings
from hie.tasks.heartbeat import Heartbeat
from hie.tasks.hop import RETRYING, Hop, Raise
from hie.tasks.ordering import PARKED, KeyHold

if TYPE_CHECKING:
    from celery import Celery

    from hie.hosts.base import Host
    from hie.production import Item, Production
    from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: Seconds a worker must have been idle before a task for it to skip looking for company.
IDLE_GAP = 0.02


@dataclass
class ItemRuntime:
    """Everything a task needs about its item, built once per process by ``register``."""

    production: Production
    item: Item
    host_class: type[Host]
    hooks: HookChain
    dispatcher: Dispatcher
    #: Redis URL for per-key holds of ordered items (None: no holds).
    state_url: str | None = None
    _host: Host | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _breaker: CircuitBreaker | None = None
    _throttle: Throttle | None = None
    _hold: KeyHold | None = None
    _extras_ready: bool = False
    _drainer: Drainer | None = None
    _heartbeat: Heartbeat | None = None
    #: When this process last finished a task (monotonic), and whether its last look for
    #: company found any: see ``wants_company``.
    _last_done: float | None = None
    _found_company: bool = True

    def _extras(self) -> None:
        if self._extras_ready:
            return
        settings = self.host.settings
        if settings.breaker_threshold > 0:
            self._breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_reset)
        if settings.throttle_delay > 0:
            self._throttle = Throttle(settings.throttle_delay)
        if self.item.partitions > 1 and self.state_url:
            self._hold = KeyHold(self.state_url, self.dispatcher.queue(self.item.name))
        self._extras_ready = True

    @property
    def breaker(self) -> CircuitBreaker | None:
        """This process's circuit breaker for the item's peer, when configured."""
        self._extras()
        return self._breaker

    @property
    def throttle(self) -> Throttle | None:
        """This process's throttle, when ``throttle_delay`` is set."""
        self._extras()
        return self._throttle

    @property
    def hold(self) -> KeyHold | None:
        """Per-key holds of an item ordered by key over partitions."""
        self._extras()
        return self._hold

    def wants_company(self) -> bool:
        """Whether a task starting now should look for more tasks waiting in its queue.

        Not when this process had been idle for ``IDLE_GAP`` and found nothing the last time:
        an idle worker is handed a task as soon as one is queued, so its queue was empty a
        moment ago, and asking the broker again costs a round trip (about a millisecond) of
        every message at low rates for nothing. A busy worker (its next task came within
        ``IDLE_GAP``) always looks: that is when tasks wait.
        """
        last = self._last_done
        return last is None or self._found_company or time.monotonic() - last < IDLE_GAP

    def task_done(self, found_company: bool | None) -> None:
        """A task of this process ended; ``found_company``: what its look found (None: none)."""
        self._last_done = time.monotonic()
        if found_company is not None:
            self._found_company = found_company

    @property
    def heartbeat(self) -> Heartbeat:
        """This process's heartbeat for the messages its tasks are running."""
        if self._heartbeat is None:
            with self._lock:
                if self._heartbeat is None:
                    interval = get_settings().heartbeat_interval
                    self._heartbeat = Heartbeat(self.dispatcher.store, interval)
        return self._heartbeat

    def drainer(self, app: Celery) -> Drainer:
        """This process's drainer (one broker connection per thread, opened on first use)."""
        if self._drainer is None:
            self._drainer = Drainer(app)
        return self._drainer

    @property
    def host(self) -> Host:
        """The host instance of this process, created (on_init, on_start) on first use."""
        if self._host is None:
            with self._lock:
                if self._host is None:
                    host = self.host_class(self.item, self.production, dispatcher=self.dispatcher)
                    host.on_init()
                    host.on_start()
                    self._host = host
        return self._host

    def shutdown(self) -> None:
        """Stop and tear down the host of this process, if it was started."""
        with self._lock:
            host, self._host = self._host, None
        if host is not None:
            try:
                host.on_stop()
            finally:
                host.on_tear_down()


class HostTask(Task):  # type: ignore[misc]
    """Base task of every item: its messages run through a ``Hop``; Celery's part stays here."""

    acks_late = True
    reject_on_worker_lost = True
    # No result is kept unless a caller waits for it (the outbox asks per task).
    ignore_result = True
    # failure_timeout decides when retrying stops. Celery reads retry(max_retries=None) as "the
    # task's default", which is 3: without this, a 4th failure ended the task with the message
    # still "queued" in the store.
    max_retries = None
    runtime: ItemRuntime

    def handle(
        self, batch: list[dict[str, Any]] | dict[str, Any], first_attempt: float | None
    ) -> Any:
        """Run the task's messages, and more waiting in the queue; for a task of one message,
        return (or raise) what it answers."""
        wires = batch if isinstance(batch, list) else [batch]  # one envelope: an older sender
        # A retry, or a request someone waits on, goes alone; anything else takes company.
        alone = first_attempt is not None or not get_actual_ignore_result(self, self.request)
        runtime = self.runtime
        looked = not alone and runtime.wants_company()
        taken = self._take_more(len(wires)) if looked else []
        try:
            return self._handle(wires, first_attempt, taken)
        finally:
            runtime.task_done(bool(taken) if looked else None)

    def _handle(
        self, wires: list[dict[str, Any]], first_attempt: float | None, taken: list[Taken]
    ) -> Any:
        delivery = self.request.delivery_info or {}
        mine = [Envelope.from_wire(w) for w in wires]
        theirs = [[Envelope.from_wire(w) for w in t.wires] for t in taken]
        redelivered = {str(e.message_id) for e in mine} if delivery.get("redelivered") else set()
        for t, envelopes in zip(taken, theirs, strict=True):
            if t.redelivered:
                redelivered |= {str(e.message_id) for e in envelopes}
        hop = Hop(self.runtime, first_attempt=first_attempt, redelivered=redelivered)
        claimed = False

        def acknowledge() -> None:
            nonlocal claimed
            claimed = True
            for t in taken:  # recorded as in progress: the store holds them now
                t.ack()

        try:
            results = hop.run(mine + [e for es in theirs for e in es], on_claimed=acknowledge)
        except BaseException as exc:
            if not claimed:
                for t in reversed(taken):  # back in the order they were taken
                    t.requeue()
            if not isinstance(exc, StoreError):
                raise
            # Nothing of the uncommitted part was published (the outbox publishes after the
            # commit) and the claim skips what was committed: running the task again is safe.
            log.warning("%s cannot record its messages now: %s", self.runtime.item.name, exc)
            interval = self.runtime.host.settings.retry_interval
            raise self._again(wires, first_attempt, interval, exc) from exc
        if hop.retry_task is not None:
            delay, first = hop.retry_task
            raise self._again(wires, first, delay, None)
        if len(mine) != 1:
            return None
        if isinstance(results[0], Raise):
            raise results[0].error
        return None if results[0] in (PARKED, RETRYING) else results[0]

    def _take_more(self, have: int) -> list[Taken]:
        """More tasks of this item waiting in its queue, up to its ``batch_size`` messages."""
        room = self.runtime.host.settings.batch_size - have
        if room <= 0:
            return []
        queue = (self.request.delivery_info or {}).get("routing_key") or self.queue
        return self.runtime.drainer(self.app).take(queue, self.name, room)

    def _again(
        self,
        wires: list[dict[str, Any]],
        first_attempt: float | None,
        countdown: float,
        exc: Exception | None,
    ) -> Exception:
        """This task again after ``countdown`` seconds, same id (a caller may wait on it)."""
        return self.retry(  # type: ignore[no-any-return]
            args=(wires,),
            kwargs={} if first_attempt is None else {"first_attempt": first_attempt},
            countdown=countdown,
            max_retries=None,
            exc=exc,
        )

    def handle_resume(self, key: str) -> int:
        """Work through the parked messages of ``key`` in order; returns how many completed."""
        hold = self.runtime.hold
        assert hold is not None
        done = 0
        while (head := hold.head(key)) is not None:
            wire, first_attempt = head
            hop = Hop(self.runtime, first_attempt=first_attempt, resuming=True)
            (outcome,) = hop.run([Envelope.from_wire(wire)])
            if outcome is PARKED:
                return done  # still failing: its retry scheduled another resume
            hold.pop(key)
            done += 1
        return done

    def handle_response(
        self, reply: Any, request: dict[str, Any], call: dict[str, Any], deadline: float | None
    ) -> Any:
        """Run the process's ``on_response`` for one async reply (waiting out a deferral)."""
        try:
            return replies.on_response(self.runtime, reply, request, call, deadline)
        except replies.NotYet as wait:
            raise self.retry(
                args=(reply,),
                kwargs={"request": request, "call": call, "deadline": wait.deadline},
                countdown=replies.DEFERRED_POLL,
                max_retries=None,
            ) from None

    def handle_complete(self, results: list[Any], request: dict[str, Any]) -> Any:
        """Run the process's ``on_complete`` once every async reply is in."""
        return replies.on_complete(self.runtime, results, request)
