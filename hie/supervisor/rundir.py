"""Where a production's run-time files live under ``HIE_HOME``.

``HIE_HOME/run/<production>/`` holds what a running manager leaves for other commands to find:
``manager.pid``, ``manager.sock`` (the control socket, see ``hie.supervisor.control``),
``production.path`` (the file it runs), ``state.json`` (items enabled or disabled at run time) and
one folder per worker item for its workers' ready files. ``HIE_HOME/log/<production>/`` holds one
log per supervised process, plus the manager's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hie.settings import Settings


def ready_file(folder: Path, pid: int) -> Path:
    """The file process ``pid`` writes in its unit's ``folder`` once it serves: the manager
    counts the unit as started when it exists (workers: Celery is consuming; gateways: every
    listener is bound)."""
    return folder / f"worker.{pid}.ready"


def gateway_unit(process: int) -> str:
    """The manager's name for gateway process ``process`` (``gateway``, ``gateway.1`` ...)."""
    return "gateway" if process == 0 else f"gateway.{process}"


def pid_alive(pid: int) -> bool:
    """True while a process with ``pid`` exists (one of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class RunDir:
    """``HIE_HOME/run/<production>``: pid file, control socket, state, workers' ready files."""

    path: Path

    @classmethod
    def of(cls, settings: Settings, production: str) -> RunDir:
        """The run directory of ``production`` (it may not exist yet)."""
        return cls(settings.home / "run" / production)

    @classmethod
    def every(cls, settings: Settings) -> list[RunDir]:
        """The run directories of every production under ``HIE_HOME``, sorted by name."""
        root = settings.home / "run"
        if not root.is_dir():
            return []
        return [cls(p) for p in sorted(root.iterdir()) if p.is_dir()]

    @property
    def production(self) -> str:
        """The production's name."""
        return self.path.name

    @property
    def pid_file(self) -> Path:
        """``manager.pid``: the manager's pid while it runs."""
        return self.path / "manager.pid"

    @property
    def socket(self) -> Path:
        """``manager.sock``: where the manager listens for control requests."""
        return self.path / "manager.sock"

    @property
    def production_file(self) -> Path:
        """``production.path``: the production file the running manager was started with."""
        return self.path / "production.path"

    @property
    def state_file(self) -> Path:
        """``state.json``: items enabled or disabled at run time."""
        return self.path / "state.json"

    def item(self, item: str) -> Path:
        """The folder where the workers of ``item`` write their ready files."""
        return self.path / item

    def manager_pid(self) -> int | None:
        """The pid of the manager running this production, None if none runs."""
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None


def log_dir(settings: Settings, production: str) -> Path:
    """``HIE_HOME/log/<production>``: one log per supervised process, plus the manager's."""
    return settings.home / "log" / production
