"""Failure drills on a running production: what was ACKed must reach the sink, whatever breaks.

The production (In -> Router -> Out over MLLP to a sink) runs under its manager
(``hie start --detach``: a killed process is restarted), next to ``hie recover`` (the sweeper,
its own process, short ``--stale-after``), on a PRIVATE redis-server started on a free port (so a
flush or a restart touches nobody else's queues) and a SQLite store in a temporary folder.
Senders are real MLLP clients that send again whatever was not ACKed AA, as MLLP senders do.

Drills, each with its own messages: SIGKILL of a worker of each item (twice), broker FLUSHALL,
broker restart, downstream peer down for 10 s, gateway SIGKILL, and 2x overload for 60 s.
Each prints sent / ACKed / delivered / lost / delivered twice. Exit status 1 if anything ACKed
was lost.

    .venv/bin/python bench/faults.py [--rate 20] [--seconds 20] [--only kill-router,overload]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import parts
import redis

HIE = parts.HIE


@dataclass
class DrillResult:
    """The counts of one drill."""

    name: str
    sent: int
    acked: int
    delivered: int
    lost: int
    twice: int
    resends: int
    seconds: float
    #: Deliveries per second between the first and the last arrival at the sink.
    delivery_rate: float = 0.0

    def line(self) -> str:
        """One printable line."""
        return (
            f"{self.name:16} sent={self.sent:5} acked={self.acked:5} delivered={self.delivered:5} "
            f"lost={self.lost:3} delivered_twice={self.twice:3} resends={self.resends:4} "
            f"{self.seconds:5.1f} s"
        )


class Rig:
    """The production, its sink, sweeper and private broker; one per drill run."""

    def __init__(self, args: argparse.Namespace) -> None:
        from hie.broker import start_embedded_redis

        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hie-drills-"))
        self.name = f"drill{uuid.uuid4().hex[:8]}"
        self.redis_port = parts.free_port()
        self.redis_home = self.tmp / "broker"
        start_embedded_redis(self.redis_home, "127.0.0.1", self.redis_port)
        self.broker = f"redis://127.0.0.1:{self.redis_port}/0"
        self.env = parts.bench_env(
            HIE_BROKER_URL=self.broker,
            HIE_RESULT_BACKEND=self.broker,
            HIE_DATABASE_URL=f"sqlite:///{self.tmp / 'hie.db'}",
            HIE_HOME=str(self.tmp / "home"),
            HIE_LOG_LEVEL="WARNING",
        )
        self.port, self.sink_port = parts.free_port(), parts.free_port()
        self.sink_log = self.tmp / "sink.txt"
        self.sink: subprocess.Popen[bytes] | None = None
        self.others: list[subprocess.Popen[bytes]] = []
        self.path = self._write()

    def _write(self) -> Path:
        op = {
            "host": "127.0.0.1",
            "port": self.sink_port,
            "retry_interval": 0.5,
            "failure_timeout": -1,
            "connect_timeout": 1,
            "response_timeout": 5,
        }
        return parts.write_production(
            self.tmp / "production.yaml",
            self.name,
            router="Drill.Router",
            port=self.port,
            router_size=2,
            operation=op,
            queue_limit=self.args.queue_limit,
        )

    def start(self) -> None:
        """Sink, production (manager, detached) and sweeper."""
        self.start_sink()
        parts.start_production(self.path, self.env)
        parts.wait_port(self.port)
        sweeper = [
            *HIE,
            "recover",
            str(self.path),
            "--stale-after",
            str(self.args.stale_after),
            "--interval",
            "1",
        ]
        self.others.append(parts.spawn(sweeper, self.tmp / "recover.log", self.env))

    def start_sink(self) -> None:
        """The downstream MLLP peer (appends to one log across restarts)."""
        argv = parts.role("sink", "--port", str(self.sink_port), "--log", str(self.sink_log))
        self.sink = parts.spawn(argv, self.tmp / "sink.log", self.env)
        parts.wait_port(self.sink_port)

    def stop_sink(self) -> None:
        """Take the downstream peer away."""
        assert self.sink is not None
        os.killpg(self.sink.pid, signal.SIGTERM)
        self.sink.wait(10)

    def units(self) -> dict[str, int]:
        """Current pids of the manager's units: gateway, Router, Out."""
        manager = int((self.tmp / "home" / "run" / self.name / "manager.pid").read_text())
        kids = parts._children_map()
        out: dict[str, int] = {}
        for pid in kids.get(manager, []):
            line = parts.cmdline(pid)
            if "hie.cli gateway" in line:
                out["gateway"] = pid
            elif line.endswith(" Router"):
                out["Router"] = pid
            elif line.endswith(" Out"):
                out["Out"] = pid
        return out

    def memory(self) -> dict[str, float]:
        """Resident MB per unit (with pool children) and of the broker."""
        kids = parts._children_map()
        out = {
            u: sum(parts.memory_kb(p)[1] for p in parts.tree(pid, kids)) / 1024
            for u, pid in self.units().items()
        }
        pid = int((self.redis_home / "redis" / "redis.pid").read_text())
        out["broker"] = parts.memory_kb(pid)[1] / 1024
        return out

    def close(self) -> None:
        """Stop everything and remove the private broker and the temporary folder."""
        from hie.broker import stop_embedded_redis

        parts.stop_production(self.path, self.env, drain_timeout=2, timeout=120)
        for proc in [*self.others, *([self.sink] if self.sink else [])]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(20)
        stop_embedded_redis(self.redis_home)
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants at once (no chance to ack or requeue)."""
    for p in parts.tree(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def drill(
    rig: Rig,
    name: str,
    actions: list[tuple[float, Callable[[], None]]],
    *,
    rate: float | None = None,
    seconds: float | None = None,
    connections: int = 4,
) -> DrillResult:
    """Send for ``seconds`` at ``rate`` while ``actions`` run at their times; count at the sink."""
    a = rig.args
    rate, seconds = rate or a.rate, seconds or a.seconds
    prefix = f"{name.replace('-', '')[:6]}{uuid.uuid4().hex[:3]}x"
    out = rig.tmp / f"{prefix}.json"
    argv = parts.role(
        "load",
        "--port",
        str(rig.port),
        "--out",
        str(out),
        "--rate",
        str(rate),
        "--duration",
        str(seconds),
        "--prefix",
        prefix,
        "--resend",
        "--connections",
        str(connections),
        "--resend-grace",
        "90",
        "--ack-timeout",
        "10",
    )
    started = time.monotonic()
    load = parts.spawn(argv, rig.tmp / "load.log", rig.env)
    for at, action in sorted(actions, key=lambda x: x[0]):
        time.sleep(max(0.0, started + at - time.monotonic()))
        action()
    load.wait(seconds + 200)
    data = json.loads(out.read_text())
    acked = {c for c, _, _, code in data["records"] if code in ("AA", "CA")}
    deadline = time.monotonic() + a.drain_timeout
    while True:
        arrived = parts.read_sink_log(rig.sink_log, prefix)
        if acked <= arrived.keys() or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    firsts = sorted(t[0] for t in arrived.values())
    span = firsts[-1] - firsts[0] if len(firsts) > 1 else 0.0
    result = DrillResult(
        name,
        len(data["records"]),
        len(acked),
        len(arrived),
        len(acked - arrived.keys()),
        sum(1 for t in arrived.values() if len(t) > 1),
        data["resends"],
        time.monotonic() - started,
        (len(firsts) - 1) / span if span else 0.0,
    )
    print(result.line(), flush=True)
    return result


def kill_unit(rig: Rig, unit: str) -> Callable[[], None]:
    """An action: SIGKILL the unit's process and its pool children (the manager restarts it)."""

    def act() -> None:
        pid = rig.units().get(unit)
        if pid is None:
            print(f"  ({unit} not running at the time; no kill)")
            return
        kill_tree(pid)

    return act


def flush(rig: Rig) -> None:
    """FLUSHALL on the private broker: every queue, unacked task and result gone."""
    redis.Redis.from_url(rig.broker).flushall()


def restart_broker(rig: Rig) -> None:
    """Stop the private redis-server (SIGTERM), wait 2 s, start it again on the same port."""
    from hie.broker import start_embedded_redis, stop_embedded_redis

    pid = int((rig.redis_home / "redis" / "redis.pid").read_text())
    stop_embedded_redis(rig.redis_home)
    while Path(f"/proc/{pid}").exists():
        time.sleep(0.05)
    time.sleep(2.0)
    start_embedded_redis(rig.redis_home, "127.0.0.1", rig.redis_port)


def peer_down(rig: Rig, seconds: float = 10.0) -> Callable[[], None]:
    """An action: the downstream peer goes away for ``seconds``."""

    def act() -> None:
        rig.stop_sink()
        time.sleep(seconds)
        rig.start_sink()

    return act


def overload(rig: Rig) -> tuple[DrillResult, dict[str, Any]]:
    """Max throughput (15 s), then 2x that offered for 60 s: goodput, queue depth, memory.

    Queue depth is counted in messages waiting for each item (the store's count, what
    backpressure compares with ``max_queue_depth``), not in tasks on the broker.
    """
    from hie.store import MessageStore

    maxrun = drill(rig, "max-throughput", [], rate=100_000, seconds=15)
    max_rate = maxrun.delivery_rate
    store = MessageStore(f"sqlite:///{rig.tmp / 'hie.db'}")
    peaks: dict[str, float] = {}
    deepest = {"Router": 0, "Out": 0}
    delivered_before = len(parts.read_sink_log(rig.sink_log))
    samples: list[tuple[float, int]] = []

    def sample() -> None:
        for item, waiting in store.waiting(list(deepest)).items():
            deepest[item] = max(deepest[item], waiting)
        for unit, mb in rig.memory().items():
            peaks[unit] = max(peaks.get(unit, 0.0), mb)
        samples.append((time.monotonic(), len(parts.read_sink_log(rig.sink_log))))

    seconds = rig.args.overload_seconds
    actions = [(t / 2, sample) for t in range(1, int(seconds * 2))]
    result = drill(rig, "overload-2x", actions, rate=2 * max_rate, seconds=seconds, connections=8)
    inside = [s for s in samples if s[0] - samples[0][0] >= 5] or samples
    goodput = (inside[-1][1] - inside[0][1]) / max(inside[-1][0] - inside[0][0], 1e-9)
    figures = {
        "max_delivered_per_s": max_rate,
        "offered_per_s": 2 * max_rate,
        "goodput_per_s": goodput,
        "goodput_over_max": goodput / max_rate if max_rate else float("nan"),
        "deepest_queue": deepest,
        "queue_limit": rig.args.queue_limit,
        "peak_rss_mb": peaks,
        "delivered_before": delivered_before,
    }
    print(f"  overload: {json.dumps(figures)}", flush=True)
    return result, figures


DRILLS = [
    "kill-router",
    "kill-operation",
    "broker-flush",
    "broker-restart",
    "peer-down",
    "kill-gateway",
    "overload",
]


def run(rig: Rig, only: list[str]) -> tuple[list[DrillResult], dict[str, Any]]:
    """Every drill in ``only``, in order, on one running production."""
    s = rig.args.seconds
    plan: dict[str, list[tuple[float, Callable[[], None]]]] = {
        "kill-router": [(s * 0.3, kill_unit(rig, "Router")), (s * 0.6, kill_unit(rig, "Router"))],
        "kill-operation": [(s * 0.3, kill_unit(rig, "Out")), (s * 0.6, kill_unit(rig, "Out"))],
        "broker-flush": [(s * 0.4, lambda: flush(rig))],
        "broker-restart": [(s * 0.4, lambda: restart_broker(rig))],
        "peer-down": [(s * 0.25, peer_down(rig))],
        "kill-gateway": [(s * 0.4, kill_unit(rig, "gateway"))],
    }
    results, extra = [], {}
    for name in only:
        if name == "overload":
            result, extra = overload(rig)
        else:
            result = drill(rig, name, plan[name])
        results.append(result)
    return results, extra


def main() -> int:
    """Run the drills (see the module docstring); 1 when anything ACKed was lost."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rate", type=float, default=20.0, help="messages/s sent during a drill")
    p.add_argument("--seconds", type=float, default=20.0, help="seconds of sending per drill")
    p.add_argument("--overload-seconds", type=float, default=60.0)
    p.add_argument("--stale-after", type=float, default=5.0, help="the sweeper's stale_after")
    p.add_argument("--queue-limit", type=int, default=200, help="max_queue_depth of each item")
    p.add_argument("--drain-timeout", type=float, default=120.0)
    p.add_argument("--only", default=",".join(DRILLS), help=f"comma-separated: {DRILLS}")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args()
    print(f"machine: {parts.machine()}; load average {os.getloadavg()}", flush=True)
    print(f"args: {vars(args)}", flush=True)
    rig = Rig(args)
    results: list[DrillResult] = []
    extra: dict[str, Any] = {}
    try:
        rig.start()
        results, extra = run(rig, [d.strip() for d in args.only.split(",") if d.strip()])
    finally:
        rig.close()
        out = parts.ROOT / "var" / "bench" / f"drills-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(
            json.dumps(
                {
                    "drills": [r.__dict__ for r in results],
                    "overload": extra,
                    "machine": parts.machine(),
                    "args": vars(args),
                },
                indent=2,
            )
        )
        print(f"figures in {out}")
    lost = [r for r in results if r.lost]
    if lost:
        print(f"FAILED: ACKed messages lost in {', '.join(r.name for r in lost)}", file=sys.stderr)
        return 1
    print(f"every drill: 0 ACKed messages lost ({len(results)} drills)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(parts.ROOT))
    sys.exit(main())
