"""HL7 over MLLP (TCP): the inbound ``HL7TCPService`` and the outbound ``HL7TCPOperation``.

``HL7TCPService`` (IRIS ``EnsLib.HL7.Service.TCPService``): its listener is run by the gateway
(``mllp_gateway``), which frames, stores, enqueues and acknowledges each message; this class holds
the item's settings and what to do per message.

``HL7TCPOperation`` (IRIS ``EnsLib.HL7.Operation.TCPOperation``) sends each message over MLLP and
decides what its ACK means with IRIS ``ReplyCodeActions`` (``hie.hl7.reply_code_actions``).
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
import threading
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hie.adapters.mllp import BlockingMLLPClient
from hie.errors import (
    ConfigError,
    DeliveryError,
    Fail,
    HL7ParseError,
    MessageError,
    PeerUnreachableError,
    Suspend,
)
from hie.hl7 import HL7Message
from hie.hl7.reply_code_actions import (
    DEFAULT_REPLY_CODE_ACTIONS,
    Decision,
    Reply,
    ReplyCodeActions,
)
from hie.hosts.base import ItemSettings
from hie.hosts.operation import BusinessOperation
from hie.hosts.service import BusinessService

log = logging.getLogger(__name__)

AckMode = Literal["never", "immediate", "application", "msh"]


class HL7TCPServiceSettings(ItemSettings):
    """Listener and acknowledgement settings of an inbound MLLP item."""

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
    ack_mode: AckMode = "immediate"
    #: Answer CA/CE/CR (commit codes) instead of AA/AE/AR in immediate mode.
    use_commit_codes: bool = False
    #: Largest message accepted (bytes); a larger one gets AR and the connection stays usable.
    max_message_size: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Bytes all connections of this service may hold in frames at once (at least one
    #: ``max_message_size``); past it, connections wait and their senders' bytes stay queued.
    max_bytes_in_flight: int = Field(default=128 * 1024 * 1024, ge=1024)
    #: Close a connection idle this long between messages (seconds; None: never). Senders
    #: reconnect on their own; a connection left open by a dead peer frees its place.
    idle_timeout: float | None = Field(default=300.0, gt=0)
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
        if self.max_bytes_in_flight < self.max_message_size:
            raise ValueError(
                f"max_bytes_in_flight ({self.max_bytes_in_flight}) must hold at least one "
                f"message of max_message_size ({self.max_message_size})"
            )
        return self


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


class HL7TCPOperationSettings(ItemSettings):
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
    reply_code_actions: str = DEFAULT_REPLY_CODE_ACTIONS
    #: Charset to send in (HL7 name or codec); None sends in the one MSH-18 names.
    charset: str | None = None
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
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    @field_validator("stay_connected", mode="before")
    @classmethod
    def _iris_stay_connected(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return value != 0
        return value

    @field_validator("reply_code_actions")
    @classmethod
    def _valid_actions(cls, value: str) -> str:
        try:
            ReplyCodeActions.parse(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
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


class HL7TCPOperation(BusinessOperation):
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
        self.actions = ReplyCodeActions.parse(self.settings.reply_code_actions)
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
        ack, reply = self._read_ack(raw_ack, msg)
        self._record_ack(ack, raw_ack, reply)
        self._apply(self.actions.evaluate(reply), msg)
        return ack

    def _exchange(
        self, client: BlockingMLLPClient, payload: bytes, msg: HL7Message
    ) -> bytes | None:
        if not client.connected:
            client.connect()  # a failure here never reached the peer: a plain retry
        try:
            return client.send(payload)
        except DeliveryError as exc:
            if not isinstance(exc, PeerUnreachableError):
                # The bytes may have reached the peer and only the ACK been lost: whatever
                # happens next (retry, resend), the receiver may see this message twice.
                self.trail.possible_duplicate(f"sent to {self.peer}, no ACK came back: {exc}")
            decision = self.actions.evaluate(Reply(error=str(exc)))
            if decision.action == "R" and decision.then == "F":
                raise
            self._apply(decision, msg)
            return None

    def _read_ack(self, raw: bytes, sent: HL7Message) -> tuple[HL7Message | None, Reply]:
        try:
            ack = HL7Message(raw)
        except (HL7ParseError, MessageError):
            # Not an HL7 message at all: it has no MSA to read, which is what :~ is for.
            return None, Reply(msa1=None, type_matches=False)
        if "MSA" not in ack.segment_names():
            return ack, Reply(msa1=None, type_matches=ack.message_code == "ACK")
        return ack, Reply(
            msa1=ack.get("MSA-1"),
            control_id_matches=ack.get_raw("MSA-2") == sent.control_id,
            type_matches=ack.message_code == "ACK",
        )

    def _record_ack(self, ack: HL7Message | None, raw: bytes, reply: Reply) -> None:
        text: str | None
        if ack is None:
            code, text = "", f"unreadable reply: {raw[:200]!r}"
        else:
            code, text = reply.msa1 or "", ack.get("MSA-3") or None
        self.trail.ack(code, text)

    def _apply(self, decision: Decision, msg: HL7Message) -> None:
        where = f"message {msg.control_id!r} to {self.peer}"
        for warning in decision.warnings:
            log.warning("%s %s: %s", self.item_name, where, warning)
            self.trail.event("warning", warning)
        reason = f"{where}: {decision.reason}"
        if decision.action == "C":
            return
        if decision.action == "R":
            if decision.then == "F":
                raise Fail(f"{reason}; retrying", after_retries=True)
            return self._suspend(f"{reason}; retried", decision.then, after_retries=True)
        if decision.action == "F":
            raise Fail(reason)
        self._suspend(reason, decision.action, after_retries=False)

    def _suspend(self, reason: str, action: str, *, after_retries: bool) -> None:
        if action == "D":
            # Disabling an item from inside its own worker is not available yet: the message is
            # kept, suspended, which is what IRIS does to it before it disables the item.
            reason += "; disable (D) is not supported, the message was suspended instead"
            log.error("%s: %s", self.item_name, reason)
        raise Suspend(reason, after_retries=after_retries)
