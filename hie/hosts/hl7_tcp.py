"""HL7 over MLLP (TCP): the inbound ``HL7TCPService`` and the outbound ``HL7TCPOperation``.

``HL7TCPService`` (IRIS ``EnsLib.HL7.Service.TCPService``): its listener is run by the gateway
(``mllp_gateway``), which frames, stores, enqueues and acknowledges each message; this class holds
the item's settings and what to do per message.

``HL7TCPOperation`` (IRIS ``EnsLib.HL7.Operation.TCPOperation``) sends each message over MLLP and
decides what its ACK means with IRIS ``ReplyCodeActions`` (``hie.hl7.reply_code_actions``).
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from hie.adapters.mllp import BlockingMLLPClient
from hie.adapters.tls import client_context
from hie.errors import (
    DeliveryError,
)
from hie.hl7 import HL7Message
from hie.hosts.base import ItemSettings
from hie.hosts.listener import ListenerSettings
from hie.hosts.hl7_operation import HL7Operation, HL7OperationSettings
from hie.hosts.service import BusinessService

log = logging.getLogger(__name__)

AckMode = Literal["never", "immediate", "application", "msh"]


class HL7TCPServiceSettings(ListenerSettings):
    """Listener and acknowledgement settings of an inbound MLLP item."""

    ack_mode: AckMode = "immediate"
    #: Answer CA/CE/CR (commit codes) instead of AA/AE/AR in immediate mode.
    use_commit_codes: bool = False
    #: Decode every message with this charset; else MSH-18; else ``default_charset``.
    charset: str | None = None
    default_charset: str = "utf-8"
    #: Seconds to wait for the targets in ``application`` mode before answering AE.
    app_ack_timeout: float = Field(default=30.0, gt=0)
    #: HL7 path whose value sets the priority (e.g. ``ORC-7.6`` or ``TQ1-9.1``) ...
    priority_from: str | None = None
    #: ... through this table of values to priorities 0-9 (e.g. ``{S: 9, A: 7, R: 4}``).
    priority_map: dict[str, int] = Field(default_factory=dict)


class HL7TCPService(BusinessService):
    """Receives HL7 v2 over MLLP; each message goes to every target (see ``mllp_gateway``).

    Example (a subclass that drops test messages)::

        class ADTIn(HL7TCPService):
            def on_message(self, data):
                if data.get("MSH-11") == "T":
                    raise SkipMessage("test message")
                return data
    """

    Settings: ClassVar[type[ItemSettings]] = HL7TCPServiceSettings

    def on_message(self, data: Any) -> Any:
        """What the gateway sends on for each HL7 message it received, before it is stored.

        Return the ``HL7Message`` to send to every target: ``data`` itself or a changed copy.
        Raise ``SkipMessage`` to keep it from every target (stored as skipped, acknowledged); any
        other error stores it as an error and answers AE, so the sender keeps it. The gateway
        calls this in a thread, inside the item's hooks, and only when a subclass overrides it or
        hooks are set: otherwise nothing runs per message.
        """
        return data

    def message_priority(self, message: Any) -> int | None:
        """Priority of an inbound message: from ``priority_from`` if it maps, else the item's."""
        settings: HL7TCPServiceSettings = self.settings  # type: ignore[assignment]
        if settings.priority_from:
            value = message.get(settings.priority_from)
            if value in settings.priority_map:
                return max(0, min(9, settings.priority_map[value]))
        return self.item.priority


class HL7TCPOperationSettings(HL7OperationSettings):
    """Where and how an HL7 TCP operation sends (IRIS IPAddress, Port, ConnectTimeout ...)."""

    host: str
    port: int = Field(ge=1, le=65535)
    #: Seconds to open the connection (IRIS ConnectTimeout).
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Seconds to wait for the ACK (IRIS ResponseTimeout).
    response_timeout: float = Field(default=30.0, gt=0)
    #: Keep the connection open between messages (IRIS StayConnected: 0 means no, -1 or any
    #: other number yes; idle disconnects are not timed).
    stay_connected: bool = True
    max_ack_size: int = Field(default=1 << 20, gt=0)
    framing: str = "MLLP"
    #: TLS to the peer: on with ``tls`` or any of the files below. ``tls_ca``: the CA file that
    #: signed the peer's certificate (default: the system's); ``tls_cert``/``tls_key``: this
    #: side's certificate, for peers that require one; ``tls_verify: false`` skips checking
    #: the peer's certificate and name (test peers only: anyone could stand in for it).
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True

    @property
    def uses_tls(self) -> bool:
        """True when messages go to the peer over TLS."""
        return self.tls or bool(self.tls_ca or self.tls_cert)

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context for the peer, or None for plain TCP."""
        if not self.uses_tls:
            return None
        return client_context(self.tls_ca, self.tls_cert, self.tls_key, verify=self.tls_verify)

    @field_validator("stay_connected", mode="before")
    @classmethod
    def _iris_stay_connected(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value != 0
        return value

    @field_validator("framing")
    @classmethod
    def _mllp_only(cls, value: str) -> str:
        if value.strip().upper() != "MLLP":
            raise ValueError(
                f"framing {value!r} is not supported; HL7TCPOperation sends MLLP frames only "
                "(0x0B message 0x1C 0x0D)"
            )
        return "MLLP"


class HL7TCPOperation(HL7Operation):
    """Sends HL7 messages over MLLP and applies ``reply_code_actions`` to each ACK.

    The bytes sent are the message as stored, in its own charset (or ``charset``), never
    re-serialised. The reply is the ACK as an ``HL7Message``; its MSA-1 and MSA-3 are recorded on
    the message in the store. One connection per worker slot: a thread of a threads pool, or a
    prefork child; opened on first use and again after any failure.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7TCPOperationSettings
    settings: HL7TCPOperationSettings

    def on_init(self) -> None:
        """Prepare the per-thread connections; they open on first use, after any fork."""
        super().on_init()
        self._local = threading.local()
        self._clients: list[BlockingMLLPClient] = []
        self._clients_lock = threading.Lock()

    def on_tear_down(self) -> None:
        """Close every connection this process opened."""
        with self._clients_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    @property
    def peer(self) -> str:
        """``host:port`` of the receiver, for messages."""
        return f"{self.settings.host}:{self.settings.port}"

    def _client(self) -> BlockingMLLPClient:
        client: BlockingMLLPClient | None = getattr(self._local, "client", None)
        if client is None:
            s = self.settings
            client = BlockingMLLPClient(
                s.host,
                s.port,
                connect_timeout=s.connect_timeout,
                response_timeout=s.response_timeout,
                max_ack_size=s.max_ack_size,
                ssl=s.ssl_context(),
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def on_message(self, request: Any) -> Any:
        """Send ``request``, read its ACK, and act on it; the reply is the ACK."""
        msg = request if isinstance(request, HL7Message) else HL7Message(str(request))
        payload = msg.encode(self.settings.charset)
        client = self._client()
        try:
            raw_ack = self._exchange(client, payload, msg)
        finally:
            if not self.settings.stay_connected:
                client.close()
        if raw_ack is None:
            return None  # an error the reply code actions let pass (C or W on E / X)
        return self.acknowledged(raw_ack, msg)

    def _exchange(
        self, client: BlockingMLLPClient, payload: bytes, msg: HL7Message
    ) -> bytes | None:
        if not client.connected:
            client.connect()  # a failure here never reached the peer: a plain retry
        try:
            return client.send(payload)
        except DeliveryError as exc:
            self.unanswered(exc, msg)
            return None
