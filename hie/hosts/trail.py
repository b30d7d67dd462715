"""Trail: what a host records about the message in hand (events, the ACK it got, a duplicate flag).

Inside a worker's hop the records wait in the call context and are written with the hop's own
record, in the same transaction (``MessageStore.record_hops``): an operation that got an ACK costs
no extra write. Anywhere else (a service in the gateway) they are written at once.

Example::

    class Courier(BusinessOperation):
        def on_message(self, request):
            code = self.peer.send(request)
            self.trail.ack(code)
            self.trail.event("delivered", f"to {self.peer}")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hie.hosts.context import CallContext, current_call

if TYPE_CHECKING:
    from uuid import UUID

    from hie.hosts.base import Host
    from hie.store import MessageStore


class Trail:
    """The recorder of one host (``host.trail``)."""

    def __init__(self, host: Host) -> None:
        self._host = host

    def event(self, name: str, detail: str) -> None:
        """Add an event to the trail of the message in hand."""
        call = self._in_hop()
        if call is not None:
            call.events.append((name, detail))
        elif (target := self._target()) is not None:
            store, message_id, item = target
            store.record_event(message_id, name, item=item, detail=detail)

    def ack(self, code: str, text: str | None = None) -> None:
        """The ACK the peer answered for the message in hand (MSA-1 and MSA-3)."""
        call = self._in_hop()
        if call is not None:
            call.ack = (code, text)
        elif (target := self._target()) is not None:
            store, message_id, item = target
            store.set_ack(message_id, code, text, event="ack_received", item=item)

    def possible_duplicate(self, detail: str) -> None:
        """The message in hand may have reached its peer twice (sent, but no ACK came back)."""
        call = self._in_hop()
        if call is not None:
            call.possible_duplicate = detail
        elif (target := self._target()) is not None:
            store, message_id, item = target
            store.mark_possible_duplicate(message_id, detail, item=item)

    @staticmethod
    def _in_hop() -> CallContext | None:
        call = current_call.get()
        return call if call is not None and call.in_task else None

    def _target(self) -> tuple[MessageStore, UUID, str] | None:
        """Where to write at once: the store, the message in hand and the item (None: nowhere)."""
        envelope = self._host.current
        store = self._host.store
        if store is None or envelope is None:
            return None
        return store, envelope.message_id, self._host.item_name
