"""The manager's control channel: a Unix socket with one JSON line in and one JSON line out.

Requests are ``{"command": "status"}``, ``{"command": "enable", "item": "ADT.Out"}``,
``disable``, ``restart`` (with ``item``), ``{"command": "update", "file": "/path/prod.yaml"}`` and
``{"command": "stop", "drain_timeout": 30}``. Answers are ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. The socket lives at ``HIE_HOME/run/<production>/manager.sock``
with mode 0600: whoever can write it controls the production.

``call`` is the one client of it, used by the commands and the viewer.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import socketserver
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from hie.config.loader import load_production
from hie.errors import ConfigError, HIEError, ManagerNotRunningError
from hie.supervisor.rundir import RunDir

if TYPE_CHECKING:
    from hie.production import Production
    from hie.settings import Settings

log = logging.getLogger(__name__)


class Controlled(Protocol):
    """What the control socket drives: the supervisor of one running production."""

    production: Production

    @property
    def name(self) -> str: ...

    def snapshot(self) -> dict[str, Any]: ...

    def enable(self, item: str) -> None: ...

    def disable(self, item: str) -> None: ...

    def restart(self, item: str) -> None: ...

    def update(self, production: Production, file: Path) -> dict[str, list[str]]: ...

    def request_stop(self, drain_timeout: float | None = None) -> None: ...


#: Seconds a client may take to send its request line: one that connects and says nothing must
#: not hold a thread of the manager forever.
REQUEST_TIMEOUT = 10.0


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = REQUEST_TIMEOUT  # socketserver sets it on the connection

    def handle(self) -> None:
        try:
            line = self.rfile.readline(1 << 16)
        except TimeoutError:
            log.warning("a control client sent no request within %.0f s", self.timeout)
            return
        try:
            answer = self.server.control.execute(json.loads(line))
        except (HIEError, ValueError, KeyError) as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:  # an unexpected failure must reach the caller, not kill us
            log.exception("control command failed")
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        self.wfile.write(json.dumps(answer).encode() + b"\n")


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    control: ControlServer


class ControlServer:
    """Serves control requests for one supervisor in a background thread."""

    def __init__(self, supervisor: Controlled, path: Path) -> None:
        self.supervisor = supervisor
        self.path = path
        path.unlink(missing_ok=True)  # a stale socket from a manager that was killed
        old = os.umask(0o177)
        try:
            self.server = _Server(str(path), _Handler)
        finally:
            os.umask(old)
        self.server.control = self
        self.thread = threading.Thread(
            target=self.server.serve_forever, name="manager-control", daemon=True
        )

    def start(self) -> None:
        """Start answering."""
        self.thread.start()

    def close(self) -> None:
        """Stop answering and remove the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.path.unlink(missing_ok=True)

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        """Run one request against the supervisor."""
        sup = self.supervisor
        command = request.get("command")
        if command == "status":
            return {"ok": True, **sup.snapshot()}
        if command in ("enable", "disable", "restart"):
            item = str(request["item"])
            sup.production.item(item)  # unknown items fail here with a clear message
            {"enable": sup.enable, "disable": sup.disable, "restart": sup.restart}[command](item)
            return {"ok": True, **sup.snapshot()}
        if command == "update":
            path = Path(request["file"])
            production = load_production(path)
            if production.name != sup.name:
                raise ConfigError(
                    f"{path} defines production {production.name!r}, but this manager runs "
                    f"{sup.name!r}; stop it and start the other one"
                )
            changes = sup.update(production, path)
            return {"ok": True, "changes": changes, **sup.snapshot()}
        if command == "stop":
            timeout = request.get("drain_timeout")
            sup.request_stop(None if timeout is None else float(timeout))
            return {"ok": True, "stopping": True, "manager_pid": os.getpid()}
        raise ValueError(f"unknown command {command!r}")


def call(path: Path, request: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Send one request to the manager listening at ``path``; return its answer.

    Raises:
        ManagerNotRunningError: nothing listens there, or it hung up without answering.
        OSError: the manager did not answer within ``timeout``.
        ValueError: the answer is not a JSON object.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        sock.close()
        raise ManagerNotRunningError(f"no manager answers at {path}") from exc
    with contextlib.closing(sock), sock.makefile("rwb") as stream:
        stream.write(json.dumps(request).encode() + b"\n")
        stream.flush()
        line = stream.readline()
    if not line:
        raise ManagerNotRunningError(f"the manager at {path} closed the connection")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError(f"the manager at {path} sent an answer that is not a JSON object")
    return answer


def running_productions(settings: Settings) -> list[str]:
    """Names of productions under ``HIE_HOME`` whose manager answers."""
    found = []
    for run in RunDir.every(settings):
        if not run.socket.exists():
            continue
        try:
            call(run.socket, {"command": "status"}, timeout=10)
        except (ManagerNotRunningError, OSError):
            continue
        found.append(run.production)
    return found
