"""Two hosts, one production: scale-out across a network that fails, proven on real parts.

Builds two hosts in network namespaces of its own (``ip netns``, a veth pair, addresses of its
own): host A runs a private redis-server and a private PostgreSQL (``initdb`` into a temporary
folder), both listening on A's address only, the gateway, the recovery sweeper and the MLLP sink
standing in for the downstream system; host B runs the router and operation workers, started
with ``hie worker`` against A's broker and store, as a second machine would. MLLP senders on A
send ``--messages`` messages (sending again what was not ACKed, as senders do); mid-run the link
between the hosts is cut for ``--cut`` seconds (``ip link set ... down``) and restored. Every
ACKed message must reach the sink; delivered-twice is counted. The workers on B must reconnect by
themselves: nothing restarts them.

Needs root (namespaces), ``redis-server`` and PostgreSQL's server binaries. Run by hand, by
``make drills``, and by the test suite (``tests/integration/test_two_hosts.py``)::

    .venv/bin/python bench/two_hosts.py [--messages 1000] [--rate 50] [--cut 10]
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
PYTHON = sys.executable
PRODUCTION = "TwoHosts"


def missing() -> str | None:
    """Why the drill cannot run on this machine (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "redis-server", "redis-cli", "runuser"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if _pg_bin("initdb") is None:
        return "PostgreSQL's server binaries (initdb, postgres) are not installed"
    probe = f"hieprobe{uuid.uuid4().hex[:6]}"
    made = subprocess.run(
        ["ip", "netns", "add", probe], check=False, capture_output=True, text=True
    )
    if made.returncode != 0:
        return f"the kernel refuses a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], check=False, capture_output=True)
    return None


def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@dataclass
class Result:
    """What the drill counted."""

    sent: int
    acked: int
    delivered: int
    lost: int
    twice: int
    resends: int
    cut_seconds: float
    seconds: float
    #: The longest time without an arrival at the sink: the cut, seen from downstream.
    longest_pause: float = 0.0

    def line(self) -> str:
        """One printable line."""
        return (
            f"two hosts, link cut {self.cut_seconds:.0f} s: sent={self.sent} acked={self.acked} "
            f"delivered={self.delivered} lost={self.lost} delivered_twice={self.twice} "
            f"resends={self.resends} longest pause at the sink {self.longest_pause:.1f} s, "
            f"{self.seconds:.1f} s in all"
        )


class TwoHosts:
    """The two namespaces and everything running in them; a context manager that tears down."""

    def __init__(self, *, keep: bool = False) -> None:
        tag = uuid.uuid4().hex[:6]
        self.ns_a, self.ns_b = f"hieA{tag}", f"hieB{tag}"
        self.veth_a, self.veth_b = f"va{tag}", f"vb{tag}"
        third = int(tag[:2], 16) % 250 + 1
        self.addr_a, self.addr_b = f"10.213.{third}.1", f"10.213.{third}.2"
        self.tmp = Path(tempfile.mkdtemp(prefix="hie-two-hosts-"))
        self.keep = keep
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.path = self.tmp / "production.yaml"
        self.sink_port = 6661
        self.mllp_port = 2575
        self.pg_dir = self.tmp / "pg"

    # -- set-up ---------------------------------------------------------------------------------
    def __enter__(self) -> TwoHosts:
        try:
            self._network()
            self._broker_and_store()
            self._production()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    def _network(self) -> None:
        a, b = self.ns_a, self.ns_b
        self._ip("netns", "add", a)
        self._ip("netns", "add", b)
        self._ip("link", "add", self.veth_a, "type", "veth", "peer", "name", self.veth_b)
        self._ip("link", "set", self.veth_a, "netns", a)
        self._ip("link", "set", self.veth_b, "netns", b)
        self._ip("-n", a, "addr", "add", f"{self.addr_a}/24", "dev", self.veth_a)
        self._ip("-n", b, "addr", "add", f"{self.addr_b}/24", "dev", self.veth_b)
        for ns, dev in ((a, self.veth_a), (b, self.veth_b)):
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "link", "set", dev, "up")

    def spawn(self, ns: str, argv: list[str], log: str, **env: str) -> subprocess.Popen[bytes]:
        """Start ``argv`` on host ``ns`` (its own session), output to ``log``.log."""
        environ = {**self.env(), **env}
        with (self.tmp / f"{log}.log").open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
                cwd=self.tmp,
                start_new_session=True,
            )
        self.procs[f"{log} on host {'A' if ns == self.ns_a else 'B'}"] = proc
        return proc

    def env(self) -> dict[str, str]:
        """Every HIE process's environment: A's broker and store."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("HIE_")}
        return environ | {
            "PYTHONPATH": str(ROOT),
            "HIE_BROKER_URL": f"redis://{self.addr_a}:6379/0",
            "HIE_RESULT_BACKEND": f"redis://{self.addr_a}:6379/0",
            "HIE_DATABASE_URL": f"postgresql+psycopg2://postgres@{self.addr_a}:5432/postgres",
            "HIE_EMBEDDED_BROKER": "false",
            "HIE_LOG_LEVEL": "WARNING",
        }

    def in_ns(
        self, ns: str, argv: list[str], timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``ns`` to completion."""
        return subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _wait(self, what: str, ready: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                logs = "\n".join(
                    f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                    for p in sorted(self.tmp.glob("*.log"))
                )
                raise RuntimeError(f"{what} not ready within {timeout:.0f} s\n{logs}")
            time.sleep(0.2)

    def _broker_and_store(self) -> None:
        a = self.ns_a
        redis_argv = ["redis-server", "--bind", self.addr_a, "--port", "6379", "--save", "",
                      "--appendonly", "no", "--protected-mode", "no"]  # fmt: skip
        self.spawn(a, redis_argv, "redis")
        ping = ["redis-cli", "-h", self.addr_a, "-p", "6379", "ping"]
        self._wait("redis on host A", lambda: "PONG" in self.in_ns(a, ping).stdout)
        self.tmp.chmod(0o711)  # the postgres user must reach its data folder inside
        self.pg_dir.mkdir()
        shutil.chown(self.pg_dir, "postgres", "postgres")
        self.pg_dir.chmod(0o700)
        initdb = ["runuser", "-u", "postgres", "--", str(_pg_bin("initdb")), "-D",
                  str(self.pg_dir), "--auth=trust", "-U", "postgres", "-E", "UTF8",
                  "--locale=C", "--no-sync"]  # fmt: skip
        subprocess.run(initdb, check=True, capture_output=True, cwd="/")
        with (self.pg_dir / "pg_hba.conf").open("a") as hba:  # the two hosts' network only
            hba.write(f"host all all {self.addr_a.rsplit('.', 1)[0]}.0/24 trust\n")
        postgres = ["runuser", "-u", "postgres", "--", str(_pg_bin("postgres")), "-D",
                    str(self.pg_dir), "-c", f"listen_addresses={self.addr_a}", "-c", "port=5432",
                    "-c", f"unix_socket_directories={self.pg_dir}"]  # fmt: skip
        self.spawn(a, postgres, "postgres")
        ready = [str(_pg_bin("pg_isready")), "-h", self.addr_a, "-p", "5432"]
        self._wait("PostgreSQL on host A", lambda: self.in_ns(a, ready).returncode == 0)

    def _production(self) -> None:
        items = [
            {"name": "In", "class": "HL7TCPService", "targets": ["Router"],
             "settings": {"port": self.mllp_port, "ack_mode": "immediate"}},
            {"name": "Router", "class": "HL7RoutingEngine", "pool": "prefork", "pool_size": 2,
             "targets": ["Out"]},
            {"name": "Out", "class": "HL7TCPOperation", "pool": "threads", "pool_size": 2,
             "settings": {"host": self.addr_a, "port": self.sink_port, "retry_interval": 1,
                          "connect_timeout": 2, "response_timeout": 5}},
        ]  # fmt: skip
        self.path.write_text(yaml.safe_dump({"name": PRODUCTION, "items": items}))
        a, b = self.ns_a, self.ns_b
        sink = [PYTHON, str(BENCH / "parts.py"), "sink", "--host", self.addr_a, "--port",
                str(self.sink_port), "--log", str(self.tmp / "sink.txt")]  # fmt: skip
        self.spawn(a, sink, "sink")
        hie = [PYTHON, "-m", "hie.cli"]
        home_a, home_b = self.tmp / "home-a", self.tmp / "home-b"
        self.spawn(a, [*hie, "gateway", str(self.path)], "gateway", HIE_HOME=str(home_a))
        sweeper = [*hie, "recover", str(self.path), "--stale-after", "15", "--interval", "2"]
        self.spawn(a, sweeper, "recovery", HIE_HOME=str(home_a))
        for item in ("Out", "Router"):
            self.spawn(b, [*hie, "worker", str(self.path), item], item, HIE_HOME=str(home_b))
        run_b = home_b / "run" / PRODUCTION
        for item in ("Out", "Router"):
            self._wait(
                f"worker {item} on host B",
                lambda item=item: any((run_b / item).glob("worker.*.ready")),  # type: ignore[misc]
                timeout=90,
            )
        gateway_ready = home_a / "run" / PRODUCTION / "gateway"
        self._wait("the gateway on host A", lambda: any(gateway_ready.glob("worker.*.ready")))

    # -- the drill ------------------------------------------------------------------------------
    def cut_link(self, seconds: float) -> None:
        """Take the link between the hosts down for ``seconds``, then up again.

        B's end goes down (A's loses its carrier): host A keeps reaching its own address, as a
        machine whose network cable to the other one was pulled does.
        """
        self._ip("-n", self.ns_b, "link", "set", self.veth_b, "down")
        time.sleep(seconds)
        self._ip("-n", self.ns_b, "link", "set", self.veth_b, "up")

    def run(
        self, messages: int, rate: float, cut_after: float, cut_for: float, drain: float = 240
    ) -> Result:
        """Send ``messages`` at ``rate`` from host A, cut the link ``cut_after`` seconds in for
        ``cut_for`` seconds; count at the sink once every ACKed message arrived (or ``drain``
        seconds passed)."""
        started = time.monotonic()
        out = self.tmp / "load.json"
        load = [PYTHON, str(BENCH / "parts.py"), "load", "--port", str(self.mllp_port),
                "--out", str(out), "--rate", str(rate), "--count", str(messages),
                "--duration", str(messages / rate + 120), "--prefix", "TH", "--resend",
                "--connections", "2", "--resend-grace", "120", "--ack-timeout", "10"]  # fmt: skip
        sender = self.spawn(self.ns_a, load, "load")
        time.sleep(cut_after)
        self.cut_link(cut_for)
        sender.wait(messages / rate + 300)
        data = json.loads(out.read_text())
        acked = {c for c, _, _, code in data["records"] if code in ("AA", "CA")}
        sys.path.insert(0, str(BENCH))
        import parts

        deadline = time.monotonic() + drain
        while True:
            arrived = parts.read_sink_log(self.tmp / "sink.txt", "TH")
            if acked <= arrived.keys() or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        firsts = sorted(t[0] for t in arrived.values())
        pauses = [b - a for a, b in itertools.pairwise(firsts)]
        return Result(
            longest_pause=max(pauses, default=0.0),
            sent=len({c for c, *_ in data["records"]}),
            acked=len(acked),
            delivered=len(arrived),
            lost=len(acked - arrived.keys()),
            twice=sum(1 for t in arrived.values() if len(t) > 1),
            resends=int(data["resends"]),
            cut_seconds=cut_for,
            seconds=time.monotonic() - started,
        )

    def alive(self) -> dict[str, bool]:
        """Whether each long-running process started here still runs (the workers must have
        reconnected by themselves, not died and been restarted)."""
        return {name: p.poll() is None for name, p in self.procs.items() if "load" not in name}

    def log(self, name: str) -> str:
        """The tail of one process's output."""
        path = self.tmp / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    # -- tear-down ------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop everything, delete the namespaces (and with them the veth pair) and the folder."""
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for ns in (self.ns_a, self.ns_b):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=1000)
    p.add_argument("--rate", type=float, default=50.0, help="messages/s offered")
    p.add_argument("--cut-after", type=float, default=5.0, help="seconds into the run")
    p.add_argument("--cut", type=float, default=10.0, help="seconds the link stays down")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder (logs)")
    args = p.parse_args()
    if (why := missing()) is not None:
        print(f"two hosts: skipped, it cannot run here: {why}")
        return 0
    with TwoHosts(keep=args.keep) as hosts:
        result = hosts.run(args.messages, args.rate, args.cut_after, args.cut)
        print(result.line(), flush=True)
        dead = [name for name, up in hosts.alive().items() if not up]
        if dead:
            print(f"exited during the drill: {', '.join(dead)}")
        if args.keep:
            print(f"logs in {hosts.tmp}")
    return 1 if result.lost or dead else 0


if __name__ == "__main__":
    sys.exit(main())
