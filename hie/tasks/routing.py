"""Queue names, broker priorities and the Dispatcher that publishes envelopes to items.

Every business process and operation has one queue and one task, both named
``hie.<production>.<item>``. HIE's priority scale is 0-9 with 9 most urgent; Redis runs priority 0
first and RabbitMQ the highest first, so the scale is mapped per broker here and nowhere else.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import chain, chord
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from kombu.entity import Queue

from hie.errors import ConfigError, RequestError, RequestTimeoutError
from hie.messages import Envelope

if TYPE_CHECKING:
    from celery import Celery
    from celery.canvas import Signature

    from hie.flow import QueueDepth
    from hie.production import Production
    from hie.tasks.tracking import Tracker

#: RabbitMQ queues are declared with this many priority levels (x-max-priority).
AMQP_MAX_PRIORITY = 9
DEFERRED = "hie-deferred"
FAILED = "hie-failed"


def queue_name(production: str, item: str) -> str:
    """The queue (and task name) of ``item``: ``hie.<production>.<item>``."""
    return f"hie.{production}.{item}"


def broker_priority(priority: int, *, redis: bool) -> int:
    """Map HIE priority (9 most urgent) onto the broker's own scale."""
    return 9 - priority if redis else priority


def item_queue(production: str, item: str, *, partition: int | None = None) -> Queue:
    """The kombu queue of ``item`` (or of one of its sub-queues), declared alike everywhere.

    Every process declares it with the same arguments: RabbitMQ refuses a redeclaration that
    differs.
    """
    name = queue_name(production, item)
    if partition is not None:
        name = f"{name}.p{partition}"
    return Queue(name, routing_key=name, queue_arguments={"x-max-priority": AMQP_MAX_PRIORITY})  # type: ignore[no-untyped-call]


def deferred_marker(token: str) -> dict[str, str]:
    """What a task returns when its reply will come later under ``token``."""
    return {DEFERRED: token}


def failed_marker(item: str, message_id: str, error: str) -> dict[str, str]:
    """What a task awaited by an async caller returns when it failed for good."""
    return {FAILED: error, "item": item, "message_id": message_id}


class Dispatcher:
    """Publishes envelopes to items' queues and waits for replies; one per process and app."""

    def __init__(
        self,
        app: Celery,
        production: Production,
        *,
        redis: bool,
        tracker: Tracker | None = None,
        depths: QueueDepth | None = None,
    ) -> None:
        self.app = app
        self.production = production
        self.redis = redis
        self.tracker = tracker
        self.depths: QueueDepth | None = depths

    # -- addressing -----------------------------------------------------------------------------
    def queue(self, item: str) -> str:
        """The queue name of ``item``."""
        return queue_name(self.production.name, item)

    def _check_target(self, target: str | None) -> str:
        if target is None:
            raise ConfigError("a message needs a target item")
        host_class = self.production.host_class(target)
        if host_class.kind == "service":
            raise ConfigError(
                f"item {target!r} is a business service; services receive from outside, "
                "send to a process or an operation instead"
            )
        return target

    def queue_for(self, envelope: Envelope) -> str:
        """The queue ``envelope`` goes to: its target's, or the sub-queue of its ordering key."""
        from hie.tasks.ordering import partition_of, partition_queue

        target = self._check_target(envelope.target)
        item = self.production.item(target)
        queue = self.queue(target)
        if item.partitions > 1:
            return partition_queue(queue, partition_of(envelope.key or "", item.partitions))
        return queue

    def prepare(self, envelope: Envelope) -> Envelope:
        """Give ``envelope`` the ordering key its target asks for, if it has none yet.

        The key is computed once, at the first item that orders by it, and then travels with the
        message (children copy it), so order holds from the gateway to the last operation.
        """
        if envelope.key is not None or envelope.target is None:
            return envelope
        ordering_key = self.production.item(envelope.target).ordering_key
        if ordering_key is None:
            return envelope
        from hie.tasks.ordering import message_key

        return envelope.model_copy(update={"key": message_key(envelope, ordering_key)})

    def signature(self, envelope: Envelope, *, hook: str = "") -> Signature:
        """The Celery signature that runs ``envelope`` on its target (``hook``: on_response...)."""
        target = self._check_target(envelope.target)
        name = self.queue(target) + (f".{hook}" if hook else "")
        return self.app.signature(
            name,
            args=(envelope.to_wire(),) if not hook else (),
            queue=self.queue_for(envelope),
            priority=broker_priority(envelope.priority, redis=self.redis),
        )

    def wait_for_room(self, envelope: Envelope) -> None:
        """Backpressure: block while the target's queue is at its ``max_queue_depth``."""
        if self.depths is None or envelope.target is None:
            return
        limit = self.production.item(envelope.target).max_queue_depth
        if limit is not None:
            queue = self.queue_for(envelope)
            self.depths.wait_for_room(queue, limit)
            self.depths.added(queue)

    # -- publishing -----------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> AsyncResult:
        """Record ``envelope`` as queued, then publish it to its target's queue."""
        envelope = self.prepare(envelope)
        sig = self.signature(envelope)
        self.wait_for_room(envelope)
        if self.tracker is not None:
            self.tracker.queued(envelope)
        return sig.apply_async(task_id=str(envelope.message_id))

    def publish(self, envelope: Envelope, producer: Any = None) -> AsyncResult:
        """Publish an envelope that is already stored (the gateway group-commits first)."""
        return self.signature(envelope).apply_async(
            task_id=str(envelope.message_id), producer=producer
        )

    def send_with_responses(self, caller: str, request: Envelope, children: list[Envelope]) -> str:
        """Send ``children`` so each reply runs ``caller``'s on_response and then on_complete.

        Returns the token under which ``on_complete``'s reply will be stored.
        """
        token = self.new_token()
        request_wire = request.to_wire()
        header = []
        for child in map(self.prepare, children):
            if self.tracker is not None:
                self.tracker.queued(child)
            call = self.signature(child).set(task_id=str(child.message_id))
            respond = self.app.signature(
                f"{self.queue(caller)}.on_response",
                kwargs={"request": request_wire, "call": child.to_wire()},
                queue=self.queue(caller),
                priority=broker_priority(request.priority, redis=self.redis),
            )
            header.append(chain(call, respond))
        complete = self.app.signature(
            f"{self.queue(caller)}.on_complete",
            kwargs={"request": request_wire},
            queue=self.queue(caller),
            priority=broker_priority(request.priority, redis=self.redis),
        ).set(task_id=token)
        chord(header)(complete)
        return token

    # -- waiting --------------------------------------------------------------------------------
    def request(self, envelope: Envelope, *, timeout: float) -> Envelope | None:
        """Send and wait for the reply envelope; see ``Host.send_request_sync`` for errors."""
        result = self.send(envelope)
        return self.wait(result, envelope, deadline=time.monotonic() + timeout)

    def request_many(
        self, envelopes: Sequence[Envelope], *, timeout: float
    ) -> list[Envelope | None]:
        """Send all, then wait for every reply (in order) within one shared deadline."""
        results = [self.send(e) for e in envelopes]
        deadline = time.monotonic() + timeout
        return [self.wait(r, e, deadline=deadline) for r, e in zip(results, envelopes, strict=True)]

    def wait(self, result: AsyncResult, request: Envelope, *, deadline: float) -> Envelope | None:
        """Wait for ``result`` until ``deadline``, following deferred replies."""
        while True:
            remaining = deadline - time.monotonic()
            try:
                value = result.get(
                    timeout=max(remaining, 0.001), propagate=True, disable_sync_subtasks=False
                )
            except CeleryTimeoutError as exc:
                if self.tracker is not None:
                    self.tracker.timed_out(request)
                raise RequestTimeoutError(
                    f"no reply from {request.target!r} within the timeout "
                    f"(request {request.message_id}); a late reply will be recorded, not delivered"
                ) from exc
            except Exception as exc:
                raise RequestError(f"request to {request.target!r} failed: {exc}") from exc
            if isinstance(value, dict) and DEFERRED in value:
                result = AsyncResult(value[DEFERRED], app=self.app)
                continue
            if isinstance(value, dict) and FAILED in value:
                raise RequestError(f"request to {value['item']!r} failed: {value[FAILED]}")
            return Envelope.from_wire(value) if value else None

    # -- deferred responses ---------------------------------------------------------------------
    @staticmethod
    def new_token() -> str:
        """A fresh token for a deferred reply (a result id in the result backend)."""
        return str(uuid.uuid4())

    def answer(self, token: str, reply: object, *, source: str) -> None:
        """Store ``reply`` as the result for ``token``; whoever waits on it wakes up."""
        envelope = reply if isinstance(reply, Envelope) else Envelope.wrap(reply, source=source)
        self.app.backend.store_result(token, envelope.to_wire(), "SUCCESS")

    def ready(self, token: str) -> Any:
        """The stored value for ``token`` if it is there, else None (never blocks)."""
        result = AsyncResult(token, app=self.app)
        return result.result if result.ready() else None
