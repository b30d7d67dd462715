"""What the viewer asks the production's manager, through the control socket's one client.

When no manager runs (no socket, or nobody answering) the caller gets a ``ControlReply`` saying
so instead of an exception, because the viewer is useful without a manager.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hie.errors import ManagerNotRunningError
from hie.supervisor.control import call
from hie.supervisor.rundir import RunDir

if TYPE_CHECKING:
    from hie.settings import Settings

#: What the item page may ask the manager to do.
COMMANDS = ("enable", "disable", "restart")
NOT_RUNNING = "manager not running"


@dataclass(frozen=True, slots=True)
class ControlReply:
    """The manager's answer: ``ok``, a message for the operator, and any data it sent."""

    ok: bool
    message: str
    data: dict[str, Any]


def send_command(
    settings: Settings,
    production: str,
    command: str,
    item: str | None = None,
    *,
    timeout: float = 5.0,
) -> ControlReply:
    """Send one command to the manager of ``production``; ``NOT_RUNNING`` when nobody listens."""
    request: dict[str, Any] = {"command": command}
    if item is not None:
        request["item"] = item
    try:
        reply = call(RunDir.of(settings, production).socket, request, timeout=timeout)
    except ManagerNotRunningError:
        return ControlReply(False, NOT_RUNNING, {})
    except OSError as exc:
        return ControlReply(False, f"manager did not answer: {exc}", {})
    except ValueError:
        return ControlReply(False, "manager sent an unreadable answer", {})
    ok = bool(reply.get("ok", "error" not in reply))
    message = str(reply.get("message") or reply.get("error") or ("done" if ok else "failed"))
    return ControlReply(ok, message, reply)
