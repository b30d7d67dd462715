"""kombu's Redis transport, with one Redis client per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` object for nearly every command it sends: each
publish, each message a worker takes and each acknowledgement. The connections come from one pool
either way; what is new each time is the client object, and redis-py's constructor fills a table
of some 170 response callbacks, which cost about 0.15 ms. A worker makes several per task. This
channel keeps the client (for its pool) and hands it out again; the connection pool, the commands
and everything else are kombu's own. Celery uses it through ``broker_transport`` when the broker is
Redis (``celeryconfig.build``).
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    """A Redis channel that reuses its synchronous client (see the module docstring)."""

    _sync_client: tuple[Any, Any] | None = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:
            return super()._create_client(asynchronous=True)  # type: ignore[no-untyped-call]
        pool = self.pool
        cached = self._sync_client
        # A new pool (after a reconnect) gets a new client: the old one would use the old pool.
        if cached is None or cached[0] is not pool:
            cached = self._sync_client = (pool, super()._create_client())  # type: ignore[no-untyped-call]
        return cached[1]


class Transport(redis.Transport):
    """kombu's Redis transport with ``Channel`` above."""

    Channel = Channel
