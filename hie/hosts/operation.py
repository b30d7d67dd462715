"""BusinessOperation: an outbound host that delivers messages to the outside world.

``on_message(request)`` is required; it returns the reply (for example the peer's ACK) or None.
An exception is retried every ``retry_interval`` seconds until ``failure_timeout`` (IRIS
semantics), then the message fails.

Example::

    class Printer(BusinessOperation):
        def on_message(self, request):
            print(request)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hie.hosts.base import Host
from hie.messages import Envelope

if TYPE_CHECKING:
    from hie.adapters.base import OutboundAdapter


class BusinessOperation(Host):
    """A host that runs as a Celery task and sends each message out through its adapter."""

    kind: ClassVar[str] = "operation"
    retry_on_error: ClassVar[bool] = True
    #: The outbound adapter class, built in ``on_init`` of each worker process.
    adapter_class: ClassVar[type[OutboundAdapter] | None] = None
    adapter: OutboundAdapter | None = None

    def on_init(self) -> None:
        """Build the outbound adapter (one per worker process)."""
        if self.adapter_class is not None:
            self.adapter = self.adapter_class(self)

    def on_tear_down(self) -> None:
        """Close the outbound adapter."""
        if self.adapter is not None:
            self.adapter.close()

    def on_message(self, request: Any) -> Any:
        """Deliver one message; required."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_message(request)")

    def _dispatch(self, envelope: Envelope) -> Any:
        return self.on_message(envelope.payload())
