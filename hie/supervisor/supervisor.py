"""Supervisor: runs a production's workers and gateway as supervised OS processes.

Start order is operations, then processes, then the gateway (services), so nothing is received
before there is somewhere to send it; stop order is the reverse, and between the gateway and the
workers the queues get a chance to drain. A process that dies is restarted with exponential
back-off and given up after ``max_restarts`` failures in a row.

Every process runs in its own session (process group): Ctrl-C at the terminal reaches only the
manager, which stops the rest in order, and a worker killed with SIGKILL leaves no orphaned pool
children behind (the group is killed before the restart).

Run state lives under ``HIE_HOME/run/<production>/``: ``manager.pid``, ``manager.sock`` (the
control channel, see ``hie.manager_control``) and ``state.json`` (items enabled or disabled at
run time, which outlive a restart of the manager).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hie.production import Item, Production
from hie.settings import Settings

log = logging.getLogger(__name__)

_ORDER = {"operation": 0, "process": 1, "service": 2}
GATEWAY = "gateway"
RECOVERY = "recovery"
#: A process that stayed up this long is healthy again: its failure count starts over.
STABLE_SECONDS = 30.0


def run_dir(settings: Settings, production: str) -> Path:
    """``HIE_HOME/run/<production>``: pid file, control socket, state, workers' ready files."""
    return settings.home / "run" / production


def log_dir(settings: Settings, production: str) -> Path:
    """``HIE_HOME/log/<production>``: one log per supervised process, plus the manager's."""
    return settings.home / "log" / production


def load_state(settings: Settings, production: str) -> dict[str, bool]:
    """Run-time enable/disable overrides: item name -> enabled."""
    path = run_dir(settings, production) / "state.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): bool(v) for k, v in data.get("enabled", {}).items()}


def save_state(settings: Settings, production: str, enabled: dict[str, bool]) -> None:
    """Persist the overrides atomically (a crash mid-write must not lose every override)."""
    folder = run_dir(settings, production)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / "state.json.tmp"
    tmp.write_text(json.dumps({"enabled": enabled}, indent=2, sort_keys=True))
    tmp.replace(folder / "state.json")


def effective_production(production: Production, overrides: dict[str, bool]) -> Production:
    """``production`` with the run-time overrides applied to each item's ``enabled``."""
    items = [
        i.model_copy(update={"enabled": overrides[i.name]}) if i.name in overrides else i
        for i in production.items
    ]
    return production.model_copy(update={"items": items})


def item_definition(item: Item) -> dict[str, Any]:
    """What decides whether a running item must restart after ``update`` (not its line)."""
    return item.model_dump(exclude={"line", "enabled"}, by_alias=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        return (self.ready_dir / f"worker.{pid}.ready").exists()

    def start(self, env: dict[str, str]) -> None:
        """Launch (or relaunch) the process in its own session, output appended to its log."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self.ready_dir is not None and self.ready_dir.exists():
            for stale in self.ready_dir.glob("worker.*.ready"):
                if not _alive(int(stale.name.split(".")[1])):
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


@dataclass
class Supervisor:
    """Launches and watches the processes of one production; controlled through its methods.

    Methods that change what runs (``enable``, ``disable``, ``restart``, ``update``) are called
    from the control channel's thread, and ``poll`` from the main loop: both hold ``lock``.
    """

    production: Production
    file: Path
    settings: Settings
    max_restarts: int = 5
    #: Helper processes started before everything else (the demo's MLLP sink): name -> argv.
    extras: dict[str, list[str]] = field(default_factory=dict)
    #: Extra environment for the gateway (its metrics port).
    gateway_env: dict[str, str] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    drain_timeout: float = 30.0
    stop_timeout: float = 60.0
    lock: threading.RLock = field(default_factory=threading.RLock)
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.file = self.file.resolve()
        self.overrides = load_state(self.settings, self.production.name)

    # -- what should run ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """The production's name."""
        return self.production.name

    def kind(self, item: str) -> str:
        """operation, process or service."""
        return self.production.host_class(item).kind

    def enabled(self, item: str) -> bool:
        """The item's ``enabled``, unless overridden at run time."""
        return self.overrides.get(item, self.production.item(item).enabled)

    def _cli(self) -> list[str]:
        return [sys.executable, "-m", "hie.cli"]

    def _worker_unit(self, item: str) -> Unit:
        return Unit(
            item,
            self.kind(item),
            [*self._cli(), "worker", str(self.file), item],
            log_dir(self.settings, self.name) / f"{item}.log",
            ready_dir=run_dir(self.settings, self.name) / item,
        )

    def _gateway_needed(self) -> bool:
        services = [i for i in self.production.items if self.kind(i.name) == "service"]
        return any(self.enabled(i.name) for i in services) or bool(self.gateway_env)

    def plan(self) -> list[Unit]:
        """The processes to run now, in start order."""
        logs = log_dir(self.settings, self.name)
        out = [Unit(n, "extra", argv, logs / f"{n}.log") for n, argv in self.extras.items()]
        if any(self.kind(i.name) != "service" for i in self.production.items):
            # The recovery sweeper re-publishes what the broker lost and raises alerts.
            argv = [*self._cli(), "recover", str(self.file)]
            out.append(Unit(RECOVERY, "extra", argv, logs / "recovery.log"))
        workers = [
            i.name
            for i in self.production.items
            if self.kind(i.name) != "service" and self.enabled(i.name)
        ]
        out += [self._worker_unit(n) for n in sorted(workers, key=lambda n: _ORDER[self.kind(n)])]
        if self._gateway_needed():
            for k in range(self._gateway_processes()):
                argv = [*self._cli(), "gateway", str(self.file)]
                name = GATEWAY if k == 0 else f"{GATEWAY}.{k}"
                if k:
                    argv += ["--process", str(k)]
                out.append(Unit(name, GATEWAY, argv, logs / f"{name}.log"))
        return out

    def _gateway_processes(self) -> int:
        """How many gateway processes run: the most ``processes`` of an enabled service."""
        counts = [1]
        for item in self.production.items:
            if self.kind(item.name) == "service" and self.enabled(item.name):
                counts.append(int(item.settings.get("processes", 1)))
        return max(counts)

    def _env(self, unit: Unit) -> dict[str, str]:
        env = dict(os.environ)
        if unit.kind == GATEWAY:
            env.update(self.gateway_env)
        return env

    # -- starting and stopping ------------------------------------------------------------------
    def _launch(self, units: list[Unit], wait: float = 120.0) -> None:
        """Start ``units`` tier by tier, waiting for each tier to be ready before the next."""
        tiers: dict[int, list[Unit]] = {}
        for unit in units:
            tiers.setdefault(_TIER[unit.kind], []).append(unit)
        for tier in sorted(tiers):
            for unit in tiers[tier]:
                self.units[unit.name] = unit
                unit.start(self._env(unit))
                log.info("started %s (pid %s)", unit.name, unit.pid)
            deadline = time.monotonic() + wait
            while not all(u.ready or u.pid is None for u in tiers[tier]):
                if time.monotonic() > deadline or self.stopping.is_set():
                    break
                time.sleep(0.1)

    def start(self) -> None:
        """Start every process in order, each tier ready before the next."""
        with self.lock:
            self.units = {}
            self._launch(self.plan())

    def _stop_units(self, units: list[Unit]) -> None:
        """Stop ``units`` together (one warm shutdown each, in parallel), then forget them."""
        threads = [
            threading.Thread(target=u.terminate, args=(self.stop_timeout,), daemon=True)
            for u in units
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for unit in units:
            self.units.pop(unit.name, None)
            log.info("stopped %s", unit.name)

    def drain(self, timeout: float, depth: Callable[[], int]) -> bool:
        """Wait up to ``timeout`` seconds for ``depth()`` (messages queued) to reach 0."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if depth() == 0:
                    return True
            except Exception as exc:  # a broker that went away cannot be drained
                log.warning("cannot read queue depths while draining: %s", exc)
                return False
            time.sleep(0.2)
        return False

    def stop(self, drain_timeout: float | None = None) -> None:
        """Gateway first (stops accepting), drain the queues, then processes, operations, extras.

        Workers get SIGTERM: Celery's warm shutdown finishes the task in hand; with acks_late,
        whatever they had not started goes back to the queue and runs at the next start.
        """
        with self.lock:
            self.stopping.set()
            by_kind = {k: [u for u in self.units.values() if u.kind == k] for k in _STOP_ORDER}
            self._stop_units(by_kind[GATEWAY])
            timeout = self.drain_timeout if drain_timeout is None else drain_timeout
            if timeout > 0 and (by_kind["process"] or by_kind["operation"]):
                from hie.manager_status import total_depth

                drained = self.drain(timeout, lambda: total_depth(self))
                log.info("queues %s", "drained" if drained else "not drained; left queued")
            for kind in _STOP_ORDER[1:]:
                self._stop_units(by_kind[kind])

    # -- supervision ----------------------------------------------------------------------------
    def poll(self) -> list[str]:
        """Restart processes that died, with back-off; give up after ``max_restarts``.

        Returns what happened, one line per event, for the caller to show.
        """
        events: list[str] = []
        with self.lock:
            if self.stopping.is_set():
                return events
            now = time.monotonic()
            for unit in self.units.values():
                if unit.given_up or unit.process is None:
                    continue
                code = unit.process.poll()
                if code is None:
                    if unit.failures and now - unit.started_at > STABLE_SECONDS:
                        unit.failures = 0
                    continue
                if unit.next_start == 0.0:
                    events.append(self._died(unit, code, now))
                if not unit.given_up and now >= unit.next_start:
                    unit.next_start = 0.0
                    unit.restarts += 1
                    unit.start(self._env(unit))
                    events.append(f"{unit.name} restarted (pid {unit.pid})")
        for line in events:
            log.warning("%s", line)
        return events

    def _died(self, unit: Unit, code: int, now: float) -> str:
        unit.last_exit = code
        unit.signal_group(signal.SIGKILL)  # orphaned pool children would keep consuming
        unit.failures += 1
        if unit.failures > self.max_restarts:
            unit.given_up = True
            return (
                f"{unit.name} exited {code} {self.max_restarts} times in a row; giving up "
                f"(see {unit.log_path})"
            )
        delay = min(30.0, 0.5 * 2 ** (unit.failures - 1))
        unit.next_start = now + delay
        return f"{unit.name} exited with {code}; restarting in {delay:.1f}s"

    # -- run-time control -----------------------------------------------------------------------
    def _units_of(self, item: str) -> list[Unit]:
        """The units running ``item``: its worker, or the gateway processes for a service."""
        self.production.item(item)  # raises ConfigError naming the unknown item
        if self.kind(item) == "service":
            return self._gateways()
        return [self.units[item]] if item in self.units else []

    def _gateways(self) -> list[Unit]:
        return [u for u in self.units.values() if u.kind == GATEWAY]

    def _set_enabled(self, item: str, value: bool) -> None:
        self.overrides[item] = value
        save_state(self.settings, self.name, self.overrides)

    def _reconcile_gateway(self, restart: bool) -> None:
        """Start, stop or restart the gateway processes so they match the enabled services."""
        planned = {u.name: u for u in self.plan() if u.kind == GATEWAY}
        stale = [u for u in self._gateways() if restart or u.name not in planned]
        self._stop_units(stale)
        self._launch([u for name, u in planned.items() if name not in self.units])

    def enable(self, item: str) -> None:
        """Enable ``item`` (persisted) and start it; its queued messages flow again."""
        with self.lock:
            self._set_enabled(item, True)
            if self.kind(item) == "service":
                self._reconcile_gateway(restart=True)
            elif item not in self.units:
                self._launch([self._worker_unit(item)])

    def disable(self, item: str) -> None:
        """Disable ``item`` (persisted) and stop it; messages for it wait in its queue."""
        with self.lock:
            self._set_enabled(item, False)
            if self.kind(item) == "service":
                self._reconcile_gateway(restart=True)
            else:
                self._stop_units(self._units_of(item))

    def restart(self, item: str) -> None:
        """Restart the process(es) of ``item`` (a service: the gateway); the rest keep running."""
        with self.lock:
            self._stop_units(self._units_of(item))
            if self.kind(item) == "service":
                self._reconcile_gateway(restart=False)
            elif self.enabled(item):
                self._launch([self._worker_unit(item)])

    def update(self, production: Production, file: Path) -> dict[str, list[str]]:
        """Switch to a new definition: start new items, stop removed ones, restart changed ones.

        Items whose definition is unchanged keep running with the same pids.
        """
        with self.lock:
            old = {i.name: item_definition(i) for i in self.production.items}
            new = {i.name: item_definition(i) for i in production.items}
            old_enabled = {n: self.enabled(n) for n in old}
            old_kinds = {n: self.kind(n) for n in old}
            old_file = str(self.file)
            self.production, self.file = production, file.resolve()
            self.overrides = {k: v for k, v in self.overrides.items() if k in new}
            save_state(self.settings, self.name, self.overrides)
            added = [n for n in new if n not in old]
            removed = [n for n in old if n not in new]
            changed = [n for n in new if n in old and new[n] != old[n]]
            toggled = [n for n in new if n in old and old_enabled[n] != self.enabled(n)]
            for unit in self.units.values():  # later restarts read the new file
                unit.argv = [str(self.file) if a == old_file else a for a in unit.argv]
            gone = [self.units[n] for n in removed + changed + toggled if n in self.units]
            self._stop_units(gone)
            start = [
                self._worker_unit(n)
                for n in added + changed + toggled
                if self.kind(n) != "service" and self.enabled(n) and n not in self.units
            ]
            self._launch(sorted(start, key=lambda u: _ORDER[u.kind]))
            services = [
                n
                for n in added + removed + changed + toggled
                if (self.kind(n) if n in new else old_kinds[n]) == "service"
            ]
            self._reconcile_gateway(restart=bool(services))
            return {"added": added, "removed": removed, "changed": changed, "toggled": toggled}

    # -- the main loop --------------------------------------------------------------------------
    def run(
        self, *, on_tick: Callable[[list[str]], None] | None = None, interval: float = 0.5
    ) -> None:
        """Start, supervise and serve the control channel until stopped; then stop in order."""
        from hie.manager_control import ControlServer

        folder = run_dir(self.settings, self.name)
        folder.mkdir(parents=True, exist_ok=True)
        pid_file = folder / "manager.pid"
        pid_file.write_text(str(os.getpid()))
        # Commands that need the production (resend, ...) find it here while it runs.
        (folder / "production.path").write_text(str(Path(self.file).resolve()))
        control = ControlServer(self, folder / "manager.sock")
        control.start()
        try:
            self.start()
            while not self.stopping.is_set():
                events = self.poll()
                if on_tick is not None:
                    on_tick(events)
                self.stopping.wait(interval)
        finally:
            self.stopping.clear()
            self.stop()
            control.close()
            pid_file.unlink(missing_ok=True)
            (folder / "production.path").unlink(missing_ok=True)

    def request_stop(self, drain_timeout: float | None = None) -> None:
        """Ask the main loop to stop (from a signal handler or the control channel)."""
        if drain_timeout is not None:
            self.drain_timeout = drain_timeout
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGINT / SIGTERM stop the production gracefully."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.request_stop())


_STOP_ORDER = [GATEWAY, "process", "operation", "extra"]
_TIER = {"extra": -1, "operation": 0, "process": 1, GATEWAY: 2}
