"""One supervised OS process: an item's worker, the gateway, or an extra helper.

Every process runs in its own session (process group): Ctrl-C at the terminal reaches only the
manager, which stops the rest in order, and a worker killed with SIGKILL leaves no orphaned pool
children behind (the group is killed before the restart).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from hie.supervisor.rundir import pid_alive, ready_file

log = logging.getLogger(__name__)


@dataclass
class Unit:
    """One supervised OS process: an item's worker, the gateway, or an extra helper."""

    name: str
    kind: str  # operation | process | gateway | extra
    argv: list[str]
    log_path: Path
    ready_dir: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    failures: int = 0
    restarts: int = 0
    next_start: float = 0.0
    given_up: bool = False
    started_at: float = 0.0
    last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        """The current OS pid, if running."""
        return self.process.pid if self.process and self.process.poll() is None else None

    @property
    def ready(self) -> bool:
        """True once the worker announced itself (gateways and extras: once running)."""
        pid = self.pid
        if pid is None:
            return False
        if self.ready_dir is None:
            return True
        return ready_file(self.ready_dir, pid).exists()

    def start(self, env: dict[str, str]) -> None:
        """Launch (or relaunch) the process in its own session, output appended to its log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.ready_dir is not None and self.ready_dir.exists():
            for stale in self.ready_dir.glob("worker.*.ready"):
                if not pid_alive(int(stale.name.split(".")[1])):
                    stale.unlink(missing_ok=True)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.started_at = time.monotonic()
        self.given_up = False

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process's group (its pool children too)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, sig)

    def terminate(self, timeout: float) -> None:
        """SIGTERM (Celery: warm shutdown, the task in hand finishes), SIGKILL after ``timeout``."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
        # Whatever is left of the group (pool children of a killed parent) goes now.
        self.signal_group(signal.SIGKILL)
        self.process.wait()
        self.last_exit = self.process.returncode
        if self.ready_dir is not None:
            (self.ready_dir / f"worker.{self.process.pid}.ready").unlink(missing_ok=True)
        self.process = None


def unit_state(unit: Unit | None, enabled: bool) -> str:
    """One word for a supervised process (``unit`` None: not running)."""
    if not enabled:
        return "disabled"
    if unit is None:
        return "stopped"
    if unit.given_up:
        return "failed"
    if unit.pid is None:
        return "restarting"
    return "running" if unit.ready else "starting"


def pool_children(pid: int) -> list[int]:
    """The child pids of ``pid`` (a prefork worker's pool processes), read from /proc."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return sorted(set(children))
