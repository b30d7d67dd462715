"""Supervisor: runs a production's workers and gateway as supervised OS processes.

Start order is operations, then processes, then the gateway (services), so nothing is received
before there is somewhere to send it; stop order is the reverse. A process that dies is restarted
with exponential back-off and given up after ``max_restarts`` failures in a row.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from hie.production import Production
from hie.settings import Settings

log = logging.getLogger(__name__)

_ORDER = {"operation": 0, "process": 1, "service": 2}


@dataclass
class Managed:
    """One supervised OS process: an item's worker or the gateway."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    given_up: bool = False

    @property
    def pid(self) -> int | None:
        """The current OS pid, if running."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def start(self, env: dict[str, str]) -> None:
        """Launch (or relaunch) the process, its output appended to its log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        out = self.log_path.open("ab")
        self.process = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, env=env)
        out.close()


@dataclass
class Supervisor:
    """Launches and watches the processes of one production."""

    production: Production
    file: Path
    settings: Settings
    max_restarts: int = 5
    managed: list[Managed] = field(default_factory=list)
    _stopping: bool = False

    def plan(self) -> list[Managed]:
        """The processes to run, in start order."""
        cli = [sys.executable, "-m", "hie.cli"]
        logs = self.settings.home / "log" / self.production.name
        items = [i for i in self.production.items if i.enabled]
        kinds = {i.name: self.production.host_class(i.name).kind for i in items}
        out = [
            Managed(i.name, [*cli, "worker", str(self.file), i.name], logs / f"{i.name}.log")
            for i in sorted(items, key=lambda i: _ORDER[kinds[i.name]])
            if kinds[i.name] != "service"
        ]
        if any(k == "service" for k in kinds.values()):
            out.append(Managed("gateway", [*cli, "gateway", str(self.file)], logs / "gateway.log"))
        return out

    def start(self) -> None:
        """Start every process in order."""
        env = dict(os.environ)
        self.managed = self.plan()
        for proc in self.managed:
            proc.start(env)
            log.info("started %s (pid %s)", proc.name, proc.pid)

    def poll(self) -> None:
        """Restart processes that died, with back-off; give up after ``max_restarts``."""
        now = time.monotonic()
        for proc in self.managed:
            if self._stopping or proc.given_up or proc.process is None:
                continue
            code = proc.process.poll()
            if code is None:
                continue
            if proc.next_start == 0.0:
                proc.restarts += 1
                if proc.restarts > self.max_restarts:
                    proc.given_up = True
                    log.error(
                        "%s exited %s %d times; giving up (see %s)",
                        proc.name,
                        code,
                        self.max_restarts,
                        proc.log_path,
                    )
                    continue
                proc.next_start = now + min(30.0, 0.5 * 2 ** (proc.restarts - 1))
                log.warning("%s exited with %s; restarting", proc.name, code)
            if now >= proc.next_start:
                proc.next_start = 0.0
                proc.start(dict(os.environ))

    def stop(self, timeout: float = 30.0) -> None:
        """Stop in reverse order: gateway first, then processes, then operations."""
        self._stopping = True
        for proc in reversed(self.managed):
            if proc.pid is not None and proc.process is not None:
                proc.process.send_signal(signal.SIGTERM)  # Celery: warm shutdown
                try:
                    proc.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.process.kill()
                    proc.process.wait()

    def status_line(self) -> str:
        """One line: each process and its pid."""
        return "  ".join(
            f"{p.name}={p.pid or ('gave up' if p.given_up else 'down')}" for p in self.managed
        )

    def run_foreground(self, interval: float = 1.0) -> None:
        """Start, supervise and print status until Ctrl-C or SIGTERM, then stop."""
        stop = False

        def request_stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        self.start()
        last = ""
        try:
            while not stop:
                self.poll()
                line = self.status_line()
                if line != last:
                    print(f"[{self.production.name}] {line}", flush=True)
                    last = line
                time.sleep(interval)
        finally:
            print(f"[{self.production.name}] stopping ...", flush=True)
            self.stop()
