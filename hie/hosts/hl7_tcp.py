"""HL7TCPService: the inbound MLLP business service (IRIS ``EnsLib.HL7.Service.TCPService``).

The service's listener is run by the gateway (``mllp_gateway``), which frames, stores, enqueues
and acknowledges each message; this class holds the item's settings and what to do per message.
"""

from __future__ import annotations

import ipaddress
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hie.hosts.base import ItemSettings
from hie.hosts.service import BusinessService

AckMode = Literal["never", "immediate", "application", "msh"]


class HL7TCPServiceSettings(ItemSettings):
    """Listener and acknowledgement settings of an inbound MLLP item."""

    #: Address to listen on; 127.0.0.1 unless the item says otherwise.
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    max_connections: int = Field(default=100, ge=1)
    #: Client addresses or networks allowed to connect (empty: everyone who can reach the port).
    allowed_clients: list[str] = Field(default_factory=list)
    #: TLS: server certificate and key; with ``tls_ca`` clients must present a certificate.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    ack_mode: AckMode = "immediate"
    #: Answer CA/CE/CR (commit codes) instead of AA/AE/AR in immediate mode.
    use_commit_codes: bool = False
    #: Largest message accepted (bytes); a larger one gets AR and the connection stays usable.
    max_message_size: int = Field(default=16 * 1024 * 1024, ge=1024)
    #: Close a connection idle this long between messages (seconds; None: never).
    idle_timeout: float | None = None
    #: Give up on a frame that does not finish within this many seconds.
    read_timeout: float = Field(default=30.0, gt=0)
    #: Decode every message with this charset; else MSH-18; else ``default_charset``.
    charset: str | None = None
    default_charset: str = "utf-8"
    #: Seconds to wait for the targets in ``application`` mode before answering AE.
    app_ack_timeout: float = Field(default=30.0, gt=0)
    #: When a target's queue is full (its ``max_queue_depth``): ``block`` stops reading from the
    #: socket until there is room (TCP pushes back on the sender); ``reject`` answers at once
    #: with AE (CE with commit codes) and keeps nothing, so the sender still owns the message.
    backpressure: Literal["block", "reject"] = "block"
    #: In ``block`` mode, answer AE after waiting this long for room.
    backpressure_timeout: float = Field(default=60.0, gt=0)
    #: HL7 path whose value sets the priority (e.g. ``ORC-7.6`` or ``TQ1-9.1``) ...
    priority_from: str | None = None
    #: ... through this table of values to priorities 0-9 (e.g. ``{S: 9, A: 7, R: 4}``).
    priority_map: dict[str, int] = Field(default_factory=dict)
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
    def _shared_port(self) -> HL7TCPServiceSettings:
        if self.processes > 1 and self.port == 0:
            raise ValueError(
                f"processes: {self.processes} needs a fixed port; with port 0 every process "
                "would listen on a port of its own"
            )
        return self


class HL7TCPService(BusinessService):
    """Receives HL7 v2 over MLLP; each message goes to every target (see ``mllp_gateway``)."""

    Settings: ClassVar[type[ItemSettings]] = HL7TCPServiceSettings
    #: Messages from this service carry this priority unless the item sets one.
    default_priority: ClassVar[int | None] = None

    def message_priority(self, message: Any) -> int | None:
        """Priority of an inbound message: from ``priority_from`` if it maps, else the item's."""
        settings: HL7TCPServiceSettings = self.settings  # type: ignore[assignment]
        if settings.priority_from:
            value = message.get(settings.priority_from)
            if value in settings.priority_map:
                return max(0, min(9, settings.priority_map[value]))
        return self.item.priority
