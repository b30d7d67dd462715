"""Parts shared by the bench scripts: messages, peers, load, productions, processes, /proc figures.

Each part that runs as its own OS process (so its CPU and memory are measured apart) is a role
of this file::

    python bench/parts.py sink --port P --log FILE           # MLLP sink, logs "control time"
    python bench/parts.py ackserver --port P [--db URL]      # B1 (canned ACK) / B2 (+ a commit)
    python bench/parts.py load --port P --out FILE ...       # MLLP senders, per-message times
    python bench/parts.py b3pub --out FILE ...               # B3: bare Celery publisher

The messages are synthetic, made up here, with no real patient in them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
HIE = [PYTHON, "-m", "hie.cli"]
SB, EB = b"\x0b", b"\x1c\r"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# -- messages -------------------------------------------------------------------------------------


def adt(control: str, size: int = 1024) -> bytes:
    """A made-up ADT^A01 of about ``size`` bytes with MSH-10 ``control``."""
    head = "\r".join(
        [
            f"MSH|^~\\&|BENCH|HOSP|HIE|HIE|20260101120000||ADT^A01^ADT_A01|{control}|P|2.5.1",
            "EVN|A01|20260101120000",
            f"PID|1||{abs(hash(control)) % 10**8}^^^HOSP^MR||DOE^JANE^Q||19700101|F|||"
            "1 MAIN ST^^SPRINGFIELD^^12345||555-0100",
            "PV1|1|I|WARD1^101^1|||||||MED",
        ]
    )
    filler = max(0, size - len(head) - 12)
    return (head + f"\rNTE|1||{'x' * filler}\r").encode()


def oru(control: str, size: int) -> bytes:
    """A made-up ORU^R01 of about ``size`` bytes (OBX lines of 100 characters)."""
    head = [
        f"MSH|^~\\&|BENCH|LAB|HIE|HIE|20260101120000||ORU^R01^ORU_R01|{control}|P|2.5.1",
        "PID|1||12345^^^HOSP^MR||DOE^JANE||19700101|F",
        "OBR|1||LAB1|CBC^Blood count",
    ]
    lines, total, n = list(head), sum(map(len, head)), 0
    while total < size:
        n += 1
        line = f"OBX|{n}|ST|R{n}^Result||{'7' * 70}||||||F"
        lines.append(line)
        total += len(line) + 1
    return ("\r".join(lines) + "\r").encode()


def message(control: str, mix: bool, rng: random.Random) -> bytes:
    """1 KB ADT, or with ``mix`` 70 % ADT / 25 % ORU (4 KB) / 5 % large ORU (~200 KB)."""
    if not mix:
        return adt(control)
    roll = rng.random()
    if roll < 0.70:
        return adt(control)
    return oru(control, 4096 if roll < 0.95 else 200_000)


def control_id(payload: bytes) -> str:
    """MSH-10 by a plain split (about 1 us; parsing is not what a peer is measured on)."""
    msh = payload.split(b"\r", 1)[0]
    fields = msh.split(b"|")
    return fields[9].decode() if len(fields) > 9 else ""


def ack_for(control: str, code: str = "AA") -> bytes:
    """A minimal ACK whose MSA-2 echoes ``control`` (HIE's operation checks it)."""
    msh = f"MSH|^~\\&|SINK|B|HIE|HIE|20260101120000||ACK|A{control}|P|2.5.1"
    return f"{msh}\rMSA|{code}|{control}\r".encode()


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One MLLP frame's payload; IncompleteReadError at EOF."""
    data = await reader.readuntil(EB)
    start = data.find(SB)
    return data[start + 1 : -2]


# -- sink ----------------------------------------------------------------------------------------


async def _sink(port: int, log_path: Path, host: str = "127.0.0.1") -> None:
    log = log_path.open("a", buffering=1 << 16)

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                payload = await read_frame(reader)
                control = control_id(payload)
                log.write(f"{control} {time.time():.6f}\n")
                writer.write(SB + ack_for(control) + EB)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def flush() -> None:
        while True:
            await asyncio.sleep(0.1)
            log.flush()

    server = await asyncio.start_server(connection, host, port, limit=1 << 22)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    task = asyncio.create_task(flush())
    await stop.wait()
    task.cancel()
    server.close()
    log.flush()


def read_sink_log(path: Path, prefix: str = "") -> dict[str, list[float]]:
    """Arrival times per control id (several when a message arrived more than once)."""
    seen: dict[str, list[float]] = {}
    if not path.exists():
        return seen
    for line in path.read_text().splitlines():
        control, _, at = line.partition(" ")
        if control.startswith(prefix) and at:
            seen.setdefault(control, []).append(float(at))
    return seen


# -- B1 / B2: bare ACK servers -------------------------------------------------------------------


class DurableWriter:
    """B2's one durable write: insert + commit, from one writer thread, batching what queued up.

    The same durability as the write that gates HIE's ACK: SQLite in WAL mode with
    synchronous=FULL (the log synced at every commit), or PostgreSQL (commits durable).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.SimpleQueue[tuple[str, bytes, Future[None]]] = queue.SimpleQueue()
        threading.Thread(target=self._run, daemon=True).start()

    def _connect(self) -> Any:
        if self.url.startswith("sqlite:///"):
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("CREATE TABLE IF NOT EXISTS b2 (id TEXT PRIMARY KEY, at REAL, body BLOB)")
            return conn
        import psycopg2

        conn = psycopg2.connect(self.url.replace("postgresql+psycopg2://", "postgresql://"))
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS b2 (id TEXT PRIMARY KEY, at FLOAT, body BYTEA)")
        conn.commit()
        return conn

    def _run(self) -> None:
        conn = self._connect()
        sqlite = isinstance(conn, sqlite3.Connection)
        mark = "?" if sqlite else "%s"
        sql = f"INSERT INTO b2 (id, at, body) VALUES ({mark}, {mark}, {mark})"
        while True:
            batch = [self._queue.get()]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [(key, time.time(), body) for key, body, _ in batch]
            if sqlite:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            else:
                with conn.cursor() as cur:
                    cur.executemany(sql, rows)
                conn.commit()
            for *_, future in batch:
                future.set_result(None)

    async def write(self, key: str, body: bytes) -> None:
        """Return once the row is committed."""
        future: Future[None] = Future()
        self._queue.put((key, body, future))
        await asyncio.wrap_future(future)


async def _ackserver(port: int, db: str | None) -> None:
    writer_db = DurableWriter(db) if db else None
    canned = SB + ack_for("CANNED") + EB
    counter = iter(range(1 << 62))

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                payload = await read_frame(reader)
                if writer_db is not None:
                    await writer_db.write(f"{os.getpid()}-{next(counter)}", payload)
                writer.write(canned)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port, limit=1 << 22)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


# -- load generator ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What the senders saw: per message, control id, first send, ACK time and code."""

    records: list[tuple[str, float, float, str]] = field(default_factory=list)
    resends: int = 0
    started: float = 0.0

    def dump(self, path: Path) -> None:
        """Write as JSON."""
        data = {"started": self.started, "resends": self.resends, "records": self.records}
        path.write_text(json.dumps(data))


async def _sender(
    port: int,
    numbers: Iterable[int],
    prefix: str,
    args: argparse.Namespace,
    result: LoadResult,
    rate: float,
    deadline: float,
) -> None:
    rng = random.Random(hash(prefix) ^ id(numbers))
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    interval = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    for n in numbers:
        if time.monotonic() >= deadline:
            break
        if interval:
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            if (wait := next_at - time.monotonic()) > 0:
                await asyncio.sleep(wait)
        control = f"{prefix}{n:07d}"
        payload = SB + message(control, args.mix, rng) + EB
        first = time.time()
        while True:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
                assert reader is not None
                writer.write(payload)
                await writer.drain()
                reply = await asyncio.wait_for(read_frame(reader), args.ack_timeout)
                at = reply.find(b"MSA|")
                code = reply[at + 4 : at + 6].decode() if at >= 0 else "??"
            except (OSError, asyncio.IncompleteReadError, TimeoutError):
                if writer is not None:
                    writer.close()
                reader = writer = None
                code = "lost"
            if code in ("AA", "CA") or not args.resend:
                result.records.append((control, first, time.time(), code))
                break
            result.resends += 1
            await asyncio.sleep(0.2)
            if time.monotonic() >= deadline + args.resend_grace:
                result.records.append((control, first, time.time(), code))
                break
    if writer is not None:
        writer.close()


async def _load(args: argparse.Namespace) -> LoadResult:
    result = LoadResult(started=time.time())
    deadline = time.monotonic() + args.duration
    per = args.rate / args.connections if args.rate else 0.0
    total = args.count or 1 << 40
    await asyncio.gather(
        *(
            _sender(
                args.port,
                range(k, total, args.connections),
                args.prefix,
                args,
                result,
                per,
                deadline,
            )
            for k in range(args.connections)
        )
    )
    return result


# -- B3 publisher --------------------------------------------------------------------------------


def _b3pub(args: argparse.Namespace) -> LoadResult:
    from bench.bare_pipeline import app, hop1, queues, wait_for_room

    q1, _ = queues()
    rng = random.Random(7)
    result = LoadResult(started=time.time())
    deadline = time.monotonic() + args.duration
    interval = 1.0 / args.rate if args.rate else 0.0
    next_at = time.monotonic()
    n = 0
    with app.producer_or_acquire() as producer:
        while time.monotonic() < deadline:
            if interval:
                next_at = max(next_at + interval, time.monotonic() - 1.0)
                if (wait := next_at - time.monotonic()) > 0:
                    time.sleep(wait)
            wait_for_room(q1, args.limit)
            control = f"{args.prefix}{n:07d}"
            body = message(control, args.mix, rng).decode()
            at = time.time()
            hop1.apply_async((body,), queue=q1, producer=producer)
            result.records.append((control, at, time.time(), "PUB"))
            n += 1
    return result


# -- /proc ---------------------------------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def children(pid: int) -> list[int]:
    """The direct children of ``pid``."""
    return sorted(_children_map().get(pid, []))


def tree(pid: int, kids: dict[int, list[int]] | None = None) -> list[int]:
    """``pid`` and all its descendants (prefork children too)."""
    kids = kids if kids is not None else _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kb(pid: int) -> tuple[int, int]:
    """(VmHWM, VmRSS) in kB, (0, 0) when gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            key, value = line.split(":", 1)
            values[key] = int(value.split()[0])
    return values.get("VmHWM", 0), values.get("VmRSS", 0)


def cmdline(pid: int) -> str:
    """The command line of ``pid`` joined by spaces ('' when gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class ProcessGroups:
    """Named groups of processes (each a root pid plus its descendants), sampled from /proc."""

    def __init__(self, roots: dict[str, list[int]]) -> None:
        self.roots = roots
        self._start: dict[int, float] = {}

    def pids(self) -> dict[str, list[int]]:
        """Current pids per group."""
        kids = _children_map()
        return {g: [p for r in roots for p in tree(r, kids)] for g, roots in self.roots.items()}

    def begin(self) -> None:
        """Remember CPU seconds now."""
        self._start = {p: cpu_seconds(p) for ps in self.pids().values() for p in ps}

    def end(self) -> dict[str, dict[str, float]]:
        """CPU seconds since ``begin`` and memory, per group."""
        out: dict[str, dict[str, float]] = {}
        for group, pids in self.pids().items():
            cpu = sum(cpu_seconds(p) - self._start.get(p, 0.0) for p in pids)
            mem = [memory_kb(p) for p in pids]
            out[group] = {
                "cpu": cpu,
                "hwm_mb": sum(m[0] for m in mem) / 1024,
                "rss_mb": sum(m[1] for m in mem) / 1024,
                "processes": len(pids),
            }
        return out


# -- processes -----------------------------------------------------------------------------------


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for child processes: the repo on PYTHONPATH, plus ``extra``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}"
    env.update(extra)
    return env


def spawn(argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with output to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )


def stop(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 20.0) -> None:
    """SIGTERM every process group still running, then SIGKILL those not gone after ``timeout``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def start_production(path: Path, env: dict[str, str]) -> None:
    """``hie start --detach``: the production in ``path`` under its manager, run from its folder."""
    subprocess.run(
        [*HIE, "start", str(path), "--detach", "--quiet"],
        env=env,
        cwd=path.parent,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def stop_production(
    path: Path, env: dict[str, str], drain_timeout: float, timeout: float | None = None
) -> None:
    """``hie stop``, best effort (tear-down goes on whatever it says)."""
    subprocess.run(
        [*HIE, "stop", str(path), "--drain-timeout", str(drain_timeout)],
        env=env,
        cwd=path.parent,
        check=False,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=timeout,
    )


def write_production(
    path: Path,
    name: str,
    *,
    router: str,
    port: int,
    router_size: int,
    operation: dict[str, Any],
    queue_limit: int | None,
    gateway_processes: int = 1,
) -> Path:
    """In (HL7TCPService) -> Router (HL7RoutingEngine, one rule) -> Out (HL7TCPOperation).

    The rules go to ``rules.yaml`` next to ``path``; ``router`` names the rule definition and
    ``operation`` is Out's settings. Router and Out get ``max_queue_depth`` unless
    ``queue_limit`` is None.
    """
    import yaml

    rules = path.parent / "rules.yaml"
    rule = {"condition": 'HL7.{MSH:9.1}!="ACK"', "actions": [{"type": "send", "target": "Out"}]}
    rules.write_text(
        yaml.safe_dump(
            {
                "kind": "rules",
                "name": router,
                "rule_sets": [{"rules": [{"name": "all", "when": [rule]}]}],
            }
        )
    )
    limit = {} if queue_limit is None else {"max_queue_depth": queue_limit}
    service: dict[str, Any] = {"port": port, "ack_mode": "immediate"}
    if gateway_processes > 1:
        service["processes"] = gateway_processes
    items = [
        {"name": "In", "class": "HL7TCPService", "targets": ["Router"], "settings": service},
        {
            "name": "Router",
            "class": "HL7RoutingEngine",
            "pool": "prefork",
            "pool_size": router_size,
            "targets": ["Out"],
            "settings": {"rules": str(rules)},
            **limit,
        },
        {
            "name": "Out",
            "class": "HL7TCPOperation",
            "pool": "prefork",
            "pool_size": 2,
            "settings": operation,
            **limit,
        },
    ]
    path.write_text(yaml.safe_dump({"name": name, "items": items}))
    return path


def role(name: str, *args: str) -> list[str]:
    """The argv of one role of this file."""
    return [PYTHON, str(Path(__file__).resolve()), name, *args]


def wait_port(port: int, timeout: float = 60.0) -> None:
    """Wait until something accepts on 127.0.0.1:``port``."""
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f} s")


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) by nearest rank; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def machine() -> str:
    """nproc, CPU model and memory of this machine, one line."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "?",
    )
    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return f"{os.cpu_count()} CPUs ({model}), {mem / 1024 / 1024:.1f} GiB RAM"


def main() -> None:
    """Run one role (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("sink")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p = sub.add_parser("ackserver")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--db")
    for name in ("load", "b3pub"):
        p = sub.add_parser(name)
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--connections", type=int, default=4)
        p.add_argument("--duration", type=float, default=20.0)
        p.add_argument("--rate", type=float, default=0.0, help="messages/s in all; 0: as fast")
        p.add_argument("--count", type=int, default=0, help="stop after this many (0: no limit)")
        p.add_argument("--prefix", default="M")
        p.add_argument("--mix", action="store_true")
        p.add_argument("--resend", action="store_true", help="send again what was not ACKed AA")
        p.add_argument("--resend-grace", type=float, default=120.0)
        p.add_argument("--ack-timeout", type=float, default=30.0)
        p.add_argument("--limit", type=int, default=0, help="b3pub: max depth of the first queue")
    args = parser.parse_args()
    if args.role == "sink":
        asyncio.run(_sink(args.port, args.log, args.host))
    elif args.role == "ackserver":
        asyncio.run(_ackserver(args.port, args.db))
    elif args.role == "load":
        asyncio.run(_load(args)).dump(args.out)
    else:
        _b3pub(args).dump(args.out)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
