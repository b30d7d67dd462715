"""What batching is worth on bare Celery, and which way of batching: measured in the same run.

Three ways to move many messages through the lean two-hop pipeline of ``bench/bare_pipeline.py``
(publish -> hop1 -> hop2 -> MLLP sink; acks_late, prefetch 1, prefork 2 per hop, no results, no
events, one priority level), alternating, ``--rounds`` times, medians reported:

* ``single``: one message per task (B3);
* ``packed``: tasks that carry ``--size`` messages each (the publisher packs what it has at hand;
  the sink still gets and ACKs every message on its own);
* ``prefetch``: one message per task, workers reserving ``--size`` tasks at once
  (``worker_prefetch_multiplier``): a consumer that drains several messages;
* ``celery-batches``: one message per task, gathered by the worker into lists of up to ``--size``
  (the ``celery-batches`` package, ``flush_interval`` ``--flush-interval``); skipped, saying so,
  when the package is not installed (``pip install celery-batches``).

Each run publishes ``--messages`` messages as fast as it can into hop1's queue and times the
first to the last arrival at the sink, so the figure is the pipeline's rate, not the publisher's.
CPU is utime+stime of each variant's worker processes (pool children included) per message.

    .venv/bin/python bench/batching.py [--messages 3000] [--size 16] [--rounds 3]

Worker processes load this module (``celery -A bench.batching``); the extra tasks live here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bare_pipeline import app, deliver, queues

try:  # optional: only the celery-batches variant needs it
    from celery_batches import Batches
except ImportError:  # pragma: no cover - depends on what is installed
    Batches = None

if os.environ.get("BENCH_PREFETCH"):
    app.conf.worker_prefetch_multiplier = int(os.environ["BENCH_PREFETCH"])


@app.task(name="bench.b3.hop1_many")  # type: ignore[misc]
def hop1_many(bodies: list[str]) -> None:
    """hop1 for a task that carries several messages: one task on to hop2 for all of them."""
    hop2_many.apply_async((bodies,), queue=queues()[1])


@app.task(name="bench.b3.hop2_many")  # type: ignore[misc]
def hop2_many(bodies: list[str]) -> None:
    """hop2 for several messages: the sink still gets and ACKs them one by one."""
    for body in bodies:
        deliver(body)


if Batches is not None:
    BATCHES = {
        "base": Batches,
        "flush_every": int(os.environ.get("BENCH_SIZE", "16")),
        "flush_interval": float(os.environ.get("BENCH_FLUSH_INTERVAL", "0.01")),
    }

    @app.task(name="bench.b3.hop1_cb", **BATCHES)  # type: ignore[misc]
    def hop1_cb(requests: list[Any]) -> None:
        """celery-batches hop1: forward every buffered message, one task each, one producer."""
        with app.producer_or_acquire() as producer:
            for request in requests:
                hop2_cb.apply_async(request.args, queue=queues()[1], producer=producer)

    @app.task(name="bench.b3.hop2_cb", **BATCHES)  # type: ignore[misc]
    def hop2_cb(requests: list[Any]) -> None:
        """celery-batches hop2: deliver every buffered message."""
        for request in requests:
            deliver(request.args[0])


VARIANTS = {
    "single": ("bench.b3.hop1", "bench.b3.hop2"),
    "packed": ("bench.b3.hop1_many", "bench.b3.hop2_many"),
    "prefetch": ("bench.b3.hop1", "bench.b3.hop2"),
    "celery-batches": ("bench.b3.hop1_cb", "bench.b3.hop2_cb"),
}


class Run:
    """Owns the sink, the workers of every variant and their Redis keys."""

    def __init__(self, args: argparse.Namespace) -> None:
        import parts

        self.parts = parts
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hie-batching-"))
        self.tag = uuid.uuid4().hex[:8]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.roots: dict[str, list[int]] = {}
        self.sink_log = self.tmp / "sink.txt"
        self.variants = [v for v in VARIANTS if v != "celery-batches" or Batches is not None]
        if Batches is None:
            print("celery-batches is not installed (pip install celery-batches): variant skipped")

    def name(self, variant: str) -> str:
        return f"{self.tag}{variant.replace('-', '')}"

    def start(self) -> None:
        parts = self.parts
        self.sink_port = parts.free_port()
        self.procs.append(
            parts.spawn(
                parts.role("sink", "--port", str(self.sink_port), "--log", str(self.sink_log)),
                self.tmp / "sink.log",
                parts.bench_env(),
            )
        )
        parts.wait_port(self.sink_port)
        for variant in self.variants:
            env = parts.bench_env(
                BENCH_B3=self.name(variant),
                BENCH_SINK_PORT=str(self.sink_port),
                BENCH_SIZE=str(self.args.size),
                BENCH_FLUSH_INTERVAL=str(self.args.flush_interval),
            )
            if variant == "prefetch":
                env["BENCH_PREFETCH"] = str(self.args.size)
            elif variant == "celery-batches":
                # The buffer only fills if the worker may reserve that many messages.
                env["BENCH_PREFETCH"] = str(self.args.size * 2)
            for hop, queue in zip(("hop1", "hop2"), self._queues(variant), strict=True):
                argv = [
                    parts.PYTHON, "-m", "celery", "-A", "bench.batching", "worker",
                    "-Q", queue, "-P", "prefork", "-c", "2", "-n", f"{hop}.{self.name(variant)}@%h",
                    "--without-gossip", "--without-mingle", "--without-heartbeat",
                    "--loglevel", "WARNING",
                ]  # fmt: skip
                log = self.tmp / f"{variant}-{hop}.log"
                proc = parts.spawn(argv, log, env)
                self.procs.append(proc)
                self.roots.setdefault(variant, []).append(proc.pid)
        time.sleep(self.args.settle)

    def _queues(self, variant: str) -> tuple[str, str]:
        name = self.name(variant)
        return f"bench.{name}.hop1", f"bench.{name}.hop2"

    def measure(self, variant: str, rnd: int) -> tuple[float, float]:
        """(messages/s first to last arrival, worker CPU ms per message) of one burst."""
        parts = self.parts
        prefix = f"R{rnd}{variant[:2]}{uuid.uuid4().hex[:4]}x"
        count, size = self.args.messages, self.args.size
        bodies = [parts.adt(f"{prefix}{n:07d}").decode() for n in range(count)]
        groups = parts.ProcessGroups({variant: self.roots[variant]})
        groups.begin()
        first_hop, _ = VARIANTS[variant]
        q1, _ = self._queues(variant)
        os.environ["BENCH_B3"] = self.name(variant)
        with app.producer_or_acquire() as producer, producer.batch(max_size=500):
            if variant == "packed":
                for start in range(0, count, size):
                    app.send_task(
                        first_hop, (bodies[start : start + size],), queue=q1, producer=producer
                    )
            else:
                for body in bodies:
                    app.send_task(first_hop, (body,), queue=q1, producer=producer)
        deadline = time.monotonic() + self.args.timeout
        while True:
            arrived = parts.read_sink_log(self.sink_log, prefix)
            if len(arrived) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        cpu = groups.end()[variant]["cpu"]
        times = sorted(t[0] for t in arrived.values())
        if len(times) < count:
            print(f"  warning: {variant}: {len(times)} of {count} arrived")
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
        return rate, cpu * 1000 / max(len(times), 1)

    def close(self) -> None:
        self.parts.stop(self.procs)
        import redis

        client = redis.Redis.from_url(app.conf.broker_url)
        keys = list(client.scan_iter(match=f"*{self.tag}*", count=1000))
        if keys:
            client.delete(*keys)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> None:
    """Run every variant ``--rounds`` times, alternating; print medians and ratios to single."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--messages", type=int, default=3000, help="messages per run")
    p.add_argument("--size", type=int, default=16, help="messages per task / batch / prefetch")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--flush-interval", type=float, default=0.01, help="celery-batches timer (s)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a burst")
    p.add_argument("--settle", type=float, default=8.0, help="seconds for workers to start")
    args = p.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import parts

    print(f"machine: {parts.machine()}; load average {os.getloadavg()}", flush=True)
    run = Run(args)
    results: dict[str, list[tuple[float, float]]] = {v: [] for v in run.variants}
    try:
        run.start()
        for rnd in range(args.rounds):
            for variant in run.variants:
                rate, cpu = run.measure(variant, rnd)
                results[variant].append((rate, cpu))
                print(f"[{rnd}] {variant:15} {rate:8.0f} msg/s  {cpu:6.2f} CPU ms/msg", flush=True)
    finally:
        run.close()
    single = statistics.median(r for r, _ in results["single"]) if results["single"] else 0
    print(f"\nmedians of {args.rounds} rounds, {args.messages} messages, size {args.size}:")
    for variant, values in results.items():
        if not values:
            continue
        rate = statistics.median(r for r, _ in values)
        cpu = statistics.median(c for _, c in values)
        ratio = rate / single if single else float("nan")
        print(f"  {variant:15} {rate:8.0f} msg/s  x{ratio:5.2f}  {cpu:6.2f} CPU ms/msg")
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
