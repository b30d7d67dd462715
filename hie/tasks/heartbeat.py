"""Heartbeat: messages a worker is running keep looking alive to the recovery sweeper.

The sweeper takes a message whose row has not changed for ``stale_after`` seconds for a lost one
and publishes it again. An attempt can outlast that without being lost: an operation waiting out
its peer's ``response_timeout``, a FIFO item retrying a message in place, a batch held back by a
full target. So every worker process touches the rows of the messages it is running (their
``updated_at``) every ``INTERVAL`` seconds, in one statement, from a thread of its own: a message
stops looking alive only when the process running it is gone.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hie.store import MessageStore

log = logging.getLogger(__name__)

#: Seconds between touches (``HIE_HEARTBEAT_INTERVAL``): well under the sweeper's default
#: ``stale_after`` (60 s).
INTERVAL = 10.0


class Heartbeat:
    """The messages this process is running, touched every ``interval`` seconds."""

    def __init__(self, store: MessageStore, interval: float = INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._running: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    @contextmanager
    def running(self, message_ids: Iterable[str]) -> Iterator[None]:
        """While inside, ``message_ids`` are touched every ``interval`` seconds."""
        ids = list(message_ids)
        with self._lock:
            self._running.update(ids)
            self._start()
        try:
            yield
        finally:
            with self._lock:
                self._running.subtract(ids)
                self._running = +self._running  # drop the ones at zero

    def _start(self) -> None:
        # One thread per process: a prefork child does not inherit its parent's thread.
        if self._pid != os.getpid():
            self._pid = os.getpid()
            threading.Thread(target=self._beat, name="hie-heartbeat", daemon=True).start()

    def _beat(self) -> None:
        while not self._wake.wait(self.interval):
            with self._lock:
                ids = sorted(self._running)
            if not ids:
                continue
            try:
                self.store.record_hops([], running=ids)
            except Exception as exc:  # the store is away: the next beat tries again
                log.warning("cannot touch %d running message(s): %s", len(ids), exc)
