"""One consumer per ordered queue: a lease in Redis that the consuming worker renews.

A FIFO item's queue, and each sub-queue of an item ordered by key, keeps its order only while one
worker consumes it: a second one (another ``hie worker`` for the same item, a ``--scale`` in
compose, a host started twice) would take the next message while the first is still on its
predecessor. So the worker of an ordered queue holds a lease (a ``redis-py`` lock with an expiry,
its value naming the holder) before it consumes, and renews it every ``RENEW`` seconds from a
thread of its own. A worker that finds the lease held waits up to one expiry, so that the lease
of a worker killed with SIGKILL runs out and its replacement takes over, then gives up with a
message naming the holder. A worker that loses its lease (paused longer than the expiry, its
Redis gone) stops consuming at once: another may have it now.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid

import redis
from redis.exceptions import LockError

log = logging.getLogger(__name__)

#: Seconds a lease lasts without renewal: how long a killed worker's queue waits for its heir.
TTL = 10.0
#: Seconds between renewals.
RENEW = 2.0


class LeaseHeld(Exception):
    """Another worker consumes the ordered queue (its holder is in the message)."""


class ConsumerLease:
    """The lease on ordered queue ``queue``, in the Redis at ``url``."""

    def __init__(self, url: str, queue: str, *, ttl: float = TTL, renew: float = RENEW) -> None:
        self.queue = queue
        self.name = f"hie-consumer:{queue}"
        self.ttl, self.renew = ttl, renew
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        self.lock = self.client.lock(self.name, timeout=ttl, thread_local=False)
        self.token = f"{socket.gethostname()} pid {os.getpid()} ({uuid.uuid4().hex[:8]})"
        self._stop = threading.Event()

    def holder(self) -> str | None:
        """Who holds the lease now (None: nobody)."""
        value = self.client.get(self.name)
        if value is None:
            return None
        return value.decode(errors="replace") if isinstance(value, bytes) else str(value)

    def acquire(self, wait: float | None = None) -> None:
        """Take the lease, waiting up to ``wait`` seconds (default: one expiry) for it.

        Raises:
            LeaseHeld: another worker still holds it.
        """
        wait = self.ttl + self.renew if wait is None else wait
        deadline = time.monotonic() + wait
        announced = False
        while not self.lock.acquire(blocking=False, token=self.token):
            holder = self.holder()
            if time.monotonic() >= deadline:
                raise LeaseHeld(
                    f"queue {self.queue} keeps its order with one consumer, and {holder} "
                    "consumes it: a second worker would break the order, so this one exits"
                )
            if not announced:
                log.warning(
                    "queue %s is held by %s; waiting up to %.0f s", self.queue, holder, wait
                )
                announced = True
            time.sleep(0.5)
        threading.Thread(target=self._keep, name="hie-lease", daemon=True).start()
        log.info("consuming ordered queue %s as %s", self.queue, self.token)

    def _keep(self) -> None:
        while not self._stop.wait(self.renew):
            try:
                self.lock.reacquire()
            except LockError:
                log.critical("lost the lease on ordered queue %s; stopping", self.queue)
                os.kill(os.getpid(), signal.SIGTERM)
                return
            except redis.RedisError as exc:  # retried at the next renewal, within the expiry
                log.warning("cannot renew the lease on %s: %s", self.queue, exc)

    def release(self) -> None:
        """Give the lease up (the worker stops consuming)."""
        self._stop.set()
        try:
            self.lock.release()
        except (LockError, redis.RedisError):
            pass  # expired or taken over already: nothing of ours to release
