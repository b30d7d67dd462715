"""What happens to a message after its host raised: retry it, give it up, or set it aside.

A pure function of the error, the item's settings and how long the message has been failing, so
every rule is in one place and unit-tested with a table (``tests/unit/test_decision.py``):

* ``SkipMessage``: skipped, with its reason.
* ``Fail`` / ``Suspend``: at once; with ``after_retries``, retried first until ``failure_timeout``.
* ``Retry``: retried after its ``delay`` (else ``retry_interval``).
* Any other error: retried by operations (``retry_on_error``) and for broker or store trouble
  anywhere; a process's own error fails the message at once.
* Past ``failure_timeout`` (counted from the first attempt; -1 never) a retried message is
  suspended (IRIS semantics: kept for an operator, an alert raised), a ``Fail`` one failed.

How a retry runs depends on the item's ordering: in place for a FIFO item (later messages must not
overtake it), parked behind its key for an item ordered by key, re-published after the delay
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hie.errors import Fail, Retry, SkipMessage, StoreError, Suspend

Action = Literal["skip", "fail", "suspend", "retry"]
Ordering = Literal["none", "fifo", "keyed"]
RetryHow = Literal["republish", "in_place", "park"]
_HOW: dict[Ordering, RetryHow] = {"none": "republish", "fifo": "in_place", "keyed": "park"}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision: ``action``; for a retry, ``delay`` seconds and ``how`` it runs."""

    action: Action
    reason: str
    delay: float = 0.0
    how: RetryHow = "republish"


def decide(
    error: BaseException,
    *,
    elapsed: float,
    failure_timeout: float,
    retry_interval: float,
    retry_on_error: bool,
    ordering: Ordering = "none",
) -> Verdict:
    """The verdict for a message whose attempt raised ``error`` (see the module docstring).

    ``elapsed``: seconds since its first attempt.
    """
    reason = describe(error)
    exhausted = failure_timeout >= 0 and elapsed >= failure_timeout
    if isinstance(error, SkipMessage):
        return Verdict("skip", error.reason)
    if isinstance(error, Fail):
        if not error.after_retries or exhausted:
            return Verdict("fail", reason)
    elif isinstance(error, Suspend):
        if not error.after_retries or exhausted:
            return Verdict("suspend", error.reason)
    elif not isinstance(error, Retry) and not retry_on_error and not transient(error):
        return Verdict("fail", reason)
    if exhausted:
        return Verdict("suspend", f"gave up after failure_timeout: {reason}")
    delay = error.delay if isinstance(error, Retry) and error.delay is not None else retry_interval
    return Verdict("retry", reason, delay, _HOW[ordering])


def transient(error: BaseException) -> bool:
    """Broker or store trouble: worth retrying in any item, not a fault of the message."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(
        error, OperationalError | RedisConnectionError | RedisTimeoutError | StoreError
    )


def describe(error: BaseException) -> str:
    """``Type: text (notes)``: what is stored as a message's error."""
    head = f"{type(error).__name__}: {error}"
    notes = "; ".join(getattr(error, "__notes__", []) or [])
    return f"{head} ({notes})" if notes else head
