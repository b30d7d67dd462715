"""ServiceRunner: runs a production's business services (inbound adapters) in one process.

Each enabled service gets its host instance (``on_init``, ``on_start``), its per-message hooks
and its adapter loop in a thread of its own; ``stop()`` sets the stop event, joins the loops and
runs ``on_stop`` and ``on_tear_down``. The MLLP gateway runs its asyncio listeners beside these.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from hie.hooks import hooks_for
from hie.hosts.service import BusinessService
from hie.production import Production
from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


@dataclass
class ServiceRunner:
    """Starts and stops the polling services of a production in this process."""

    production: Production
    dispatcher: Dispatcher
    only: list[str] | None = None
    services: dict[str, BusinessService] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Create every enabled service with an adapter and start its loop."""
        for item in self.production.items:
            if not item.enabled or (self.only is not None and item.name not in self.only):
                continue
            host_class = self.production.host_class(item.name)
            if not issubclass(host_class, BusinessService) or host_class.adapter_class is None:
                continue
            service = host_class(item, self.production, dispatcher=self.dispatcher)
            service.hooks = hooks_for(self.production, item)
            service.on_init()
            service.on_start()
            adapter = service.make_adapter()
            assert adapter is not None
            thread = threading.Thread(
                target=adapter.run, args=(self._stop,), name=f"service:{item.name}", daemon=True
            )
            thread.start()
            self.services[item.name] = service
            self._threads.append(thread)
            log.info("service %s started", item.name)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every loop and tear the services down."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        for name, service in self.services.items():
            try:
                service.on_stop()
            finally:
                service.on_tear_down()
            log.info("service %s stopped", name)
