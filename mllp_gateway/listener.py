"""What every inbound listener of the gateway does before a protocol is spoken: bind (with TLS and
SO_REUSEPORT), refuse clients over the limits or outside ``allowed_clients``, count, and hold back
senders while a target's queue is full.

``GatewayServer`` (MLLP, ``mllp_gateway.server``) and the HTTP listeners (``mllp_gateway.http``)
subclass ``Listener`` and implement ``_serve`` for one accepted connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hie.adapters.mllp import ByteBudget
from hie.errors import HIEError
from hie.hosts.listener import ListenerSettings
from hie.hosts.service import BusinessService
from hie.messages import Envelope

if TYPE_CHECKING:
    from hie.outbox import Outbox
    from hie.store import GroupCommitter, MessageStore

log = logging.getLogger(__name__)


@dataclass
class GatewayStats:
    """Counters of one listener (read by tests, benchmarks and the metrics endpoint)."""

    connections: int = 0
    received: int = 0
    acked: int = 0
    rejected: int = 0
    #: Messages answered AE because the store did not take them.
    errors: int = 0
    refused_connections: int = 0
    #: Messages answered AE because a target queue stayed full.
    busy: int = 0
    ack_seconds: list[float] = field(default_factory=list)


class Listener:
    """An asyncio server for one inbound item; ``_serve`` speaks the protocol."""

    def __init__(
        self,
        service: BusinessService,
        *,
        store: MessageStore,
        committer: GroupCommitter,
        outbox: Outbox,
    ) -> None:
        self.service = service
        self.settings: ListenerSettings = service.settings  # type: ignore[assignment]
        self.store = store
        self.committer = committer
        self.outbox = outbox
        self.stats = GatewayStats()
        self._server: asyncio.Server | None = None
        self._open = 0
        #: Bytes in messages over all connections (``max_bytes_in_flight``).
        self.budget = ByteBudget(self.settings.max_bytes_in_flight)
        #: Open connections per client address (``max_connections_per_client``).
        self._per_client: dict[str, int] = {}
        self._networks = [
            ipaddress.ip_network(n, strict=False) for n in self.settings.allowed_clients
        ]

    @property
    def port(self) -> int:
        """The port actually bound (useful when the item says port 0)."""
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    def _ssl_context(self) -> ssl.SSLContext | None:
        s = self.settings
        if not s.tls_cert:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(s.tls_cert, s.tls_key)
        if s.tls_ca:
            context.load_verify_locations(s.tls_ca)
            context.verify_mode = ssl.CERT_REQUIRED
        return context

    async def start(self) -> None:
        """Bind and start accepting connections."""
        self._server = await asyncio.start_server(
            self._connection,
            self.settings.host,
            self.settings.port,
            ssl=self._ssl_context(),
            # Frames are read (and counted against the budget) 256 KiB at a time at most.
            limit=1 << 18,
            # Several gateway processes on one port: the kernel spreads connections over them.
            reuse_port=self.settings.processes > 1,
        )
        log.info("%s listening on %s:%s", self.service.item_name, self.settings.host, self.port)

    async def stop(self) -> None:
        """Stop accepting; connections in progress finish the message in hand."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # -- connections ----------------------------------------------------------------------------
    def _allowed(self, peer: tuple[str, int] | None) -> bool:
        if not self._networks:
            return True
        if peer is None:
            return False
        address = ipaddress.ip_address(peer[0])
        return any(address in network for network in self._networks)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        if (
            self._open >= self.settings.max_connections
            or self._per_client.get(client, 0) >= self.settings.max_connections_per_client
            or not self._allowed(peer)
        ):
            self.stats.refused_connections += 1
            log.warning("%s refused a connection from %s", self.service.item_name, peer)
            writer.close()
            return
        self._open += 1
        self._per_client[client] = self._per_client.get(client, 0) + 1
        self.stats.connections += 1
        try:
            await self._serve(reader, writer, peer)
        finally:
            self._open -= 1
            if (left := self._per_client[client] - 1) > 0:
                self._per_client[client] = left
            else:
                del self._per_client[client]
            writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        """One accepted connection, until it closes."""
        raise NotImplementedError

    def envelopes(
        self, body: object, priority: int | None, headers: dict[str, str] | None = None
    ) -> list[Envelope]:
        """One envelope per target, all in one new session (none: one without a target)."""
        fields: dict[str, Any] = {"source": self.service.item_name}
        if priority is not None:
            fields["priority"] = priority
        if headers:
            fields["headers"] = headers
        targets: list[str | None] = [*self.service.targets] or [None]
        first = Envelope.wrap(body, target=targets[0], **fields)
        rest = [
            Envelope.wrap(body, target=t, session_id=first.session_id, **fields)
            for t in self.service.targets[1:]
        ]
        # Ordering keys are set here, before the store, so every hop and the record agree.
        return [self.outbox.prepare(e) for e in (first, *rest)]

    async def _keep(
        self, envelope: Envelope, status: str, reason: str, raw_body: bytes | None = None
    ) -> bool:
        """Store a message that goes nowhere, with its status and reason (and the bytes as they
        came, when given); False if not stored."""
        item = self.service.item_name
        try:
            await self.committer.submit_async(
                envelope, status=status, item=item, event=None, raw_body=raw_body
            )
            await asyncio.to_thread(
                self.store.set_status, envelope.message_id, status, error=reason, item=item
            )
        except HIEError as exc:
            log.error("%s cannot store message %s: %s", item, envelope.message_id, exc)
            return False
        return True

    async def _room_for(self, envelopes: list[Envelope]) -> bool:
        """Backpressure: wait (block mode) or refuse (reject mode) while a target queue is full."""
        backpressure = self.outbox.backpressure
        if not backpressure.limits(envelopes):
            return True
        if self.settings.backpressure == "reject":
            full = backpressure.full_cached(envelopes)
            if full is None:
                full = await asyncio.to_thread(backpressure.full, envelopes)
            if full:
                return False
        elif not await backpressure.wait_for_room_async(
            envelopes, timeout=self.settings.backpressure_timeout
        ):
            return False
        backpressure.added(envelopes)
        return True
