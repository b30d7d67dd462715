"""What an operator may do to a stored message: resend, suspend, discard. Each one is audited.

Resend never touches the original: it makes a new message in the same session whose parent is
the original, so the trace shows both and the target's idempotency key (message id, target) lets
the copy through. The new message is stored as queued, then published (``Dispatcher.send``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol
from uuid import uuid4

from hie.errors import ConfigError
from hie.store import Status

if TYPE_CHECKING:
    from hie.messages import Envelope
    from hie.production import Production
    from hie.store import MessageStore

#: The action names the viewer offers, and the status each one leaves the message in.
ACTIONS = ("resend", "suspend", "discard")
_FINAL_STATUS = {"suspend": Status.SUSPENDED, "discard": Status.DISCARDED}
AUDIT = "audit"


class Sender(Protocol):
    """What resend needs from a dispatcher: store as queued and publish."""

    def send(self, envelope: Envelope) -> object: ...


def resend_targets(production: Production) -> list[str]:
    """Items a message can be resent to: processes and operations (services only receive)."""
    return [i.name for i in production.items if production.host_class(i.name).kind != "service"]


def resend(
    store: MessageStore,
    sender: Sender,
    production: Production,
    message_id: str,
    *,
    target: str | None,
    user: str,
) -> Envelope:
    """Send a copy of ``message_id`` to ``target`` (default: its own); returns the new envelope.

    Raises:
        ConfigError: the target is not a process or operation of this production.
        StoreError: the message is not in the store.
    """
    original = store.load(message_id)
    to = target or original.target
    if to not in resend_targets(production):
        raise ConfigError(
            f"cannot resend to {to!r}: it is not a business process or operation of "
            f"production {production.name}"
        )
    copy = original.model_copy(
        update={
            "message_id": uuid4(),
            "parent_id": original.message_id,
            "target": to,
            "created_at": datetime.now(UTC),
            "headers": {**original.headers, "resent_from": str(original.message_id)},
        }
    )
    sender.send(copy)
    store.record_event(
        original.message_id, "resent", item=to, detail=f"as {copy.message_id} by {user}"
    )
    store.record_event(
        original.message_id, AUDIT, detail=f"resend by {user} to {to} as {copy.message_id}"
    )
    return copy


def change_status(store: MessageStore, message_id: str, action: str, *, user: str) -> None:
    """Suspend or discard a message, and record who did it."""
    status = _FINAL_STATUS[action]
    store.set_status(message_id, status, detail=f"{action} by {user}")
    store.record_event(message_id, AUDIT, detail=f"{action} by {user}")
