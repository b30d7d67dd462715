"""Gateway: every inbound item of a production in one process.

HL7TCPService items get an asyncio MLLP listener each (``GatewayServer``), HL7HTTPService and
HTTPService items an HTTP one (``mllp_gateway.http``); polling services
(files) run their adapter loops in threads (``ServiceRunner``). All share one store and one group
committer, whose thread stores and then publishes (through the outbox) what the listeners hand it.

An item with ``processes: N`` is served by N gateway processes on the same port; process ``k``
(``hie gateway FILE --process k``, started by the manager) runs the listeners of the items with
more than ``k`` processes, and only process 0 runs the polling services and the metrics endpoint.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from dataclasses import dataclass, field

from hie.hooks import hooks_for
from hie.hosts.hl7_tcp import HL7TCPService
from hie.hosts.http_service import HL7HTTPService, HTTPService
from hie.hosts.service import BusinessService
from hie.production import Production
from hie.service_runner import ServiceRunner
from hie.settings import Settings
from hie.startup import open_dispatcher, open_store
from hie.store import GroupCommitter
from hie.supervisor.rundir import RunDir, gateway_unit, ready_file
from hie.supervisor.state import effective_production, load_state
from mllp_gateway.health import HealthServer
from mllp_gateway.loop_lag import LoopLag
from mllp_gateway.http import HL7HTTPServer, HTTPServer
from mllp_gateway.listener import Listener
from mllp_gateway.server import GatewayServer

log = logging.getLogger(__name__)

#: Which listener serves which kind of inbound item: the first whose host class it is wins.
LISTENERS: list[tuple[type[BusinessService], type[Listener]]] = [
    (HL7HTTPService, HL7HTTPServer),
    (HTTPService, HTTPServer),
    (HL7TCPService, GatewayServer),
]


def listener_class(host_class: type) -> type[Listener] | None:
    """The listener for items of ``host_class``, or None (not served by a listener)."""
    for hosts, listener in LISTENERS:
        if issubclass(host_class, hosts):
            return listener
    return None


@dataclass
class Gateway:
    """Runs the inbound side of a production until stopped."""

    production: Production
    settings: Settings
    #: Which of an item's ``processes`` this is (0: the first, which also runs the rest).
    process: int = 0
    servers: dict[str, Listener] = field(default_factory=dict)
    health: HealthServer | None = None

    def __post_init__(self) -> None:
        overrides = load_state(self.settings, self.production.name)
        self.production = effective_production(self.production, overrides)
        # The commit that gates an ACK is synced to disk (SQLite synchronous=FULL).
        self.store = open_store(self.settings, durable=True, production=self.production.name)
        self.dispatcher = open_dispatcher(self.production, self.settings, self.store)
        self.app = self.dispatcher.app
        self.committer = GroupCommitter(self.store, after_commit=self.dispatcher.outbox.publish)
        self.runner = ServiceRunner(self.production, self.dispatcher)

    async def start(self) -> None:
        """Start every enabled inbound item this gateway process serves."""
        for item in self.production.items:
            host_class = self.production.host_class(item.name)
            listener = listener_class(host_class)
            if not item.enabled or listener is None:
                continue
            service = host_class(item, self.production, dispatcher=self.dispatcher)
            assert isinstance(service, BusinessService)  # every listener serves a service
            if self.process >= service.settings.processes:  # type: ignore[attr-defined]
                continue
            service.hooks = hooks_for(self.production, item)
            service.on_init()
            server = listener(
                service, store=self.store, committer=self.committer, outbox=self.dispatcher.outbox
            )
            await server.start()
            service.on_start()
            self.servers[item.name] = server
        if self.process > 0:
            return
        self.runner.start()
        if self.settings.metrics_port is not None:
            self.health = self._health_server(self.settings.metrics_port)
            self.health.start()

    def _health_server(self, port: int) -> HealthServer:
        from hie.broker import broker_problem
        from hie.metrics import production_registry

        registry, before_scrape = production_registry(
            self.production,
            self.settings,
            self.store,
            lambda: {name: s.stats.ack_seconds for name, s in self.servers.items()},
        )

        def broker() -> str | None:
            return broker_problem(self.settings.broker_url, self.settings.broker_socket_timeout)

        def store() -> str | None:
            self.store.ping()
            return None

        def listeners() -> str | None:
            down = [n for n, s in self.servers.items() if s._server is None]
            return f"not listening: {', '.join(down)}" if down else None

        checks = {"broker": broker, "store": store, "listeners": listeners}
        return HealthServer(self.settings.metrics_host, port, registry, checks, before_scrape)

    async def stop(self) -> None:
        """Stop accepting, finish what is in hand, flush the committer."""
        if self.health is not None:
            self.health.close()
        for server in self.servers.values():
            await server.stop()
            server.service.on_stop()
            server.service.on_tear_down()
        self.runner.stop()
        self.committer.close()
        self.store.dispose()

    def _announce(self) -> None:
        """Write this process's ready file: every listener is bound (the manager waits for it)."""
        folder = RunDir.of(self.settings, self.production.name).item(gateway_unit(self.process))
        folder.mkdir(parents=True, exist_ok=True)
        ports = {name: server.port for name, server in self.servers.items()}
        ready_file(folder, os.getpid()).write_text(json.dumps({"pid": os.getpid(), "ports": ports}))

    async def serve_until_signalled(self) -> None:
        """Run until SIGINT or SIGTERM."""
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        lag = LoopLag()
        lag.start()
        await self.start()
        self._announce()
        ports = ", ".join(f"{n}:{s.port}" for n, s in self.servers.items())
        metrics = f"; metrics on port {self.health.port}" if self.health else ""
        print(
            f"gateway for {self.production.name} running: MLLP {ports or 'none'}; "
            f"{len(self.runner.services)} polling service(s){metrics}",
            flush=True,
        )
        await stop.wait()
        lag.stop()
        # Printed at every stop: publishing and storing run off the loop, and this shows it.
        print(f"gateway for {self.production.name}: {lag.summary()}", flush=True)
        await self.stop()


def run_gateway(production: Production, settings: Settings, process: int = 0) -> None:
    """Run gateway process ``process`` of ``production`` in this process until signalled."""
    asyncio.run(Gateway(production, settings, process).serve_until_signalled())
