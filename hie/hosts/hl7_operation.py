"""What every HL7 operation does with the answer it gets: read the ACK, record it, and act on it
with IRIS ``ReplyCodeActions`` (``hie.hl7.reply_code_actions``).

``HL7TCPOperation`` (MLLP) and ``HL7HTTPOperation`` (HTTP POST) differ only in how the bytes
travel; both derive from ``HL7Operation`` so an ACK means the same thing whichever way it came.
"""

from __future__ import annotations

import logging

from pydantic import field_validator

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

log = logging.getLogger(__name__)


class HL7OperationSettings(ItemSettings):
    """What every HL7 operation's settings have: how ACKs are judged, and the charset sent in."""

    #: IRIS ReplyCodeActions, e.g. ``:?R=RF,:?E=S,:~=S,:?A=C,:*=S,:I?=W,:T?=C`` (the default).
    reply_code_actions: str = DEFAULT_REPLY_CODE_ACTIONS
    #: Charset to send in (HL7 name or codec); None sends in the one MSH-18 names.
    charset: str | None = None

    @field_validator("reply_code_actions")
    @classmethod
    def _valid_actions(cls, value: str) -> str:
        try:
            ReplyCodeActions.parse(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value


class HL7Operation(BusinessOperation):
    """An operation that sends HL7 messages and applies ``reply_code_actions`` to the ACKs.

    Its settings derive from ``HL7OperationSettings``; subclasses name their receiver in
    ``peer``.
    """

    actions: ReplyCodeActions

    def on_init(self) -> None:
        """Parse the reply code actions once per worker process."""
        super().on_init()
        settings: HL7OperationSettings = self.settings  # type: ignore[assignment]
        self.actions = ReplyCodeActions.parse(settings.reply_code_actions)

    @property
    def peer(self) -> str:
        """Where messages go, for log lines and errors."""
        raise NotImplementedError

    def acknowledged(self, raw_ack: bytes, sent: HL7Message) -> HL7Message | None:
        """Read, record and act on the peer's answer to ``sent``; the ACK is the reply.

        Raises ``Fail`` / ``Suspend`` as the reply code actions say (or returns for C and W).
        """
        ack, reply = self._read_ack(raw_ack, sent)
        self._record_ack(ack, raw_ack, reply)
        self._apply(self.actions.evaluate(reply), sent)
        return ack

    def unanswered(self, exc: DeliveryError, sent: HL7Message) -> None:
        """No ACK came back: act on the error as the reply code actions say for ``E``.

        Re-raises ``exc`` when the actions say retry and then fail (the default), so the
        message is retried per ``retry_interval``; returns when they let the error pass.
        """
        if not isinstance(exc, PeerUnreachableError):
            # The bytes may have reached the peer and only the ACK been lost: whatever
            # happens next (retry, resend), the receiver may see this message twice.
            self.trail.possible_duplicate(f"sent to {self.peer}, no ACK came back: {exc}")
        decision = self.actions.evaluate(Reply(error=str(exc)))
        if decision.action == "R" and decision.then == "F":
            raise exc
        self._apply(decision, sent)

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
