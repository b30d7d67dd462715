"""The manager's control channel: a Unix socket with one JSON line in and one JSON line out.

Requests are ``{"command": "status"}``, ``{"command": "enable", "item": "ADT.Out"}``,
``disable``, ``restart`` (with ``item``), ``{"command": "update", "file": "/path/prod.yaml"}`` and
``{"command": "stop", "drain_timeout": 30}``. Answers are ``{"ok": true, ...}`` or
``{"ok": false, "error": "..."}``. The socket lives at ``HIE_HOME/run/<production>/manager.sock``
with mode 0600: whoever can write it controls the production.
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
from typing import TYPE_CHECKING, Any

from hie.errors import ConfigError, HIEError

if TYPE_CHECKING:
    from hie.manager import Supervisor
    from hie.settings import Settings

log = logging.getLogger(__name__)


class ManagerNotRunningError(HIEError):
    """No manager answers for the production asked about."""


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(1 << 16)
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

    def __init__(self, supervisor: Supervisor, path: Path) -> None:
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
        from hie.manager_status import snapshot

        sup = self.supervisor
        command = request.get("command")
        if command == "status":
            return {"ok": True, **snapshot(sup)}
        if command in ("enable", "disable", "restart"):
            item = str(request["item"])
            sup.production.item(item)  # unknown items fail here with a clear message
            getattr(sup, command)(item)
            return {"ok": True, **snapshot(sup)}
        if command == "update":
            from hie.config.loader import load_production

            path = Path(request["file"])
            production = load_production(path)
            if production.name != sup.name:
                raise ConfigError(
                    f"{path} defines production {production.name!r}, but this manager runs "
                    f"{sup.name!r}; stop it and start the other one"
                )
            changes = sup.update(production, path)
            return {"ok": True, "changes": changes, **snapshot(sup)}
        if command == "stop":
            timeout = request.get("drain_timeout")
            sup.request_stop(None if timeout is None else float(timeout))
            return {"ok": True, "stopping": True, "manager_pid": os.getpid()}
        raise ValueError(f"unknown command {command!r}")


def call(path: Path, request: dict[str, Any], timeout: float = 300.0) -> dict[str, Any]:
    """Send one request to the manager listening at ``path``; return its answer.

    Raises:
        ManagerNotRunningError: nothing listens there.
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
    answer: dict[str, Any] = json.loads(line)
    return answer


def running_productions(settings: Settings) -> list[str]:
    """Names of productions under ``HIE_HOME`` whose manager answers."""
    found = []
    for sock in sorted((settings.home / "run").glob("*/manager.sock")):
        try:
            call(sock, {"command": "status"}, timeout=10)
        except (ManagerNotRunningError, OSError):
            continue
        found.append(sock.parent.name)
    return found


def socket_path(settings: Settings, production: str) -> Path:
    """Where the manager of ``production`` listens."""
    return settings.home / "run" / production / "manager.sock"
