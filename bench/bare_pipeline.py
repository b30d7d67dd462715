"""B3: the lean bare Celery pipeline with HIE's hop count: publish -> hop1 -> hop2 -> MLLP sink.

No store, no hooks, no envelope: hop1 only forwards, hop2 only sends the message over MLLP to the
sink and waits for its ACK. It is the leanest Celery with HIE's reliability, so the ratio HIE / B3
does not flatter HIE:

* the same reliability: acks_late, reject_on_worker_lost, prefetch 1, json, prefork 2 per hop;
* nothing HIE would not need either: no results kept (``task_ignore_result``), no task events
  (workers run without ``-E``), one priority level (one Redis list per queue, not ten);
* like HIE's router in ``bench/e2e.py``, hop1 waits while hop2's queue is at the bench's limit.

``bench/batching.py`` adds tasks that carry several messages each to the same app. The benches
start the workers with::

    BENCH_B3=<name> BENCH_SINK_PORT=<port> celery -A bench.bare_pipeline worker -Q <queue> \
        -P prefork -c 2 --without-gossip --without-mingle --without-heartbeat
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from celery import Celery

from hie.flow import QueueDepth
from hie.settings import Settings

SB, EB = b"\x0b", b"\x1c\r"


def lean_config(settings: Settings) -> dict[str, Any]:
    """Celery settings of the lean pipeline (see the module docstring)."""
    timeouts = {
        "socket_timeout": settings.broker_socket_timeout,
        "socket_connect_timeout": settings.broker_socket_timeout,
    }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": {
            "priority_steps": [0],
            "visibility_timeout": settings.visibility_timeout,
            **timeouts,
        },
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


app = Celery("bench_b3")
app.conf.update(lean_config(Settings()))
_local = threading.local()
_depths = QueueDepth(app.conf.broker_url)


def queues() -> tuple[str, str]:
    """The two hop queues of this B3 instance (named by ``BENCH_B3``)."""
    name = os.environ.get("BENCH_B3", "b3")
    return f"bench.{name}.hop1", f"bench.{name}.hop2"


def _limit() -> int:
    return int(os.environ.get("BENCH_LIMIT", "0"))


def wait_for_room(queue: str, limit: int) -> None:
    """Block while ``queue`` holds ``limit`` tasks (one message each here, so tasks = messages)."""
    if not limit:
        return
    delay = 0.01
    while _depths.depth(queue) >= limit:
        time.sleep(delay)
        delay = min(delay * 2, _depths.ttl)
    _depths.added(queue)


@app.task(name="bench.b3.hop1")  # type: ignore[misc]
def hop1(body: str) -> None:
    """Forward to hop2 (waiting for room in its queue, as HIE's router does)."""
    _, q2 = queues()
    wait_for_room(q2, _limit())
    hop2.apply_async((body,), queue=q2)


def _connection() -> socket.socket:
    sock: socket.socket | None = getattr(_local, "sock", None)
    if sock is None:
        port = int(os.environ["BENCH_SINK_PORT"])
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        _local.sock = sock
    return sock


def deliver(body: str) -> None:
    """Send one message over MLLP to the sink and wait for its ACK (one connection per process)."""
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


@app.task(name="bench.b3.hop2")  # type: ignore[misc]
def hop2(body: str) -> None:
    """Send over MLLP to the sink and wait for its ACK."""
    deliver(body)
