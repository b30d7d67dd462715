"""HIE's exception tree. Catch ``HIEError`` to catch everything the engine raises on purpose.

::

    HIEError
    +-- ConfigError                 a production, setting or rule is wrong
    |   +-- ProductionError         every problem of one production file, collected
    +-- MessageError                a message cannot be read or used
    |   +-- HL7ParseError           malformed HL7 v2 (no MSH, bad delimiters, ...)
    +-- AdapterError                talking to the outside world failed
    |   +-- MLLPFramingError        bytes on an MLLP connection are not a valid frame
    |   |   +-- MLLPTimeoutError    a frame did not start (Idle...) or end (Frame...) in time
    |   +-- DeliveryError           a peer refused or never acknowledged a message
    |       +-- PeerUnreachableError    no connection could be opened: nothing was sent
    |       +-- ConnectionLostError     the peer closed or reset before any byte of a reply
    +-- RequestError                a request between hosts failed
    |   +-- RequestTimeoutError     no reply within the caller's timeout
    |   +-- SelfRequestError        a synchronous request to the caller's own item
    +-- StoreError                  the message store cannot save or load
    +-- ManagerNotRunningError      no manager answers for a production (``manage.py stop``, ...)

``SkipMessage``, ``Retry``, ``Suspend`` and ``Fail`` are control flow raised by hosts and hooks,
not errors.
"""

from __future__ import annotations

from dataclasses import dataclass


class HIEError(Exception):
    """Root of every error HIE raises on purpose."""


class ConfigError(HIEError):
    """A production, an item setting or a rule is wrong."""


@dataclass(frozen=True)
class Problem:
    """One problem found while loading a production: where it is and what to do."""

    file: str
    line: int | None
    item: str | None
    message: str
    suggestion: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        item = f" item {self.item!r}:" if self.item else ""
        hint = f" ({self.suggestion})" if self.suggestion else ""
        return f"{where}:{item} {self.message}{hint}"


class ProductionError(ConfigError):
    """Every problem of a production file, reported together."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in production:\n{lines}")


class MessageError(HIEError):
    """A message cannot be read or used."""

    def __init__(self, reason: str, *, message_id: str | None = None) -> None:
        self.reason = reason
        self.message_id = message_id
        suffix = f" (message {message_id})" if message_id else ""
        super().__init__(f"{reason}{suffix}")


class HL7ParseError(MessageError):
    """Malformed HL7 v2: the reason names the segment and field where it can."""

    def __init__(
        self,
        reason: str,
        *,
        message_id: str | None = None,
        segment: str | None = None,
        field: int | None = None,
    ) -> None:
        self.segment = segment
        self.field = field
        super().__init__(reason, message_id=message_id)


class AdapterError(HIEError):
    """Talking to the outside world failed."""


class MLLPFramingError(AdapterError):
    """Bytes on an MLLP connection are not a valid frame."""


class MLLPTimeoutError(MLLPFramingError, TimeoutError):
    """A timeout while reading MLLP frames; ``except TimeoutError`` catches it too."""


class MLLPIdleTimeoutError(MLLPTimeoutError):
    """No frame started within the idle timeout (the connection is quiet, not broken)."""


class MLLPFrameTimeoutError(MLLPTimeoutError):
    """A frame started but its end block did not arrive within the frame timeout."""


class DeliveryError(AdapterError):
    """A peer refused, or never acknowledged, a message."""


class PeerUnreachableError(DeliveryError):
    """No connection to the peer could be opened, so nothing of the message reached it."""


class ConnectionLostError(DeliveryError):
    """The peer closed or reset the connection before any byte of a reply came back.

    On a connection that was reused, the client tries once more on a fresh one: the peer may
    simply have closed it while it was idle.
    """


class RequestError(HIEError):
    """A request from one host to another failed."""


class RequestTimeoutError(RequestError):
    """No reply arrived within the caller's timeout; a late reply is recorded, not delivered."""


class SelfRequestError(RequestError):
    """A synchronous request to the caller's own item, which would deadlock its worker pool."""


class StoreError(HIEError):
    """The message store cannot save or load."""


class StoreSyncError(StoreError):
    """A durable store committed but could not sync its log to disk: the commit may not survive
    a power cut, so nothing that waited on it may be acknowledged."""


class ManagerNotRunningError(HIEError):
    """No manager answers for the production asked about: it is not running, or it hung up."""


class SkipMessage(Exception):
    """Raised by a host or hook to stop processing a message on purpose; stored as skipped."""

    def __init__(self, reason: str = "skipped") -> None:
        self.reason = reason
        super().__init__(reason)


class Retry(Exception):
    """Raised by a host or hook to process the message again after ``delay`` seconds."""

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        self.reason = reason
        self.delay = delay
        super().__init__(reason)


class Suspend(Exception):
    """Raised by a host to stop a message and keep it as suspended (IRIS Suspend), with a reason.

    A suspended message is not retried; it waits for someone to resend or discard it. With
    ``after_retries`` the message is first retried per the item's ``retry_interval`` and
    ``failure_timeout``, and suspended only when they are used up (IRIS ``RS``).
    """

    def __init__(self, reason: str = "suspended", *, after_retries: bool = False) -> None:
        self.reason = reason
        self.after_retries = after_retries
        super().__init__(reason)


class Fail(Exception):
    """Raised by a host to fail a message (status error), without the retries an error would get.

    With ``after_retries`` the message is first retried per the item's ``retry_interval`` and
    ``failure_timeout``, and fails only when they are used up (IRIS ``RF``). A plain exception
    that outlives ``failure_timeout`` is suspended instead, as IRIS does.
    """

    def __init__(self, reason: str = "failed", *, after_retries: bool = False) -> None:
        self.reason = reason
        self.after_retries = after_retries
        super().__init__(reason)
