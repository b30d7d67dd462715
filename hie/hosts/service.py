"""BusinessService: an inbound host. Its adapter receives data; the service turns it into messages.

Services run in the gateway process (``manage.py gateway``), not as Celery tasks: they are where
messages enter the production. ``on_message(data)`` is called once per inbound unit (a file, an
HL7 message), inside the production's and the item's per-message hooks; the default sends it to
every target. A hook or ``on_message`` may raise ``SkipMessage``: what arrived is stored as
skipped, with the reason, and goes nowhere.

Example::

    class LabFeed(BusinessService):
        def on_message(self, data):
            self.send_to_targets(data)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

from hie.errors import SkipMessage
from hie.hooks import HookChain
from hie.hosts.base import Host
from hie.hosts.context import CallContext, current_call
from hie.messages import Envelope

if TYPE_CHECKING:
    from hie.adapters.base import InboundAdapter
    from hie.production import Item, Production
    from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


class BusinessService(Host):
    """An inbound host: owns an inbound adapter, hands what it receives to ``on_message``."""

    kind: ClassVar[str] = "service"
    #: The inbound adapter class; ``None`` for services driven by the gateway itself (MLLP).
    adapter_class: ClassVar[type[InboundAdapter] | None] = None

    def __init__(
        self,
        item: Item,
        production: Production,
        *,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        super().__init__(item, production, dispatcher=dispatcher)
        #: Per-message hooks around ``on_message``; whoever runs the service sets them
        #: (``hie.hooks.hooks_for``), as the task registry does for processes and operations.
        self.hooks = HookChain()

    def on_message(self, data: Any) -> Any:
        """Handle one inbound unit; by default send it to every target."""
        return self.send_to_targets(data)

    def process_input(self, data: Any) -> Any:
        """Entry point for adapters: hooks and ``on_message`` for ``data`` in a fresh call context.

        Returns what ``on_message`` returned, or None when a hook or ``on_message`` skipped it.
        """
        inbound = Envelope.wrap(data, source=self.item_name) if self.hooks.hooks else None
        token = current_call.set(CallContext(envelope=None, phase="message"))
        try:
            return self._receive(data, inbound)
        except SkipMessage as exc:
            self._store_skipped(inbound or Envelope.wrap(data, source=self.item_name), exc.reason)
            return None
        finally:
            current_call.reset(token)

    def _receive(self, data: Any, inbound: Envelope | None = None) -> Any:
        """``on_message(data)`` inside the hooks, which see ``inbound`` (built when not given).

        The gateway calls this for each HL7 message; without hooks it costs one call.
        """
        if not self.hooks.hooks:
            return self.on_message(data)
        if inbound is None:
            inbound = Envelope.wrap(data, source=self.item_name)
        with self.hooks.processing(self, inbound) as outcome:
            outcome.reply = self.on_message(data)
        return outcome.reply

    def _store_skipped(self, inbound: Envelope, reason: str) -> None:
        log.info("%s skipped message %s: %s", self.item_name, inbound.message_id, reason)
        store = self.store
        if store is None:
            return
        store.save(inbound, status="skipped", event=None, item=self.item_name)
        store.set_status(
            inbound.message_id, "skipped", error=reason, item=self.item_name, event="skipped"
        )

    def make_adapter(self) -> InboundAdapter | None:
        """The adapter this service listens with (built from its settings)."""
        if self.adapter_class is None:
            return None
        return self.adapter_class(self)
