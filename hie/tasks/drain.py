"""Draining: a worker that finds more tasks waiting in its item's queue takes them into its batch.

The outbox packs what is sent together, but messages that arrive one at a time (a sender on one
connection, a slow start) queue up as many small tasks. Celery's cost is per task, so when a
worker starts a task and the queue still holds more, it takes them too (``basic_get``), until the
batch holds ``batch_size`` messages, and runs them all as one hop: one claim, one transaction.
With an empty queue nothing is taken and nothing waits: the message in hand goes at once.

What is taken must be a plain run of the same item (same task name, no ``eta``, no
``first_attempt``); the first task that is not (a retry due later, a process's reply callback, a
key's resume) is handed back to the broker and draining stops there. Taken tasks are
acknowledged once the hop's claim has committed: from then on the store holds their messages as
``in_progress``, and if the worker dies the recovery sweeper publishes them again. A caller
waiting on a taken task (a synchronous request) gets its result stored by the worker that ran it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kombu.entity import Queue

from hie.flow import QueueDepth

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger(__name__)


@dataclass
class Taken:
    """One task taken from the queue: its messages, and what its sender expects back."""

    message: Any  # kombu.Message
    task_id: str
    wires: list[dict[str, Any]]
    keep_result: bool
    redelivered: bool

    def ack(self) -> None:
        """Acknowledge it: its messages are recorded as in progress."""
        self.message.ack()

    def requeue(self) -> None:
        """Hand it back to the broker (the hop could not record its messages)."""
        self.message.reject(requeue=True)


class Drainer:
    """Takes waiting tasks of one item from the broker; one connection per process and thread."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._local = threading.local()
        self._redis = str(app.conf.broker_url).startswith(("redis", "rediss"))
        self._depths = QueueDepth(str(app.conf.broker_url), ttl=0.0) if self._redis else None

    def take(self, queue: str, task_name: str, room: int) -> list[Taken]:
        """Up to ``room`` more messages of ``task_name`` from ``queue`` (fewer if fewer wait).

        Never raises: a broker that does not answer means nothing more is taken now.
        """
        taken: list[Taken] = []
        if room <= 0:
            return taken
        try:
            # One pipelined read instead of a pop per priority list of an empty queue.
            if self._depths is not None and self._depths.read(queue) == 0:
                return taken
            bound = Queue(queue, routing_key=queue).bind(self._channel())  # type: ignore[no-untyped-call]
            while room > 0:
                message = bound.get(no_ack=False, accept=["json"])
                if message is None:
                    break
                item = self._mergeable(message, task_name)
                if item is None:
                    message.reject(requeue=True)
                    break
                taken.append(item)
                room -= len(item.wires)
        except Exception as exc:  # the broker went away: run what is in hand
            log.warning("cannot take more tasks from %s: %r", queue, exc)
            self._local.connection = None
        return taken

    def _channel(self) -> Any:
        channel = getattr(self._local, "channel", None)
        if channel is None or getattr(self._local, "connection", None) is None:
            connection = self.app.connection_for_read()
            channel = connection.channel()
            self._local.connection, self._local.channel = connection, channel
        return channel

    @staticmethod
    def _mergeable(message: Any, task_name: str) -> Taken | None:
        """The message as a ``Taken`` if it can join the batch, else None."""
        headers = message.headers or {}
        if headers.get("task") != task_name or headers.get("eta"):
            return None
        args, kwargs, _ = message.decode()
        if kwargs.get("first_attempt") is not None or not args or not isinstance(args[0], list):
            return None
        delivery = message.delivery_info or {}
        return Taken(
            message=message,
            task_id=str(headers.get("id")),
            wires=args[0],
            keep_result=headers.get("ignore_result") is False,
            redelivered=bool(delivery.get("redelivered") or headers.get("redelivered")),
        )
