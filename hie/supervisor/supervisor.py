"""Supervisor: runs a production's workers and gateway as supervised OS processes.

Start order is operations, then processes, then the gateway (services), so nothing is received
before there is somewhere to send it; stop order is the reverse, and between the gateway and the
workers the queues get a chance to drain. A process that dies is restarted with exponential
back-off and given up after ``max_restarts`` failures in a row.

Run state lives in the production's run directory (``hie.supervisor.rundir``): the manager's pid,
its control socket (``hie.supervisor.control``) and the run-time enable/disable overrides
(``hie.supervisor.state``), which outlive a restart of the manager.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hie.flow import QueueDepth
from hie.production import Item, Production
from hie.settings import Settings
from hie.supervisor.control import ControlServer
from hie.supervisor.rundir import RunDir, gateway_unit, log_dir
from hie.supervisor.state import load_state, save_state
from hie.supervisor.unit import Unit, pool_children, unit_state
from hie.tasks.dispatcher import queue_names

log = logging.getLogger(__name__)

_ORDER = {"operation": 0, "process": 1, "service": 2}
GATEWAY = gateway_unit(0)
RECOVERY = "recovery"
#: A process that stayed up this long is healthy again: its failure count starts over.
STABLE_SECONDS = 30.0


def item_definition(item: Item, production: Production) -> dict[str, Any]:
    """What decides whether a running item must restart after ``update`` (not its line): its
    definition, and the content of the files it reads (an edited rule, DTL or lookup table)."""
    definition = item.model_dump(exclude={"line", "enabled"}, by_alias=True)
    try:
        files = production.host_class(item.name).source_files(item, production)
        definition["sources"] = {str(f): _digest(f) for f in files}
    except Exception as exc:  # unreadable now: count it as changed, the restart will say why
        definition["sources"] = {"unreadable": str(exc)}
    return definition


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
        # What each item was started with, files it reads included: ``update`` compares with it
        # (the files are edited in place, so it cannot be read again later).
        self._definitions = {
            i.name: item_definition(i, self.production) for i in self.production.items
        }

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
            ready_dir=RunDir.of(self.settings, self.name).item(item),
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
                name = gateway_unit(k)
                if k:
                    argv += ["--process", str(k)]
                # Started once it listens (its ready file): a sender right after `hie start
                # --detach` finds the port open.
                ready = RunDir.of(self.settings, self.name).item(name)
                out.append(Unit(name, GATEWAY, argv, logs / f"{name}.log", ready_dir=ready))
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
                drained = self.drain(timeout, self.queued)
                log.info("queues %s", "drained" if drained else "not drained; left queued")
            for kind in _STOP_ORDER[1:]:
                self._stop_units(by_kind[kind])

    def queued(self) -> int:
        """Messages queued for the enabled workers (what a graceful stop drains)."""
        queues = [
            q
            for i in self.production.items
            if self.kind(i.name) != "service" and self.enabled(i.name)
            for q in queue_names(self.name, i.name, i.partitions)  # sub-queues too
        ]
        depths = QueueDepth(self.settings.broker_url, timeout=self.settings.broker_socket_timeout)
        try:
            return sum(depths.read_many(queues).values())
        finally:
            depths.close()

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
            self._definitions[item] = item_definition(self.production.item(item), self.production)
            if self.kind(item) == "service":
                self._reconcile_gateway(restart=False)
            elif self.enabled(item):
                self._launch([self._worker_unit(item)])

    def update(self, production: Production, file: Path) -> dict[str, list[str]]:
        """Switch to a new definition: start new items, stop removed ones, restart changed ones.

        Items whose definition is unchanged keep running with the same pids.
        """
        with self.lock:
            old = {i.name: self._definitions.get(i.name) for i in self.production.items}
            new = {i.name: item_definition(i, production) for i in production.items}
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
            self._definitions = new
            return {"added": added, "removed": removed, "changed": changed, "toggled": toggled}

    def snapshot(self) -> dict[str, Any]:
        """What the running manager knows: per item its process state and pids (no I/O).

        It never waits for ``lock``: while a tier starts (up to two minutes of readiness wait)
        or a stop drains, ``hie status`` must still answer. It reads copies of what the lock
        guards, taken at once (each copy is one step under the GIL), so it may show a unit as
        ``starting`` a moment before it is ready, never a half-changed table.
        """
        production, file = self.production, self.file
        units, overrides = dict(self.units), dict(self.overrides)
        items = []
        for item in production.items:
            kind = production.host_class(item.name).kind
            unit = units.get(GATEWAY if kind == "service" else item.name)
            enabled = overrides.get(item.name, item.enabled)
            pid = unit.pid if unit is not None else None
            prefork = kind != "service" and item.pool == "prefork"
            children = pool_children(pid) if pid and prefork else []
            items.append(
                {
                    "name": item.name,
                    "kind": kind,
                    "enabled": enabled,
                    "state": unit_state(unit, enabled),
                    "pid": pid,
                    "pool_pids": children,
                    "restarts": unit.restarts if unit is not None else 0,
                    "pool": None if kind == "service" else item.pool,
                    "pool_size": None if kind == "service" else item.pool_size,
                }
            )
        extras = [
            {"name": u.name, "kind": u.kind, "state": unit_state(u, True), "pid": u.pid}
            for u in units.values()
            if u.kind in ("extra", GATEWAY)
        ]
        return {
            "production": production.name,
            "file": str(file),
            "manager_pid": os.getpid(),
            "items": items,
            "processes": extras,
        }

    # -- the main loop --------------------------------------------------------------------------
    def run(
        self, *, on_tick: Callable[[list[str]], None] | None = None, interval: float = 0.5
    ) -> None:
        """Start, supervise and serve the control channel until stopped; then stop in order."""
        run = RunDir.of(self.settings, self.name)
        run.path.mkdir(parents=True, exist_ok=True)
        run.pid_file.write_text(str(os.getpid()))
        # Commands that need the production (resend, ...) find it here while it runs.
        run.production_file.write_text(str(Path(self.file).resolve()))
        control = ControlServer(self, run.socket)
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
            run.pid_file.unlink(missing_ok=True)
            run.production_file.unlink(missing_ok=True)

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
