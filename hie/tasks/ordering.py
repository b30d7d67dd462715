"""Ordered parallelism: one key's messages in order, different keys in parallel.

An item with ``ordering_key`` (an HL7 path such as ``PID-3.1``) and ``partitions: N`` has N
sub-queues, each consumed by one worker with one slot. A message goes to the sub-queue chosen by a
stable hash of its key, and the key travels in the envelope, so later hops keep the order too.

A failing message must hold only its own key, not the other keys that share its sub-queue: it is
parked in a per-key list in Redis (with every later message of that key behind it) and retried
by a ``resume`` task (``schedule_resume``); the sub-queue goes on with other keys meanwhile. A
worker that starts picks up the keys parked before it (``resume_parked``).
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

import redis

from hie.messages import BODY_HL7, Envelope

if TYPE_CHECKING:
    from celery import Celery

#: What a task returns for a message parked behind an earlier one of the same key.
PARKED = "hie-parked"


def partition_of(key: str, partitions: int) -> int:
    """The sub-queue of ``key``: a stable hash (the same in every process and release)."""
    return zlib.crc32(key.encode("utf-8")) % partitions


def partition_queue(queue: str, index: int) -> str:
    """The name of sub-queue ``index`` of ``queue``."""
    return f"{queue}.p{index}"


def message_key(envelope: Envelope, ordering_key: str) -> str | None:
    """The ordering key of an HL7 message (None when it is not HL7 or the field is empty)."""
    if envelope.body_type != BODY_HL7:
        return None
    from hie.hl7 import HL7Message

    value = HL7Message(envelope.body).get(ordering_key)
    return value or None


class KeyHold:
    """Per-key lists of parked messages of one item, kept in Redis (they survive a worker crash)."""

    def __init__(self, url: str, item_queue: str) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = f"hie-hold:{item_queue}:"

    def _name(self, key: str) -> str:
        return self.prefix + key

    def is_held(self, key: str) -> bool:
        """True while messages of ``key`` are parked."""
        return bool(self.client.exists(self._name(key)))

    def append(self, key: str, wire: dict[str, Any], first_attempt: float) -> None:
        """Park a message behind those already parked for ``key``."""
        entry = json.dumps({"wire": wire, "first_attempt": first_attempt})
        self.client.rpush(self._name(key), entry)

    def head(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The oldest parked message of ``key`` (wire, first attempt), if any."""
        raw = self.client.lindex(self._name(key), 0)
        if raw is None:
            return None
        entry = json.loads(raw)
        return entry["wire"], float(entry["first_attempt"])

    def pop(self, key: str) -> None:
        """Drop the oldest parked message of ``key`` (it completed or was given up)."""
        self.client.lpop(self._name(key))

    def held_keys(self) -> list[str]:
        """Every key with parked messages (to resume them when a worker starts)."""
        return [
            k.decode()[len(self.prefix) :] for k in self.client.scan_iter(match=self.prefix + "*")
        ]

    def count(self, key: str) -> int:
        """How many messages of ``key`` are parked."""
        return int(self.client.llen(self._name(key)))


def resume_task(item_queue: str) -> str:
    """The name of the task that works through an item's parked keys."""
    return f"{item_queue}.resume"


def schedule_resume(
    app: Celery, item_queue: str, partitions: int, key: str, countdown: float = 0.0
) -> None:
    """Run the parked messages of ``key`` again in ``countdown`` seconds, on the key's sub-queue.

    On the key's own sub-queue, so the resume runs in the one worker that keeps that key's order.
    """
    app.signature(
        resume_task(item_queue),
        args=(key,),
        queue=partition_queue(item_queue, partition_of(key, partitions)),
        ignore_result=True,
    ).apply_async(countdown=countdown)


def resume_parked(
    app: Celery, hold: KeyHold, item_queue: str, partitions: int, partition: int
) -> int:
    """Schedule a resume for every key parked in ``partition`` (a worker starting); how many."""
    keys = [k for k in hold.held_keys() if partition_of(k, partitions) == partition]
    for key in keys:
        schedule_resume(app, item_queue, partitions, key)
    return len(keys)
