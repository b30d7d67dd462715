"""Adapters: how hosts talk to the outside world (files, sockets, HTTP).

An ``InboundAdapter`` belongs to a business service and runs a loop in the gateway process until
told to stop, handing each unit it receives to ``service.process_input``. An ``OutboundAdapter``
belongs to a business operation and lives once per worker process.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hie.hosts.operation import BusinessOperation
    from hie.hosts.service import BusinessService


class InboundAdapter:
    """Receives data for a business service; ``run`` loops until ``stop`` is set."""

    def __init__(self, service: BusinessService) -> None:
        self.service = service

    def run(self, stop: threading.Event) -> None:
        """Receive until ``stop`` is set; call ``self.service.process_input(data)`` per unit."""
        raise NotImplementedError(f"{type(self).__name__} must implement run(stop)")


class OutboundAdapter:
    """Sends data for a business operation; one instance per worker process."""

    def __init__(self, operation: BusinessOperation) -> None:
        self.operation = operation

    def send(self, data: Any) -> Any:
        """Deliver ``data``; return the peer's reply, if any."""
        raise NotImplementedError(f"{type(self).__name__} must implement send(data)")

    def close(self) -> None:
        """Release connections and files."""
