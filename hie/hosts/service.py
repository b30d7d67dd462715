"""BusinessService: an inbound host. Its adapter receives data; the service turns it into messages.

Services run in the gateway process (``manage.py gateway``), not as Celery tasks: they are where
messages enter the production. ``on_message(data)`` is called once per inbound unit (a file, an
HL7 message); the default sends it to every target.

Example::

    class LabFeed(BusinessService):
        def on_message(self, data):
            self.send_to_targets(data)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from hie.hosts.base import Host
from hie.hosts.context import CallContext, current_call

if TYPE_CHECKING:
    from hie.adapters.base import InboundAdapter


class BusinessService(Host):
    """An inbound host: owns an inbound adapter, hands what it receives to ``on_message``."""

    kind: ClassVar[str] = "service"
    #: The inbound adapter class; ``None`` for services driven by the gateway itself (MLLP).
    adapter_class: ClassVar[type[InboundAdapter] | None] = None

    def on_message(self, data: Any) -> Any:
        """Handle one inbound unit; by default send it to every target."""
        return self.send_to_targets(data)

    def process_input(self, data: Any) -> Any:
        """Entry point for adapters: run ``on_message`` for ``data`` in a fresh call context."""
        token = current_call.set(CallContext(envelope=None, phase="message"))
        try:
            return self.on_message(data)
        finally:
            current_call.reset(token)

    def make_adapter(self) -> InboundAdapter | None:
        """The adapter this service listens with (built from its settings)."""
        if self.adapter_class is None:
            return None
        return self.adapter_class(self)
