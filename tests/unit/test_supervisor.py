"""The manager's parts that need no broker: run directory, run-time state, the control socket."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hie.config.loader import load_production
from hie.dotted_path import import_object
from hie.errors import ManagerNotRunningError
from hie.production import Production
from hie.settings import Settings
from hie.supervisor.control import ControlServer, call, running_productions
from hie.supervisor.rundir import RunDir
from hie.supervisor.state import effective_production, load_state, save_state
from hie.web.control import NOT_RUNNING, send_command


@pytest.fixture
def production(tmp_path: Path) -> Production:
    path = tmp_path / "p.yaml"
    items = [
        {
            "name": "ADT.In",
            "class": "HL7TCPService",
            "targets": ["ADT.Out"],
            "settings": {"port": 1},
        },
        {"name": "ADT.Out", "class": "HL7TCPOperation", "settings": {"host": "h", "port": 2}},
    ]
    path.write_text(yaml.safe_dump({"name": "Ctl", "items": items}))
    return load_production(path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home")


class RecordingSupervisor:
    """Stands in for the supervisor behind the socket: records what it was asked to do."""

    def __init__(self, production: Production) -> None:
        self.production = production
        self.done: list[tuple[str, str]] = []

    @property
    def name(self) -> str:
        return self.production.name

    def snapshot(self) -> dict[str, Any]:
        return {"production": self.name, "items": [{"name": "ADT.Out", "state": "running"}]}

    def enable(self, item: str) -> None:
        self.done.append(("enable", item))

    def disable(self, item: str) -> None:
        self.done.append(("disable", item))

    def restart(self, item: str) -> None:
        self.done.append(("restart", item))

    def update(self, production: Production, file: Path) -> dict[str, list[str]]:
        return {"added": [], "removed": [], "changed": [], "toggled": []}

    def request_stop(self, drain_timeout: float | None = None) -> None:
        self.done.append(("stop", str(drain_timeout)))


def test_cli_and_viewer_reach_the_manager_through_one_client(
    settings: Settings, production: Production
) -> None:
    # Given a manager answering on the production's control socket
    supervisor = RecordingSupervisor(production)
    run = RunDir.of(settings, production.name)
    run.path.mkdir(parents=True)
    server = ControlServer(supervisor, run.socket)
    server.start()
    try:
        # When the commands and the viewer ask it things
        status = call(run.socket, {"command": "status"}, timeout=5)
        unknown = call(run.socket, {"command": "enable", "item": "Nope"}, timeout=5)
        reply = send_command(settings, production.name, "disable", "ADT.Out")
        running = running_productions(settings)
    finally:
        server.close()
    # Then both reach it, and an unknown item is refused by name
    assert status["ok"] and status["items"] == [{"name": "ADT.Out", "state": "running"}]
    assert not unknown["ok"] and "Nope" in unknown["error"]
    assert reply.ok and reply.data["production"] == "Ctl"
    assert supervisor.done == [("disable", "ADT.Out")]
    assert running == ["Ctl"]
    assert not run.socket.exists()


def test_a_silent_control_client_is_dropped_and_others_are_served(
    settings: Settings, production: Production, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import time

    from hie.supervisor import control

    monkeypatch.setattr(control._Handler, "timeout", 0.5)
    run = RunDir.of(settings, production.name)
    run.path.mkdir(parents=True)
    server = ControlServer(RecordingSupervisor(production), run.socket)
    server.start()
    try:
        assert run.socket.stat().st_mode & 0o777 == 0o600  # its owner's only
        with socket.socket(socket.AF_UNIX) as silent:
            silent.connect(str(run.socket))
            silent.settimeout(5)
            started = time.monotonic()
            assert silent.recv(1024) == b""  # the manager hung up on it
            assert time.monotonic() - started < 4
        assert call(run.socket, {"command": "status"}, timeout=5)["ok"]
    finally:
        server.close()


def test_no_manager_is_an_error_for_commands_and_a_notice_for_the_viewer(
    settings: Settings,
) -> None:
    socket = RunDir.of(settings, "Gone").socket
    with pytest.raises(ManagerNotRunningError, match="no manager answers"):
        call(socket, {"command": "status"}, timeout=5)
    reply = send_command(settings, "Gone", "status")
    assert (reply.ok, reply.message) == (False, NOT_RUNNING)
    assert running_productions(settings) == []


def test_run_time_overrides_outlive_the_manager_and_apply_to_items(
    settings: Settings, production: Production
) -> None:
    save_state(settings, production.name, {"ADT.Out": False})
    overrides = load_state(settings, production.name)
    assert overrides == {"ADT.Out": False}
    assert RunDir.of(settings, production.name).state_file.exists()
    enabled = {i.name: i.enabled for i in effective_production(production, overrides).items}
    assert enabled == {"ADT.In": True, "ADT.Out": False}


def test_manager_pid_only_while_that_process_lives(settings: Settings) -> None:
    run = RunDir.of(settings, "P")
    assert run.manager_pid() is None
    run.path.mkdir(parents=True)
    run.pid_file.write_text(str(os.getpid()))
    assert run.manager_pid() == os.getpid()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    run.pid_file.write_text(str(gone.pid))
    assert run.manager_pid() is None


def test_dotted_paths_name_classes_with_a_colon_or_a_dot() -> None:
    assert import_object("hie.settings:Settings") is Settings
    assert import_object("hie.settings.Settings") is Settings
    assert import_object("hie.supervisor.rundir:RunDir.of") == RunDir.of
    with pytest.raises(ImportError, match="not a dotted path"):
        import_object("Settings")
    with pytest.raises(AttributeError):
        import_object("hie.settings:Nothing")


def test_status_answers_at_once_while_a_tier_waits_to_be_ready(
    production: Production, settings: Settings, tmp_path: Path
) -> None:
    import threading
    import time

    from hie.supervisor.supervisor import Supervisor
    from hie.supervisor.unit import Unit

    # Given a manager starting an operation whose process never says it is ready (a real
    # process that only sleeps), so the tier waits for it with the manager's lock held
    supervisor = Supervisor(production, tmp_path / "p.yaml", settings)
    ready_dir = tmp_path / "ready"
    ready_dir.mkdir()
    slow = Unit(
        "ADT.Out", "operation", [sys.executable, "-c", "import time; time.sleep(60)"],
        tmp_path / "out.log", ready_dir=ready_dir,
    )  # fmt: skip
    supervisor.plan = lambda: [slow]  # type: ignore[method-assign]
    starting = threading.Thread(target=supervisor.start, daemon=True)
    starting.start()
    try:
        deadline = time.monotonic() + 10
        while slow.pid is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slow.pid is not None, "the unit was started"

        # When status is asked through the control socket meanwhile
        run = RunDir.of(settings, production.name)
        run.path.mkdir(parents=True, exist_ok=True)
        server = ControlServer(supervisor, run.socket)
        server.start()
        try:
            began = time.monotonic()
            answer = call(run.socket, {"command": "status"}, timeout=5)
            took = time.monotonic() - began
        finally:
            server.close()

        # Then it answers at once, showing the unit as starting, while the tier still waits
        assert took < 2, f"status took {took:.1f} s"
        states = {i["name"]: i["state"] for i in answer["items"]}
        assert states["ADT.Out"] == "starting"
        assert starting.is_alive(), "the manager is still waiting for the tier"
    finally:
        supervisor.stopping.set()
        starting.join(10)
        slow.terminate(5)
