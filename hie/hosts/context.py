"""The message a host is handling right now, per thread (threads pools share one host instance)."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from hie.messages import Envelope

Phase = Literal["message", "request", "response", "complete"]


@dataclass
class CallContext:
    """What the framework knows about the message in hand while a host hook runs."""

    envelope: Envelope | None
    phase: Phase = "message"
    #: Async requests made during ``on_request``; sent as one chord once it returns.
    pending: list[Envelope] = field(default_factory=list)
    #: Set by ``defer_response()``: the reply will be sent later under this token.
    deferred_token: str | None = None
    #: Fire-and-forget sends of a task: saved with the hop's completion, published after it.
    outbox: list[Envelope] = field(default_factory=list)
    #: Events about the message in hand (``event``, ``detail``), written with its hop's record.
    events: list[tuple[str, str]] = field(default_factory=list)
    #: The ACK an operation received for the message in hand (code, text), written likewise.
    ack: tuple[str, str | None] | None = None
    #: Why the message in hand may have reached its peer twice, written likewise.
    possible_duplicate: str | None = None
    #: True inside a Celery task (HostTask), where the outbox is flushed at the end of the hop.
    in_task: bool = False


current_call: ContextVar[CallContext | None] = ContextVar("hie_current_call", default=None)
