"""Settings every inbound listener shares (MLLP and HTTP): where it listens, who may connect, how
much it holds at once and what it does when a target's queue is full.

The gateway runs the listeners (``mllp_gateway``); these settings are read there, one listener
per item.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from hie.hosts.base import ItemSettings


class ListenerSettings(ItemSettings):
    """Address, limits, TLS and backpressure of one inbound listener."""

    #: Address to listen on; 127.0.0.1 unless the item says otherwise.
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    max_connections: int = Field(default=100, ge=1)
    #: Connections one client address may hold at once (a few clients cannot take them all).
    max_connections_per_client: int = Field(default=10, ge=1)
    #: Client addresses or networks allowed to connect (empty: everyone who can reach the port).
    allowed_clients: list[str] = Field(default_factory=list)
    #: TLS: server certificate and key; with ``tls_ca`` clients must present a certificate.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    #: Largest message accepted (bytes); a larger one is refused and the connection stays usable.
    max_message_size: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Bytes all connections of this service may hold in messages at once (at least one
    #: ``max_message_size``); past it, connections wait and their senders' bytes stay queued.
    max_bytes_in_flight: int = Field(default=128 * 1024 * 1024, ge=1024)
    #: Close a connection idle this long between messages (seconds; None: never). Senders
    #: reconnect on their own; a connection left open by a dead peer frees its place.
    idle_timeout: float | None = Field(default=300.0, gt=0)
    #: Give up on a message that does not finish arriving within this many seconds.
    read_timeout: float = Field(default=30.0, gt=0)
    #: When a target's queue is full (its ``max_queue_depth``): ``block`` stops reading from the
    #: socket until there is room (TCP pushes back on the sender); ``reject`` answers at once
    #: that the message was not accepted and keeps nothing, so the sender still owns it.
    backpressure: Literal["block", "reject"] = "block"
    #: In ``block`` mode, refuse the message after waiting this long for room.
    backpressure_timeout: float = Field(default=60.0, gt=0)
    #: Gateway processes listening on ``port`` together (SO_REUSEPORT: the kernel spreads new
    #: connections over them), so receiving uses more than one core.
    processes: int = Field(default=1, ge=1, le=64)

    @field_validator("allowed_clients")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # raises ValueError with the bad entry
        return value

    @model_validator(mode="after")
    def _shared_port(self) -> ListenerSettings:
        if self.processes > 1 and self.port == 0:
            raise ValueError(
                f"processes: {self.processes} needs a fixed port; with port 0 every process "
                "would listen on a port of its own"
            )
        if self.max_bytes_in_flight < self.max_message_size:
            raise ValueError(
                f"max_bytes_in_flight ({self.max_bytes_in_flight}) must hold at least one "
                f"message of max_message_size ({self.max_message_size})"
            )
        return self
