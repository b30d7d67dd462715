"""What an operator may do to stored messages: resend (to its item or another, one or many),
suspend, discard. The command line and the viewer both act through here; each act is audited.

Resend never touches the original: it makes a new message in the same session whose parent is
the original, so the trace shows both and the target's idempotency key (message id, target) lets
the copy through. The copy is stored as queued, then published (``Dispatcher.send``). It carries
``hie-resent-from`` (the original's id) and never ``hie-await``: nobody waits for a resent copy
(the caller of the original request, or its chord, is long gone).

Suspend and discard only change the record: a copy of the message already on the broker is not
withdrawn, but the worker that takes it skips it (the claim reads the status first).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from hie.errors import ConfigError
from hie.messages import new_id
from hie.store import Status

if TYPE_CHECKING:
    from hie.messages import Envelope
    from hie.production import Production
    from hie.store import MessageStore

#: The action names operators have, and the status each set-aside leaves the message in.
ACTIONS = ("resend", "suspend", "discard")
SET_ASIDE = {"suspend": Status.SUSPENDED, "discard": Status.DISCARDED}
#: The event that records who did what.
AUDIT = "audit"
#: The header a resent copy carries: the id of the message it copies.
RESENT_FROM = "hie-resent-from"
#: Headers a copy does not inherit (a request/reply link belongs to the original).
_NOT_COPIED = ("hie-await",)
#: Statuses a message cannot be set aside from: it is done.
_FINISHED = (Status.COMPLETED, Status.SKIPPED)


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
        ConfigError: no target, or it is not a process or operation of this production.
        StoreError: the message is not in the store.
    """
    original = store.load(message_id)
    to = target or original.target
    if to is None:
        raise ConfigError(f"message {original.message_id} has no target: name one (--to)")
    if to not in resend_targets(production):
        raise ConfigError(
            f"cannot resend to {to!r}: it is not a business process or operation of "
            f"production {production.name}"
        )
    headers = {k: v for k, v in original.headers.items() if k not in _NOT_COPIED}
    copy = original.model_copy(
        update={
            "message_id": new_id(),
            "parent_id": original.message_id,
            "target": to,
            "created_at": datetime.now(UTC),
            "headers": {**headers, RESENT_FROM: str(original.message_id)},
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


def resend_many(
    store: MessageStore,
    sender: Sender,
    production: Production,
    message_ids: Sequence[str],
    *,
    target: str | None,
    user: str,
) -> list[Envelope]:
    """Resend each of ``message_ids`` (a query's answer), in order; returns the copies.

    Every target is checked before the first copy goes: a bad ``target`` sends nothing.
    """
    if target is not None and target not in resend_targets(production):
        raise ConfigError(
            f"cannot resend to {target!r}: it is not a business process or operation of "
            f"production {production.name}"
        )
    return [resend(store, sender, production, mid, target=target, user=user) for mid in message_ids]


def set_aside(store: MessageStore, message_id: str, action: str, *, user: str) -> Status:
    """Suspend or discard a message, and record who did it; returns the status it had.

    Raises:
        ConfigError: the message is already done (completed or skipped).
        StoreError: the message is not in the store.
    """
    status = SET_ASIDE[action]
    before = store.header(message_id).status
    if before in _FINISHED:
        raise ConfigError(f"message {message_id} is already {before}: nothing to {action}")
    store.set_status(message_id, status, detail=f"{action} by {user} (was {before})")
    store.record_event(message_id, AUDIT, detail=f"{action} by {user}")
    return before
