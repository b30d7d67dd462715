"""A small client for the production manager's control socket.

The manager listens on ``HIE_HOME/run/<production>/manager.sock`` and answers one JSON line per
request, e.g. ``{"command": "enable", "item": "ADT.Out"}``. When no manager runs (no socket, or
nobody answering) the caller gets a ``ControlReply`` saying so instead of an exception, because
the viewer is useful without a manager.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What the item page may ask the manager to do.
COMMANDS = ("enable", "disable", "restart")
NOT_RUNNING = "manager not running"


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The manager's answer: ``ok``, a message for the operator, and any data it sent."""

    ok: bool
    message: str
    data: dict[str, Any]


def socket_path(home: Path, production: str) -> Path:
    """Where the manager of ``production`` listens."""
    return home / "run" / production / "manager.sock"


def send_command(
    path: Path, command: str, item: str | None = None, *, timeout: float = 5.0
) -> ControlReply:
    """Send one command and read one JSON line back; ``NOT_RUNNING`` when nobody listens."""
    if not path.exists():
        return ControlReply(False, NOT_RUNNING, {})
    request: dict[str, Any] = {"command": command}
    if item is not None:
        request["item"] = item
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps(request).encode() + b"\n")
            data = _read_line(sock)
    except (ConnectionRefusedError, FileNotFoundError):
        return ControlReply(False, NOT_RUNNING, {})
    except OSError as exc:
        return ControlReply(False, f"manager did not answer: {exc}", {})
    try:
        reply = json.loads(data)
    except ValueError:
        return ControlReply(False, "manager sent an unreadable answer", {})
    if not isinstance(reply, dict):
        return ControlReply(False, "manager sent an unreadable answer", {})
    ok = bool(reply.get("ok", "error" not in reply))
    message = str(reply.get("message") or reply.get("error") or ("done" if ok else "failed"))
    return ControlReply(ok, message, reply)


def _read_line(sock: socket.socket, limit: int = 1 << 20) -> bytes:
    buf = b""
    while b"\n" not in buf and len(buf) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return buf.split(b"\n", 1)[0]
