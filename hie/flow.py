"""Flow control: tasks waiting on the broker, and a circuit breaker and throttle for peers.

``QueueDepth`` reads how many tasks wait in a queue from the broker itself (Redis: the lengths of
a queue's priority lists; RabbitMQ: a passive declare), the one place that does. A task may carry
several messages, so backpressure, status, metrics and the viewer count messages waiting in the
store instead (``MessageStore.waiting``); this is for whoever needs to know whether anything is
still on the broker (the recovery sweeper, a graceful stop, the drainer).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from kombu.connection import Connection

#: Redis priority steps of a queue (``celeryconfig``: ten, 0 served first).
_REDIS_STEPS = range(10)


def redis_lists(queue: str) -> list[str]:
    """The Redis lists kombu keeps for ``queue``, in the order it serves them: ``<queue>`` for
    step 0, ``<queue>:<step>`` for the others."""
    return [queue if step == 0 else f"{queue}:{step}" for step in _REDIS_STEPS]


class QueueDepth:
    """Reads (and caches) how many tasks wait in a queue.

    ``timeout``: seconds to wait for the broker, to connect and for each answer.
    """

    def __init__(self, broker_url: str, *, ttl: float = 0.2, timeout: float = 5.0) -> None:
        self.broker_url = broker_url
        self.ttl = ttl
        self.timeout = timeout
        self._redis = broker_url.startswith(("redis://", "rediss://"))
        self._cache: dict[str, tuple[float, int]] = {}
        self._local = threading.local()

    def client(self) -> Any:
        """This thread's broker client (a ``redis.Redis``, or a kombu connection)."""
        client = getattr(self._local, "client", None)
        if client is None:
            if self._redis:
                client = redis.Redis.from_url(
                    self.broker_url,
                    socket_timeout=self.timeout,
                    socket_connect_timeout=self.timeout,
                )
            else:
                client = Connection(self.broker_url, connect_timeout=self.timeout)  # type: ignore[no-untyped-call]
            self._local.client = client
        return client

    def close(self) -> None:
        """Close this thread's broker client (the next read opens a new one)."""
        client = getattr(self._local, "client", None)
        if client is not None:
            client.close()
            self._local.client = None

    def read_lists(self, queue: str) -> list[int]:
        """Redis only: the length of each of ``queue``'s lists (``redis_lists``), one round trip."""
        pipe = self.client().pipeline()
        for name in redis_lists(queue):
            pipe.llen(name)
        return [int(n) for n in pipe.execute()]

    def read(self, queue: str) -> int:
        """The depth now, from the broker (no cache)."""
        client = self.client()
        if self._redis:
            return sum(self.read_lists(queue))
        try:
            _, count, _ = client.default_channel.queue_declare(queue=queue, passive=True)
            return int(count)
        except Exception:
            client.close()
            self._local.client = None
            return 0

    def read_many(self, queues: Sequence[str]) -> dict[str, int]:
        """The depth of each of ``queues`` now (0 for one that does not exist yet); on Redis in
        one round trip."""
        if not self._redis:
            return {q: self.read(q) for q in queues}
        if not queues:
            return {}
        pipe = self.client().pipeline()
        for queue in queues:
            for name in redis_lists(queue):
                pipe.llen(name)
        lengths = [int(n) for n in pipe.execute()]
        step = len(_REDIS_STEPS)
        return {q: sum(lengths[i * step : (i + 1) * step]) for i, q in enumerate(queues)}

    def depth(self, queue: str) -> int:
        """The depth, at most ``ttl`` seconds old."""
        now = time.monotonic()
        cached = self._cache.get(queue)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        value = self.read(queue)
        self._cache[queue] = (now, value)
        return value

    def added(self, queue: str, count: int = 1) -> None:
        """Count tasks this process just queued into the cached depth (until the next read)."""
        cached = self._cache.get(queue)
        if cached is not None:
            self._cache[queue] = (cached[0], cached[1] + count)


@dataclass
class CircuitBreaker:
    """Stops calling a dead peer: open after ``threshold`` failures in a row, probe after ``reset``.

    Closed: calls go through. Open: no call until ``reset`` seconds passed. Half-open: one probe
    call; success closes the circuit, failure opens it again. One breaker per worker process.
    """

    threshold: int
    reset: float
    failures: int = 0
    opened_at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state(self) -> str:
        """closed, open or half-open."""
        if self.opened_at is None:
            return "closed"
        return "half-open" if time.monotonic() - self.opened_at >= self.reset else "open"

    def wait_time(self) -> float:
        """Seconds until a call may be tried (0: now)."""
        with self._lock:
            if self.opened_at is None:
                return 0.0
            left = self.reset - (time.monotonic() - self.opened_at)
            if left <= 0:
                # Half-open: let this one probe through, hold the others for another period.
                self.opened_at = time.monotonic()
                return 0.0
            return left

    def success(self) -> None:
        """A call succeeded: close the circuit."""
        with self._lock:
            self.failures = 0
            self.opened_at = None

    def failure(self) -> None:
        """A call failed: count it, and open the circuit at the threshold."""
        with self._lock:
            self.failures += 1
            if self.failures >= self.threshold:
                self.opened_at = time.monotonic()


@dataclass
class Throttle:
    """At most one message per ``delay`` seconds in this process (IRIS ThrottleDelay)."""

    delay: float
    _next: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait(self) -> None:
        """Sleep until this process may send the next message."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.delay
        if start > now:
            time.sleep(start - now)
