"""Ready-made HL7 hosts: the MLLP operation, and the file service and operation.

``HL7TCPOperation`` sends each message over MLLP and decides what its ACK means with IRIS
``ReplyCodeActions`` (parsed and evaluated by ``ReplyCodeActions`` below). ``HL7FileService``
picks up files of one or many messages (FHS/BHS batches too) and sends each message on its own;
``HL7FileOperation`` writes each message to a file of its own, atomically.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from hie.adapters.file import FileInboundAdapter, FileOutboundAdapter
from hie.adapters.mllp import BlockingMLLPClient
from hie.errors import ConfigError, DeliveryError, Fail, HL7ParseError, MessageError, Suspend
from hie.hl7 import HL7Message, split_batch
from hie.hosts.base import ItemSettings
from hie.hosts.file import FileOperationSettings, FileServiceSettings
from hie.hosts.operation import BusinessOperation
from hie.hosts.service import BusinessService
from hie.messages import BODY_TEXT, Envelope

log = logging.getLogger(__name__)

#: IRIS's default for HL7 operations: reject = retry then fail, error / no MSA / anything else
#: = suspend, accept = completed, control id mismatch = warning, reply type mismatch = completed.
DEFAULT_REPLY_CODE_ACTIONS = ":?R=RF,:?E=S,:~=S,:?A=C,:*=S,:I?=W,:T?=C"

_ACTION_LETTERS = frozenset("CWRSDF")
_MSA_CODES = {"?A": ("AA", "CA"), "?E": ("AE", "CE"), "?R": ("AR", "CR")}


# -- ReplyCodeActions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyRule:
    """One ``<code>=<actions>`` pair of a ReplyCodeActions setting."""

    code: str
    actions: str

    @property
    def warn_only(self) -> bool:
        """Rules whose actions are only ``W`` are all evaluated; the others, first match wins."""
        return set(self.actions) == {"W"}


@dataclass(frozen=True)
class Reply:
    """What an operation observed about one send: the ACK it read, or the error it met.

    ``msa1`` is None when the reply has no MSA segment; ``error`` is set (and the other fields
    unused) when no reply frame came back at all.
    """

    msa1: str | None = None
    control_id_matches: bool = True
    type_matches: bool = True
    error: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with a message: ``action`` is C, R, S, D or F; ``then`` follows an R."""

    action: str
    reason: str
    then: str = "F"
    warnings: tuple[str, ...] = field(default_factory=tuple)


class ReplyCodeActions:
    """IRIS ``ReplyCodeActions``: ``<code>=<actions>,...``, evaluated against one reply.

    Codes (after a colon, about the ACK): ``:AA`` or any literal MSA-1 value; ``:?A`` AA or CA;
    ``:?E`` AE or CE; ``:?R`` AR or CR; ``:_`` an empty MSA-1; ``:*`` any MSA-1 value no other
    MSA-1 code in the list matched; ``:~`` no MSA segment; ``:I?`` MSA-2 is not the MSH-10 sent;
    ``:T?`` the reply is not an ACK. Codes without a colon are about the send itself: ``E`` any
    error, ``E*<text>`` an error whose text contains ``<text>``, ``X`` no reply at all.

    Actions, alone or combined: ``C`` completed, ``W`` warn (completed unless another action
    applies), ``R`` retry per retry_interval / failure_timeout and then fail, or suspend with
    ``S``, or disable with ``D``; ``S`` suspend; ``D`` disable; ``F`` fail. Rules that only warn
    are all evaluated; of the others the first match, left to right, decides. No match:
    completed; an error no rule matches: retried, then failed.

    One deliberate difference from IRIS: an ACK whose MSA-2 is not the MSH-10 just sent is
    retried (then failed) unless ``:I?`` names an action other than ``W``. On a connection kept
    open, such an ACK means the stream is out of step, and taking it as this message's ACK could
    mark as delivered a message the peer never acknowledged.

    Example::

        actions = ReplyCodeActions.parse(":?R=RF,:?E=S,:*=S")
        actions.evaluate(Reply(msa1="AE")).action  # "S"
    """

    def __init__(self, rules: list[ReplyRule]) -> None:
        self.rules = rules

    @classmethod
    def parse(cls, text: str) -> ReplyCodeActions:
        """Parse a setting; raises ``ConfigError`` naming the first pair that is wrong."""
        rules: list[ReplyRule] = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            code, sep, actions = part.rpartition("=")
            code, actions = code.strip(), actions.strip().upper()
            if not sep or not code:
                raise ConfigError(f"reply code action {part!r} is not <code>=<actions>")
            if not actions or not set(actions) <= _ACTION_LETTERS:
                raise ConfigError(
                    f"reply code action {part!r}: actions must be letters of C W R S D F"
                )
            _check_code(code, part)
            rules.append(
                ReplyRule(code if code.startswith(("E*", "e*")) else code.upper(), actions)
            )
        return cls(rules)

    def __str__(self) -> str:
        return ",".join(f"{r.code}={r.actions}" for r in self.rules)

    def evaluate(self, reply: Reply) -> Decision:
        """The decision for ``reply`` (see the class docstring for the rules)."""
        warnings = tuple(
            f"{r.code} matched" for r in self.rules if r.warn_only and self._match(r, reply)
        )
        if not reply.control_id_matches and reply.error is None:
            # An ACK for another message says nothing about this one: only :I? may decide.
            for rule in self.rules:
                if rule.code == ":I?" and not rule.warn_only:
                    return _decision(rule, reply, warnings)
            return Decision("R", "the ACK's MSA-2 is not the control id sent", "F", warnings)
        for rule in self.rules:
            if not rule.warn_only and self._match(rule, reply):
                return _decision(rule, reply, warnings)
        if reply.error is not None:
            return Decision("R", reply.error, "F", warnings)
        return Decision("C", "no reply code action matched", warnings=warnings)

    def _match(self, rule: ReplyRule, reply: Reply) -> bool:
        code = rule.code
        if reply.error is not None:
            if code == "E" or code == "X":
                return True
            return code.startswith("E*") and code[2:].lower() in reply.error.lower()
        if not code.startswith(":"):
            return False
        key = code[1:]
        if key == "~":
            return reply.msa1 is None
        if key == "I?":
            return not reply.control_id_matches
        if key == "T?":
            return not reply.type_matches
        if reply.msa1 is None:
            return False
        if key == "*":
            return not any(
                self._msa_match(r.code[1:], reply.msa1)
                for r in self.rules
                if r.code.startswith(":") and r.code[1:] not in ("*", "~", "I?", "T?")
            )
        return self._msa_match(key, reply.msa1)

    @staticmethod
    def _msa_match(key: str, msa1: str) -> bool:
        if key == "_":
            return msa1 == ""
        if key in _MSA_CODES:
            return msa1.upper() in _MSA_CODES[key]
        return msa1.upper() == key


def _check_code(code: str, part: str) -> None:
    upper = code.upper()
    if upper.startswith("E#"):
        raise ConfigError(
            f"reply code action {part!r}: E#<statuscode> matches IRIS status codes, which HIE "
            "does not have; use E*<text> to match the error's text"
        )
    if upper in ("E", "X") or upper.startswith("E*"):
        return
    if not re.fullmatch(r":(\?[AER]|[*_~]|I\?|T\?|[A-Z0-9]{1,5})", upper):
        raise ConfigError(
            f"reply code action {part!r}: unknown code {code!r}; use :<MSA-1 value>, :?A, :?E, "
            ":?R, :_, :*, :~, :I?, :T?, E, E*<text> or X"
        )


def _decision(rule: ReplyRule, reply: Reply, warnings: tuple[str, ...]) -> Decision:
    what = f"reply {reply.error or f'MSA-1 {reply.msa1!r}'} matched {rule.code}={rule.actions}"
    letters = rule.actions
    if "R" in letters:
        then = "S" if "S" in letters else "D" if "D" in letters else "F"
        return Decision("R", what, then, warnings)
    action = next((a for a in "DSF" if a in letters), "C")
    return Decision(action, what, warnings=warnings)


# -- HL7TCPOperation ------------------------------------------------------------------------------


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
            if not str(exc).startswith("cannot connect"):
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


# -- HL7FileOperation -----------------------------------------------------------------------------


class HL7FileOperationSettings(FileOperationSettings):
    """Where and how an HL7 file operation writes; ``charset`` None = the message's MSH-18."""

    filename: str = "{timestamp}_{control_id}.hl7"
    charset: str | None = None  # type: ignore[assignment]


class HL7FileOperation(BusinessOperation):
    """Writes each HL7 message to its own file in ``file_path``, atomically (temp + rename).

    ``filename`` takes ``{control_id}``, ``{type}`` (``ADT_A01``), ``{message_id}``,
    ``{timestamp}``, ``{session_id}``, ``{source}`` and ``{item}``. The reply is the file's path.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7FileOperationSettings
    settings: HL7FileOperationSettings
    adapter_class = FileOutboundAdapter
    _charset_lock = threading.Lock()

    def on_message(self, request: Any) -> Any:
        """Write ``request`` in its own charset (or ``charset``); return the path written."""
        msg = request if isinstance(request, HL7Message) else HL7Message(str(request))
        assert isinstance(self.adapter, FileOutboundAdapter)
        fields = {"control_id": _safe(msg.control_id), "type": _safe(msg.message_type)}
        # The adapter encodes with its one charset, but ours is per message; the lock keeps the
        # threads of a threads pool from writing with each other's charset.
        with self._charset_lock:
            self.adapter.charset = self.settings.charset or msg.codec
            return str(self.adapter.send(msg.to_er7(), **fields))


def _safe(value: str) -> str:
    """A message field made safe for a file name (``ADT^A01`` -> ``ADT_A01``)."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", value).strip("._") or "none"


# -- HL7FileService -------------------------------------------------------------------------------


class HL7FileServiceSettings(FileServiceSettings):
    """Where an HL7 file service polls; bad files go to ``error_path`` (default ``.error``)."""

    error_path: str | None = None


class _HL7FileAdapter(FileInboundAdapter):
    """Reads files as bytes (the service decodes per MSH-18) and moves bad files aside."""

    def take(self, path: Path) -> None:
        """Hand one file to the service; a file with any unreadable message goes to errors."""
        service = self.service
        assert isinstance(service, HL7FileService)
        try:
            clean = service.process_file(path.name, path.read_bytes())
        except Exception:
            log.exception("file %s could not be processed; moved to the error folder", path)
            clean = False
        if clean:
            if self.archive is not None:
                self._move(path, self.archive)
            else:
                path.unlink(missing_ok=True)
        else:
            error_path = service.settings.error_path
            self._move(path, Path(error_path) if error_path else self.folder / ".error")
        self._seen.pop(path, None)


class HL7FileService(BusinessService):
    """Picks up HL7 files, splits them (FHS/BHS batches, several MSH) and sends each message.

    Each message goes to the targets as an envelope of its own. A message that cannot be read is
    stored with status ``error`` and its reason, and its file is moved to the error folder once
    the readable ones were sent: nothing is dropped silently.
    """

    Settings: ClassVar[type[ItemSettings]] = HL7FileServiceSettings
    settings: HL7FileServiceSettings
    adapter_class = _HL7FileAdapter

    def process_file(self, name: str, data: bytes) -> bool:
        """Send every message of one file; False when some part of it could not be read."""
        text = self._decode(data)
        clean = True
        for chunk in _message_chunks(text):
            if not chunk.startswith("MSH"):
                self._store_unreadable(name, chunk, "a line outside any message (no MSH before it)")
                clean = False
                continue
            try:
                messages = split_batch(chunk)
            except HL7ParseError as exc:
                self._store_unreadable(name, chunk, str(exc))
                clean = False
                continue
            for msg in messages:
                self.process_input(msg)
        return clean

    def _decode(self, data: bytes) -> str:
        """The file's text: in the charset its first MSH-18 names, else ``charset``."""
        from hie.hl7 import python_codec, sniff_charset

        data = data.removeprefix(b"\xef\xbb\xbf")
        codec = python_codec(sniff_charset(data), default=self.settings.charset)
        return data.decode(codec)

    def _store_unreadable(self, name: str, text: str, reason: str) -> None:
        log.error("%s: a message in file %s cannot be read: %s", self.item_name, name, reason)
        store = self.store
        if store is None:
            return
        envelope = Envelope(body_type=BODY_TEXT, body=text, source=self.item_name)
        store.save(envelope, status="error", event=None, item=self.item_name)
        store.set_status(
            envelope.message_id,
            "error",
            item=self.item_name,
            event="parse_error",
            error=f"file {name}: {reason}",
        )


def _message_chunks(text: str) -> list[str]:
    """The text of each message in a file, unparsed: one chunk per MSH, envelopes dropped.

    ``split_batch`` is all-or-nothing; chunks let one bad message be kept aside while the others
    of the same file go on.
    """
    chunks: list[str] = []
    current: list[str] = []
    for line in re.split(r"\r\n|\n|\r", text):
        name = line[:3]
        if name == "MSH" or name in ("FHS", "BHS", "BTS", "FTS"):
            if current:
                chunks.append("\r".join(current))
            current = [line] if name == "MSH" else []
        elif current:
            current.append(line)
        elif line.strip():
            # A line before any MSH: its own chunk, so split_batch reports or skips it as usual.
            chunks.append(line)
    if current:
        chunks.append("\r".join(current))
    return chunks
