"""End to end: MLLP senders -> gateway -> router -> MLLP operation -> sink, against baselines.

HIE runs as a real production (``hie start --detach``: gateway, router and operation workers as
OS processes) on the real broker (Redis at ``HIE_BROKER_URL``, default 127.0.0.1:6379; only this
run's keys are touched and deleted) and a fresh store (a SQLite file; ``--database-url`` for
PostgreSQL: a new database per run, dropped at the end). Interleaved with it, in the same run:

* B1: a bare asyncio MLLP server answering a canned ACK;
* B2: B1 plus one durable write before the ACK, as durable as HIE's (insert + commit, WAL,
  synchronous FULL; or PostgreSQL);
* B3: the lean bare Celery pipeline of the same hop count (``bench/bare_pipeline.py``: one
  message per task, no results kept, no events, one priority level).

Each system is measured at full speed ("max": senders go as fast as ACKs come), paced at half of
HIE's max rate ("half": the same offered load for every system), and HIE and B3 at
``--low-rate`` messages/s ("low": does batching add latency when there is nothing to batch?),
``--rounds`` times, alternating; medians are reported. Then the router alone with 1 and 2 worker
processes (``--scaling``), and with ``--profile`` one more HIE run under py-spy, one profile per
process group in var/bench/.

    .venv/bin/python bench/e2e.py [--connections 4] [--duration 20] [--rounds 3] [--mix]
        [--database-url postgresql+psycopg2://postgres@127.0.0.1:5432/test] [--profile]

Two versions of HIE against each other: ``--systems HIE --half-rate R --scaling 0`` from each
checkout in turn (``path/to/checkout/bench/e2e.py``: its own code runs), alternating.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import parts
import redis
import yaml

VAR = parts.ROOT / "var" / "bench"
HIE = parts.HIE


@dataclass
class Measurement:
    """One run of one system in one mode."""

    system: str
    mode: str
    round: int
    window: float
    sent: int = 0
    acked: int = 0
    delivered: int = 0
    ack_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    groups: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Messages/s through the whole system (delivered if it delivers, else ACKed)."""
        return (self.delivered or self.acked) / self.window

    def summary(self) -> dict[str, Any]:
        """Figures of this run, for the JSON report."""
        done = self.delivered or self.acked or 1
        return {
            "system": self.system,
            "mode": self.mode,
            "round": self.round,
            "sent_per_s": self.sent / self.window,
            "acked_per_s": self.acked / self.window,
            "delivered_per_s": self.delivered / self.window,
            "ack_p50_ms": parts.percentile(self.ack_ms, 0.5),
            "ack_p99_ms": parts.percentile(self.ack_ms, 0.99),
            "e2e_p50_ms": parts.percentile(self.e2e_ms, 0.5),
            "e2e_p99_ms": parts.percentile(self.e2e_ms, 0.99),
            "cpu_ms_per_msg": {g: v["cpu"] * 1000 / done for g, v in self.groups.items()},
            "hwm_mb": {g: v["hwm_mb"] for g, v in self.groups.items()},
            "rss_mb": {g: v["rss_mb"] for g, v in self.groups.items()},
        }


class Bench:
    """Owns every process, file, database and Redis key of one bench run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="hie-e2e-"))
        self.tag = uuid.uuid4().hex[:8]
        self.name = f"e2e{self.tag}"
        self.b3 = f"b3{self.tag}"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.redis = redis.Redis.from_url(args.broker_url)
        self.redis_pid = int(self.redis.info("server")["process_id"])
        self.database_url, self.b2_url = self._databases()
        self.env = parts.bench_env(
            HIE_BROKER_URL=args.broker_url,
            HIE_RESULT_BACKEND=args.broker_url,
            HIE_DATABASE_URL=self.database_url,
            HIE_HOME=str(self.tmp / "home"),
            HIE_LOG_LEVEL="WARNING",
        )
        self.groups: dict[str, dict[str, list[int]]] = {}
        self.ports: dict[str, int] = {}
        self.path = self.tmp / "production.yaml"

    # -- set-up ---------------------------------------------------------------------------------
    def _databases(self) -> tuple[str, str]:
        url = self.args.database_url
        if not url:
            return f"sqlite:///{self.tmp / 'hie.db'}", f"sqlite:///{self.tmp / 'b2.db'}"
        from sqlalchemy.engine import make_url

        base = make_url(url)
        self._pg_admin = base
        self._on_both_databases("CREATE DATABASE {db}")
        hie = base.set(database=f"hie_{self.tag}").render_as_string(hide_password=False)
        b2 = base.set(database=f"b2_{self.tag}").render_as_string(hide_password=False)
        return hie, b2

    def _on_both_databases(self, statement: str) -> None:
        """Run ``statement`` on this run's two databases (``{db}``) via ``--database-url``."""
        import psycopg2

        base = self._pg_admin
        conn = psycopg2.connect(
            host=base.host,
            port=base.port or 5432,
            user=base.username,
            password=base.password,
            dbname=base.database,
        )
        conn.autocommit = True  # CREATE / DROP DATABASE cannot run inside a transaction
        with conn.cursor() as cur:
            for db in (f"hie_{self.tag}", f"b2_{self.tag}"):
                cur.execute(statement.format(db=db))
        conn.close()

    def spawn(self, argv: list[str], log: str, **env: str) -> subprocess.Popen[bytes]:
        """Start a process this bench owns."""
        proc = parts.spawn(argv, self.tmp / f"{log}.log", {**self.env, **env})
        self.procs.append(proc)
        return proc

    def write_production(self, name: str, port: int, sink: int, router_size: int) -> Path:
        """In (HL7TCPService) -> Router (HL7RoutingEngine, one rule) -> Out (HL7TCPOperation)."""
        return parts.write_production(
            self.tmp / f"{name}.yaml",
            name,
            router="Bench.Router",
            port=port,
            router_size=router_size,
            operation={"host": "127.0.0.1", "port": sink, "retry_interval": 1},
            queue_limit=self.args.queue_limit or None,
            gateway_processes=self.args.gateway_processes,
        )

    def start_hie(self) -> None:
        """The sink, then the production under its manager (``hie start --detach``)."""
        self.ports["hie_sink"] = parts.free_port()
        self.ports["hie"] = parts.free_port()
        sink = self.spawn(
            parts.role(
                "sink",
                "--port",
                str(self.ports["hie_sink"]),
                "--log",
                str(self.tmp / "hie_sink.txt"),
            ),
            "hie_sink",
        )
        parts.wait_port(self.ports["hie_sink"])
        self.path = self.write_production(self.name, self.ports["hie"], self.ports["hie_sink"], 2)
        parts.start_production(self.path, self.env)
        parts.wait_port(self.ports["hie"])
        manager = int((self.tmp / "home" / "run" / self.name / "manager.pid").read_text())
        roots: dict[str, list[int]] = {"gateway": [], "router": [], "operation": []}
        # The manager's own children only: a group is a root and its descendants, so a prefork
        # child listed as a root too would be counted twice.
        for pid in parts.children(manager):
            line = parts.cmdline(pid)
            if "hie.cli gateway" in line:
                roots["gateway"].append(pid)
            elif line.endswith(" Router"):
                roots["router"].append(pid)
            elif line.endswith(" Out"):
                roots["operation"].append(pid)
        self.groups["HIE"] = {**roots, "broker": [self.redis_pid], "sink": [sink.pid]}

    def start_baselines(self) -> None:
        """B1 and B2 servers; B3's sink and its two workers."""
        for system, extra in (("B1", []), ("B2", ["--db", self.b2_url])):
            port = self.ports[system] = parts.free_port()
            proc = self.spawn(parts.role("ackserver", "--port", str(port), *extra), system)
            parts.wait_port(port)
            self.groups[system] = {"server": [proc.pid]}
        port = self.ports["b3_sink"] = parts.free_port()
        sink = self.spawn(
            parts.role("sink", "--port", str(port), "--log", str(self.tmp / "b3_sink.txt")),
            "b3_sink",
        )
        parts.wait_port(port)
        b3env = {
            "BENCH_B3": self.b3,
            "BENCH_SINK_PORT": str(port),
            "BENCH_LIMIT": str(self.args.queue_limit),
        }
        roots: dict[str, list[int]] = {}
        for hop in ("hop1", "hop2"):
            queue = f"bench.{self.b3}.{hop}"
            argv = [
                parts.PYTHON,
                "-m",
                "celery",
                "-A",
                "bench.bare_pipeline",
                "worker",
                "-Q",
                queue,
                "-P",
                "prefork",
                "-c",
                "2",
                "-n",
                f"{hop}.{self.b3}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                # As HIE's workers in the bench (HIE_LOG_LEVEL=WARNING): no log line per task.
                "--loglevel",
                "WARNING",
            ]
            roots[hop] = [self.spawn(argv, f"b3_{hop}", **b3env).pid]
        for hop in ("hop1", "hop2"):
            self._wait_b3(f"{hop}.{self.b3}@{socket.gethostname()}", f"b3_{hop}")
        self.groups["B3"] = {**roots, "broker": [self.redis_pid], "sink": [sink.pid]}

    def _wait_b3(self, node: str, log: str, timeout: float = 60.0) -> None:
        """Wait until the B3 worker ``node`` answers a ping (it logs nothing at WARNING)."""
        from bench.bare_pipeline import app

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if app.control.ping(destination=[node], timeout=0.5):
                return
        text = (self.tmp / f"{log}.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{node} not ready: {text}")

    # -- one measurement ------------------------------------------------------------------------
    def measure(self, system: str, mode: str, rnd: int, rate: float) -> Measurement:
        """Drive ``system`` for warm-up + duration; figures from the window after warm-up."""
        a = self.args
        prefix = f"{system}{mode[0]}{rnd}{uuid.uuid4().hex[:4]}x"
        out = self.tmp / f"{prefix}.json"
        duration = a.duration if system in ("HIE", "B3") else a.baseline_duration
        common = [
            "--out",
            str(out),
            "--duration",
            str(a.warmup + duration + 1.0),
            "--rate",
            str(rate),
            "--prefix",
            prefix,
        ] + (["--mix"] if a.mix else [])
        if system == "B3":
            argv = parts.role("b3pub", *common, "--limit", str(a.queue_limit))
            load = self.spawn(argv, "b3pub", BENCH_B3=self.b3)
        else:
            port = self.ports["hie" if system == "HIE" else system]
            argv = parts.role(
                "load", *common, "--port", str(port), "--connections", str(a.connections)
            )
            load = self.spawn(argv, "load")
        groups = parts.ProcessGroups({**self.groups[system], "load": [load.pid]})
        time.sleep(a.warmup)
        groups.begin()
        begin = time.time()
        time.sleep(duration)
        end = time.time()
        figures = groups.end()
        load.wait(120)
        m = Measurement(system, mode, rnd, end - begin, groups=figures)
        data = json.loads(out.read_text())
        acked: dict[str, float] = {}
        for control, sent, ack, code in data["records"]:
            m.sent += begin <= sent <= end
            if begin <= ack <= end and code in ("AA", "CA", "PUB"):
                m.acked += 1
                if code != "PUB":
                    m.ack_ms.append((ack - sent) * 1000)
            if code in ("AA", "CA", "PUB"):
                acked[control] = sent
        if system in ("HIE", "B3"):
            sink = self.tmp / ("hie_sink.txt" if system == "HIE" else "b3_sink.txt")
            arrived = self._drain(sink, prefix, set(acked))
            for control, times in arrived.items():
                if begin <= times[0] <= end:
                    m.delivered += 1
                if control in acked and begin <= acked[control] <= end:
                    m.e2e_ms.append((times[0] - acked[control]) * 1000)
        return m

    def _drain(self, sink: Path, prefix: str, acked: set[str]) -> dict[str, list[float]]:
        deadline = time.monotonic() + self.args.drain_timeout
        while True:
            arrived = parts.read_sink_log(sink, prefix)
            if acked <= arrived.keys() or time.monotonic() > deadline:
                missing = len(acked - arrived.keys())
                if missing:
                    print(f"  warning: {missing} ACKed message(s) of {prefix} not at the sink yet")
                return arrived
            time.sleep(0.3)

    # -- tear-down ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything started here; delete this run's Redis keys and databases."""
        if self.path.exists() and "HIE" in self.groups:
            parts.stop_production(self.path, self.env, drain_timeout=5)
        parts.stop(self.procs)
        self._delete_keys()
        if self.args.database_url:
            self._on_both_databases("DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        if not self.args.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _delete_keys(self) -> None:
        patterns = [
            f"hie.{self.name}*",
            f"hie.scale{self.tag}*",
            f"bench.{self.b3}.*",
            f"_kombu.binding.hie.{self.name}*",
            f"_kombu.binding.hie.scale{self.tag}*",
            f"_kombu.binding.bench.{self.b3}*",
            f"*{self.tag}*",
        ]
        keys = {k for p in patterns for k in self.redis.scan_iter(match=p, count=1000)}
        keys |= set(self._result_keys())
        for start in range(0, len(keys), 1000):
            self.redis.delete(*list(keys)[start : start + 1000])

    def _result_keys(self) -> list[str]:
        """Celery result keys of this run's HIE messages (their task ids are message ids)."""
        from sqlalchemy import create_engine, text

        try:
            engine = create_engine(self.database_url)
            with engine.connect() as conn:
                ids = [r[0] for r in conn.execute(text("select message_id from messages"))]
            engine.dispose()
        except Exception:
            return []
        return [f"celery-task-meta-{i}" for i in ids]


# -- router scaling -------------------------------------------------------------------------------


def router_scaling(bench: Bench, size: int, count: int) -> float:
    """Router alone with ``size`` processes: its rate draining ``count`` queued messages."""
    from hie.store import MessageStore

    name = f"scale{bench.tag}s{size}{uuid.uuid4().hex[:3]}"
    port = parts.free_port()
    path = bench.write_production(name, port, parts.free_port(), size)
    cfg = yaml.safe_load(path.read_text())
    for item in cfg["items"]:
        item.pop("max_queue_depth", None)
    path.write_text(yaml.safe_dump(cfg))
    gateway = bench.spawn([*HIE, "gateway", str(path)], f"{name}-gateway")
    parts.wait_port(port)
    out = bench.tmp / f"{name}.json"
    load = bench.spawn(
        parts.role(
            "load",
            "--port",
            str(port),
            "--out",
            str(out),
            "--count",
            str(count),
            "--duration",
            "300",
            "--prefix",
            f"S{size}x",
        ),
        f"{name}-load",
    )
    load.wait(300)
    worker = bench.spawn([*HIE, "worker", str(path), "Router"], f"{name}-router")
    # Messages the router sent on, counted in the store (tasks on the broker carry several);
    # earlier scaling runs share the store and the item name, so count from what is there now.
    store = MessageStore(bench.database_url)
    before = store.waiting(["Out"])["Out"]
    marks: dict[float, float] = {}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        depth = store.waiting(["Out"])["Out"] - before
        for q in (0.1, 0.9):
            if q not in marks and depth >= q * count:
                marks[q] = time.monotonic()
        if depth >= count:
            break
        time.sleep(0.02)
    for proc in (worker, gateway):
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    store.dispose()
    if len(marks) < 2:
        return float("nan")
    return 0.8 * count / (marks[0.9] - marks[0.1])


# -- profile --------------------------------------------------------------------------------------


def profile(bench: Bench) -> None:
    """One more HIE max run with py-spy on every process group; summaries in var/bench/."""
    spy = shutil.which("py-spy") or str(Path(parts.PYTHON).with_name("py-spy"))
    if not Path(spy).exists():
        print("profile: py-spy is not installed (pip install py-spy); skipped")
        return
    VAR.mkdir(parents=True, exist_ok=True)
    seconds = str(int(bench.args.warmup + bench.args.duration))
    spies = []
    for group, roots in bench.groups["HIE"].items():
        if group == "broker":
            continue
        raw = VAR / f"profile-{group}.txt"
        argv = [
            spy,
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--subprocesses",
            "--nonblocking",
            "--gil",
            "-d",
            seconds,
            "-o",
            str(raw),
            "-p",
            str(roots[0]),
        ]
        spies.append(
            (
                group,
                raw,
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            )
        )
    bench.measure("HIE", "profile", 0, 0.0)
    for group, raw, proc in spies:
        proc.wait(60)
        summary = summarise(raw)
        (VAR / f"profile-{group}-top.txt").write_text(summary)
        inclusive = summary.split("\n\n", 1)[-1]
        print(f"\nprofile {group} (py-spy, {raw}):\n" + "\n".join(inclusive.splitlines()[:16]))


#: Leaf frames where a thread waits rather than works (py-spy counts them in raw output).
IDLE = {
    "EpollSelector.select",
    "_epoll.poll",
    "_worker",
    "GroupCommitter._run",
    "select",
    "poll",
    "Connection._recv",
    "Condition.wait",
    "wait",
    "sleep",
}
#: Library entry points worth showing next to HIE's own functions.
ENTRY = {
    "Signature.apply_async",
    "Task.apply_async",
    "Producer.publish",
    "Engine.begin",
    "Connection.execute",
    "Redis.execute_command",
}


def summarise(raw: Path, top: int = 30) -> str:
    """Share of active samples per function from py-spy's collapsed stacks.

    Self time per function (lines merged), and inclusive time for HIE's own functions
    (hie/, mllp_gateway/) and a few library entry points (publish, begin, execute).
    """
    if not raw.exists():
        return "no samples\n"
    self_n: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = active = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [(f.split(" (")[0], f.rsplit(" (", 1)[-1].split(":")[0]) for f in stack.split(";")]
        if frames[-1][0] in IDLE:
            continue
        active += n
        leaf = f"{frames[-1][0]} ({frames[-1][1]})"
        self_n[leaf] = self_n.get(leaf, 0) + n
        keys = {
            f"{name} ({path})"
            for name, path in frames
            if (("hie/" in path or "mllp_gateway/" in path) and "cli.py" not in path)
            or name in ENTRY
        }
        for key in keys:
            incl[key] = incl.get(key, 0) + n
    active = active or 1
    lines = [f"{total} samples, {active} active (not waiting); self % of active | function"]
    lines += [
        f"{100 * n / active:6.1f} % {f}"
        for f, n in sorted(self_n.items(), key=lambda kv: -kv[1])[:top]
    ]
    lines += ["", "inclusive % of active | HIE function or library entry point"]
    lines += [
        f"{100 * n / active:6.1f} % {f}"
        for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]
    ]
    return "\n".join(lines) + "\n"


# -- report ---------------------------------------------------------------------------------------


def median(runs: list[Measurement], key: str) -> float:
    """Median of one summary figure over rounds (nan when missing)."""
    values = [r.summary()[key] for r in runs]
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def report(runs: list[Measurement], scaling: dict[int, list[float]]) -> dict[str, Any]:
    """Print medians per system and mode, and the ratios the targets are about."""
    table: dict[str, dict[str, Any]] = {}
    print(
        f"\n{'system':6} {'mode':4} {'sent/s':>8} {'ACK/s':>8} {'deliv/s':>8} "
        f"{'ACK p50':>8} {'ACK p99':>8} {'e2e p50':>8} {'e2e p99':>8}  (ms; medians)"
    )
    for system in ("HIE", "B3", "B2", "B1"):
        for mode in ("max", "half", "low"):
            sel = [r for r in runs if r.system == system and r.mode == mode]
            if not sel:
                continue
            keys = [
                "sent_per_s",
                "acked_per_s",
                "delivered_per_s",
                "ack_p50_ms",
                "ack_p99_ms",
                "e2e_p50_ms",
                "e2e_p99_ms",
            ]
            row = {k: median(sel, k) for k in keys}
            groups = sel[0].groups.keys()
            row["cpu_ms_per_msg"] = {
                g: statistics.median(r.summary()["cpu_ms_per_msg"][g] for r in sel) for g in groups
            }
            row["hwm_mb"] = {g: max(r.groups[g]["hwm_mb"] for r in sel) for g in groups}
            row["rss_mb"] = {g: max(r.groups[g]["rss_mb"] for r in sel) for g in groups}
            row["rounds"] = len(sel)
            table[f"{system} {mode}"] = row
            print(f"{system:6} {mode:4} " + " ".join(f"{row[k]:8.1f}" for k in keys))
    print("\nCPU ms per message (median) and peak memory (VmHWM, MB) per process group:")
    for label, row in table.items():
        cpu = ", ".join(f"{g} {v:.2f}" for g, v in row["cpu_ms_per_msg"].items())
        mem = ", ".join(f"{g} {v:.0f}" for g, v in row["hwm_mb"].items())
        print(f"  {label:9} cpu: {cpu}\n  {'':9} mem: {mem}")
    ratios = _ratios(table, scaling)
    print("\nratios:")
    for key, value in ratios.items():
        print(f"  {key}: {value:.2f}")
    return {"table": table, "ratios": ratios, "scaling": scaling}


def _ratios(table: dict[str, dict[str, Any]], scaling: dict[int, list[float]]) -> dict[str, float]:
    def get(label: str, key: str) -> float:
        return float(table.get(label, {}).get(key, float("nan")))

    out = {
        "throughput HIE/B3 (delivered/s, max)": get("HIE max", "delivered_per_s")
        / get("B3 max", "delivered_per_s"),
        "ACK p50 HIE/B2 at half load": get("HIE half", "ack_p50_ms") / get("B2 half", "ack_p50_ms"),
        "ACK p99 HIE/B2 at half load": get("HIE half", "ack_p99_ms") / get("B2 half", "ack_p99_ms"),
        "HIE ACK p99 at half load (ms)": get("HIE half", "ack_p99_ms"),
        "e2e p99 HIE/B3 at half load": get("HIE half", "e2e_p99_ms") / get("B3 half", "e2e_p99_ms"),
        "e2e p99 HIE/B3 at max": get("HIE max", "e2e_p99_ms") / get("B3 max", "e2e_p99_ms"),
        "HIE e2e p50 at the low rate (ms)": get("HIE low", "e2e_p50_ms"),
        "B3 e2e p50 at the low rate (ms)": get("B3 low", "e2e_p50_ms"),
    }
    if scaling.get(1) and scaling.get(2):
        one, two = statistics.median(scaling[1]), statistics.median(scaling[2])
        out["router alone, 1 process (msg/s)"] = one
        out["router alone, 2 processes (msg/s)"] = two
        out["router 2 processes / 1"] = two / one
    return out


def main() -> None:
    """Run the bench (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--connections", type=int, default=4, help="MLLP client connections")
    p.add_argument("--duration", type=float, default=20.0, help="seconds measured per HIE/B3 run")
    p.add_argument("--baseline-duration", type=float, default=10.0, help="... per B1/B2 run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    p.add_argument("--low-rate", type=float, default=10.0, help="messages/s of the low mode")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--mix", action="store_true", help="70/25/5 ADT / ORU / large ORU (~200 KB)")
    p.add_argument("--database-url", help="PostgreSQL URL; a new database is made per run")
    p.add_argument(
        "--broker-url", default=os.environ.get("HIE_BROKER_URL", "redis://127.0.0.1:6379/0")
    )
    p.add_argument("--queue-limit", type=int, default=200, help="max_queue_depth of each item")
    p.add_argument(
        "--gateway-processes", type=int, default=1, help="processes of the HL7TCPService item"
    )
    p.add_argument("--scaling", type=int, default=2, help="router-alone rounds (0: skip)")
    p.add_argument(
        "--half-rate", type=float, help="messages/s of the half mode (default: half HIE's max)"
    )
    p.add_argument(
        "--systems",
        default="HIE,B3,B2,B1",
        help="which to measure (HIE alone: to compare two checkouts, run each one's bench/e2e.py "
        "in turn; the half rate comes from HIE's first max round)",
    )
    p.add_argument("--scaling-messages", type=int, default=1000)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--profile", action="store_true", help="py-spy profiles into var/bench/")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args()
    if "HIE" not in args.systems.split(",") and not args.half_rate:
        p.error("without HIE in --systems, give --half-rate (the half mode's rate comes from HIE)")
    print(f"machine: {parts.machine()}; load average {os.getloadavg()}", flush=True)
    print(f"args: {vars(args)}", flush=True)
    bench = Bench(args)
    runs: list[Measurement] = []
    scaling: dict[int, list[float]] = {1: [], 2: []}
    started = time.monotonic()
    try:
        bench.start_hie()
        systems = [s for s in ("HIE", "B3", "B2", "B1") if s in args.systems.split(",")]
        if systems != ["HIE"]:
            bench.start_baselines()
        print(f"set up in {time.monotonic() - started:.0f} s; tmp {bench.tmp}", flush=True)
        half = args.half_rate or 0.0
        rates = {"max": 0.0, "low": args.low_rate}
        for rnd in range(args.rounds):
            for mode in ("max", "half", "low"):
                for system in systems:
                    if mode == "low" and system in ("B1", "B2"):
                        continue
                    m = bench.measure(system, mode, rnd, rates.get(mode, half))
                    runs.append(m)
                    s = m.summary()
                    print(
                        f"[{rnd}] {system} {mode}: {m.throughput:7.1f} msg/s, ACK p50/p99 "
                        f"{s['ack_p50_ms']:.1f}/{s['ack_p99_ms']:.1f} ms, e2e p50/p99 "
                        f"{s['e2e_p50_ms']:.1f}/{s['e2e_p99_ms']:.1f} ms",
                        flush=True,
                    )
                    if system == "HIE" and mode == "max" and rnd == 0 and not args.half_rate:
                        half = round(m.acked / m.window / 2, 1)
                        print(f"    half load for every system: {half} msg/s", flush=True)
        for _ in range(args.scaling):
            for size in (1, 2):
                rate = router_scaling(bench, size, args.scaling_messages)
                scaling[size].append(rate)
                print(f"router alone, {size} process(es): {rate:.0f} msg/s", flush=True)
        if args.profile:
            profile(bench)
    finally:
        result = report(runs, scaling)
        result["runs"] = [r.summary() for r in runs]
        result["machine"], result["args"] = parts.machine(), vars(args)
        result["loadavg_at_end"] = os.getloadavg()
        print(f"load average at the end: {os.getloadavg()}")
        VAR.mkdir(parents=True, exist_ok=True)
        out = VAR / f"e2e-{time.strftime('%Y%m%d-%H%M%S')}.json"
        out.write_text(json.dumps(result, indent=2, default=str))
        print(f"\nfigures in {out}; {time.monotonic() - started:.0f} s in all")
        bench.close()


if __name__ == "__main__":
    sys.path.insert(0, str(parts.ROOT))
    main()
