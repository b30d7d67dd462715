"""Queue names, broker priorities, and the Dispatcher: how hosts send and wait for replies.

Every business process and operation has one queue and one task, both named
``hie.<production>.<item>``. HIE's priority scale is 0-9 with 9 most urgent; Redis runs priority 0
first and RabbitMQ the highest first, so the scale is mapped per broker here and nowhere else.
Publishing itself is the outbox's (``hie.outbox``); the dispatcher adds requests and replies.
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

from hie.errors import RequestError, RequestTimeoutError
from hie.messages import Envelope

if TYPE_CHECKING:
    from celery import Celery
    from celery.canvas import Signature

    from hie.outbox import Outbox
    from hie.production import Production
    from hie.store import MessageStore

#: RabbitMQ queues are declared with this many priority levels (x-max-priority).
AMQP_MAX_PRIORITY = 9
DEFERRED = "hie-deferred"
FAILED = "hie-failed"
#: Header of a message whose sender waits for its reply: ``sync`` or ``async`` (a chord).
AWAIT = "hie-await"


def queue_name(production: str, item: str) -> str:
    """The queue (and task name) of ``item``: ``hie.<production>.<item>``."""
    return f"hie.{production}.{item}"


def queue_names(production: str, item: str, partitions: int = 1) -> list[str]:
    """Every queue ``item`` is consumed from: its own, and for an item ordered by key over
    ``partitions`` sub-queues each of those (where its messages actually wait)."""
    name = queue_name(production, item)
    return [name] + [f"{name}.p{k}" for k in range(partitions if partitions > 1 else 0)]


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
    """How hosts send messages and wait for replies; one per process and app.

    Sends go through the outbox (stored, then published); a request someone waits for travels
    alone with its result kept, and ``wait`` follows it (and any deferral) to the reply.
    """

    def __init__(self, app: Celery, production: Production, *, redis: bool, outbox: Outbox) -> None:
        self.app = app
        self.production = production
        self.redis = redis
        self.outbox = outbox
        self.store: MessageStore = outbox.store

    # -- addressing (the outbox decides) --------------------------------------------------------
    def queue(self, item: str) -> str:
        """The queue name of ``item``."""
        return self.outbox.queue(item)

    def queue_for(self, envelope: Envelope) -> str:
        """The queue ``envelope`` goes to (its target's, or a sub-queue of its ordering key)."""
        return self.outbox.queue_for(envelope)

    def prepare(self, envelope: Envelope) -> Envelope:
        """``envelope`` with the ordering key its target asks for (see ``Outbox.prepare``)."""
        return self.outbox.prepare(envelope)

    def signature(self, envelope: Envelope, *, hook: str = "") -> Signature:
        """The Celery signature that runs ``envelope`` on its target (``hook``: on_response...).

        Used for chords, whose calls and callbacks travel alone with their results kept.
        """
        target = self.outbox.check_target(envelope.target)
        name = self.queue(target) + (f".{hook}" if hook else "")
        return self.app.signature(
            name,
            args=([envelope.to_wire()],) if not hook else (),
            queue=self.queue_for(envelope),
            priority=broker_priority(envelope.priority, redis=self.redis),
            ignore_result=False,
            argsrepr=f"[1 message(s): {envelope.message_id}]",
        )

    # -- publishing -----------------------------------------------------------------------------
    def send(self, envelope: Envelope) -> AsyncResult | None:
        """Store ``envelope`` as queued and publish it; for an awaited one, its result handle."""
        envelope = self.prepare(envelope)
        self.outbox.send([envelope])
        if AWAIT in envelope.headers:
            return AsyncResult(str(envelope.message_id), app=self.app)
        return None

    def publish(self, envelope: Envelope) -> None:
        """Publish an envelope that is already stored (recovery, resend of a stored copy)."""
        self.outbox.publish([envelope])

    def send_with_responses(self, caller: str, request: Envelope, children: list[Envelope]) -> str:
        """Send ``children`` so each reply runs ``caller``'s on_response and then on_complete.

        Returns the token under which ``on_complete``'s reply will be stored.
        """
        from hie.store import SaveRequest

        token = self.new_token()
        request_wire = request.to_wire()
        children = [self.prepare(c) for c in children]
        self.store.save_many(
            SaveRequest(c, "queued", event="queued", item=c.target) for c in children
        )
        header = []
        for child in children:
            call = self.signature(child).set(task_id=str(child.message_id))
            respond = self.app.signature(
                f"{self.queue(caller)}.on_response",
                kwargs={"request": request_wire, "call": child.to_wire()},
                queue=self.queue(caller),
                priority=broker_priority(request.priority, redis=self.redis),
                ignore_result=False,
                kwargsrepr=f"{{request: {request.message_id}, call: {child.message_id}}}",
            )
            header.append(chain(call, respond))
        complete = self.app.signature(
            f"{self.queue(caller)}.on_complete",
            kwargs={"request": request_wire},
            queue=self.queue(caller),
            priority=broker_priority(request.priority, redis=self.redis),
            ignore_result=False,
            kwargsrepr=f"{{request: {request.message_id}}}",
        ).set(task_id=token)
        chord(header)(complete)
        return token

    # -- waiting --------------------------------------------------------------------------------
    def request(self, envelope: Envelope, *, timeout: float) -> Envelope | None:
        """Send and wait for the reply envelope; see ``Host.send_request_sync`` for errors."""
        result = self._send_awaited(envelope)
        return self.wait(result, envelope, deadline=time.monotonic() + timeout)

    def request_many(
        self, envelopes: Sequence[Envelope], *, timeout: float
    ) -> list[Envelope | None]:
        """Send all, then wait for every reply (in order) within one shared deadline."""
        results = [self._send_awaited(e) for e in envelopes]
        deadline = time.monotonic() + timeout
        return [self.wait(r, e, deadline=deadline) for r, e in zip(results, envelopes, strict=True)]

    def _send_awaited(self, envelope: Envelope) -> AsyncResult:
        if AWAIT not in envelope.headers:
            envelope = envelope.model_copy(update={"headers": {**envelope.headers, AWAIT: "sync"}})
        result = self.send(envelope)
        assert result is not None
        return result

    def wait(self, result: AsyncResult, request: Envelope, *, deadline: float) -> Envelope | None:
        """Wait for ``result`` until ``deadline``, following deferred replies."""
        while True:
            remaining = deadline - time.monotonic()
            try:
                value = result.get(
                    timeout=max(remaining, 0.001), propagate=True, disable_sync_subtasks=False
                )
            except CeleryTimeoutError as exc:
                self.store.record_event(
                    request.message_id,
                    "request_timeout",
                    item=request.source,
                    detail="caller stopped waiting; a later reply is recorded only",
                )
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
