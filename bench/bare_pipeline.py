"""B3: a bare Celery pipeline with HIE's hop count: publish -> hop1 -> hop2 -> MLLP sink.

No store, no hooks, no envelope: hop1 only forwards, hop2 only sends the message over MLLP to the
sink and waits for its ACK. Same broker settings as HIE (``celeryconfig.build``: acks_late,
prefetch 1, json) and, like HIE's router in ``bench/e2e.py``, hop1 waits while hop2's queue is at
the bench's limit. The bench starts its workers with::

    BENCH_B3=<name> BENCH_SINK_PORT=<port> celery -A bench.bare_pipeline worker -Q <queue> ...
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Any

from celery import Celery

import celeryconfig
from hie.flow import QueueDepth
from hie.settings import Settings

SB, EB = b"\x0b", b"\x1c\r"

app = Celery("bench_b3")
app.conf.update(celeryconfig.build(Settings()))
_local = threading.local()
_depths = QueueDepth(app.conf.broker_url)


def queues() -> tuple[str, str]:
    """The two hop queues of this B3 instance (named by ``BENCH_B3``)."""
    name = os.environ.get("BENCH_B3", "b3")
    return f"bench.{name}.hop1", f"bench.{name}.hop2"


def _limit() -> int:
    return int(os.environ.get("BENCH_LIMIT", "0"))


@app.task(name="bench.b3.hop1", bind=True)  # type: ignore[misc]
def hop1(self: Any, body: str) -> None:
    """Forward to hop2 (waiting for room in its queue, as HIE's router does)."""
    _, q2 = queues()
    if _limit():
        _depths.wait_for_room(q2, _limit())
        _depths.added(q2)
    # Known task ids, so the bench can delete this run's results from a shared Redis.
    hop2.apply_async((body,), queue=q2, task_id=f"{self.request.id}-2")


def _connection() -> socket.socket:
    sock: socket.socket | None = getattr(_local, "sock", None)
    if sock is None:
        port = int(os.environ["BENCH_SINK_PORT"])
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        _local.sock = sock
    return sock


@app.task(name="bench.b3.hop2")  # type: ignore[misc]
def hop2(body: str) -> None:
    """Send over MLLP to the sink and wait for its ACK (one kept connection per process)."""
    sock = _connection()
    try:
        sock.sendall(SB + body.encode() + EB)
        data = b""
        while not data.endswith(EB):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("sink closed the connection")
            data += chunk
    except OSError:
        _local.sock = None
        sock.close()
        raise
