"""Draining: a worker that finds more tasks waiting in its item's queue takes them into its batch.

The outbox packs what is sent together, but messages that arrive one at a time (a sender on one
connection, a slow start) queue up as many small tasks. Celery's cost is per task, so when a
worker starts a task and the queue still holds more, it takes them too, until the batch holds
``batch_size`` messages, and runs them all as one hop: one claim, one transaction. With an empty
queue nothing is taken and nothing waits: the message in hand goes at once.

What is taken must be a plain run of the same item that nobody waits on (same task name, no
``eta``, no ``first_attempt``, no result kept); the first task that is not (a retry due later, a
process's reply callback, a key's resume, a synchronous request, which goes alone so that the
item's other workers can take the next one) is put back where it was, and draining stops there.
Once the hop's claim has committed, the store holds the taken messages as ``in_progress``: if the
worker dies, the recovery sweeper publishes them again.

On Redis the drainer reads kombu's lists itself: one pipelined ``LLEN`` of the queue's priority
lists, then ``RPOP`` with a count from the non-empty ones in the order kombu serves them, and
``RPUSH`` back of what does not fit. kombu's ``basic_get`` would cost a round trip per priority
list plus two for its acknowledgement bookkeeping, per task. A worker that dies between taking
tasks and claiming them leaves their messages queued in the store, where the recovery sweeper
finds them. On RabbitMQ it is ``basic_get``, acknowledged after the claim.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from kombu.entity import Queue
from kombu.serialization import loads

from hie.flow import QueueDepth, redis_lists

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)

#: Content types a taken task may have (HIE's tasks are JSON, as ``celeryconfig`` accepts).
_ACCEPT = {"application/json"}


@dataclass
class Taken:
    """One task taken from the queue: its messages."""

    wires: list[dict[str, Any]]
    redelivered: bool
    #: Acknowledge it: its messages are recorded as in progress (nothing to do on Redis).
    ack: Callable[[], None]
    #: Hand it back to the broker, where it was (the hop could not record its messages).
    requeue: Callable[[], None]


def _mergeable(headers: dict[str, Any], body: Any, task_name: str) -> list[dict[str, Any]] | None:
    """The task's messages if it can join the batch (see the module docstring), else None."""
    if headers.get("task") != task_name or headers.get("eta"):
        return None
    if headers.get("ignore_result") is False:  # someone waits on it
        return None
    args, kwargs, _ = body
    if kwargs.get("first_attempt") is not None or not args or not isinstance(args[0], list):
        return None
    return list(args[0])


class Drainer:
    """Takes waiting tasks of one item from the broker; one per process, safe across threads."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._local = threading.local()
        url = str(app.conf.broker_url)
        self._depths = QueueDepth(url, ttl=0.0) if url.startswith(("redis", "rediss")) else None

    def take(self, queue: str, task_name: str, room: int) -> list[Taken]:
        """Up to ``room`` more messages of ``task_name`` from ``queue`` (fewer if fewer wait).

        Never raises: a broker that does not answer means nothing more is taken now.
        """
        if room <= 0:
            return []
        try:
            if self._depths is not None:
                return self._take_redis(queue, task_name, room)
            return self._take_amqp(queue, task_name, room)
        except Exception as exc:  # the broker went away: run what is in hand
            log.warning("cannot take more tasks from %s: %r", queue, exc)
            self._local.connection = None
            return []

    # -- Redis -----------------------------------------------------------------------------------
    def _take_redis(self, queue: str, task_name: str, room: int) -> list[Taken]:
        assert self._depths is not None
        client = self._depths.client()
        taken: list[Taken] = []
        lengths = self._depths.read_lists(queue)
        for name, length in zip(redis_lists(queue), lengths, strict=True):
            if not length:
                continue
            popped = client.rpop(name, min(length, room)) or []
            for index, raw in enumerate(popped):
                try:
                    item = self._redis_item(client, name, raw, task_name) if room > 0 else None
                except Exception as exc:  # not a task this worker can read: leave it to Celery
                    log.warning("cannot read a task of %s: %r", queue, exc)
                    item = None
                if item is None:
                    # Back where they were, in order: the next RPOP takes the first of them.
                    client.rpush(name, *reversed(popped[index:]))
                    return taken
                taken.append(item)
                room -= len(item.wires)
            if room <= 0:
                break
        return taken

    @staticmethod
    def _redis_item(client: Any, name: str, raw: bytes, task_name: str) -> Taken | None:
        payload = json.loads(raw)
        properties = payload.get("properties") or {}
        body = payload["body"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        content_type, encoding = payload.get("content-type"), payload.get("content-encoding")
        decoded = loads(body, content_type, encoding, accept=_ACCEPT)  # type: ignore[no-untyped-call]
        headers = payload.get("headers") or {}
        wires = _mergeable(headers, decoded, task_name)
        if wires is None:
            return None
        again = (properties.get("delivery_info") or {}).get("redelivered") or headers.get(
            "redelivered"
        )
        return Taken(wires, bool(again), ack=lambda: None, requeue=lambda: client.rpush(name, raw))

    # -- RabbitMQ --------------------------------------------------------------------------------
    def _take_amqp(self, queue: str, task_name: str, room: int) -> list[Taken]:
        bound = Queue(queue, routing_key=queue).bind(self._channel())  # type: ignore[no-untyped-call]
        taken: list[Taken] = []
        while room > 0:
            message = bound.get(no_ack=False, accept=["json"])
            if message is None:
                break
            wires = _mergeable(message.headers or {}, message.decode(), task_name)
            if wires is None:
                message.reject(requeue=True)
                break
            again = bool((message.delivery_info or {}).get("redelivered"))
            requeue = partial(message.reject, requeue=True)
            taken.append(Taken(wires, again, ack=message.ack, requeue=requeue))
            room -= len(wires)
        return taken

    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if channel is None or getattr(self._local, "connection", None) is None:
            connection = self.app.connection_for_read()
            channel = connection.channel()
            self._local.connection, self._local.channel = connection, channel
        return channel
