"""The retry / suspend / fail decision, case by case (a pure function: no broker, no store)."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from hie.errors import Fail, Retry, SkipMessage, StoreError, Suspend
from hie.tasks.decision import Verdict, decide, describe

# (case, error, elapsed s, failure_timeout, retry_on_error, ordering, expected action, how, delay)
# fmt: off
CASES = [
    ("skip", SkipMessage("not for us"), 0, 15, True, "none", "skip", None, None),
    ("fail at once", Fail("bad"), 0, 15, True, "none", "fail", None, None),
    ("fail after retries, early", Fail("x", after_retries=True), 1, 15, True, "none",
     "retry", "republish", 5.0),
    ("fail after retries, late", Fail("x", after_retries=True), 16, 15, True, "none",
     "fail", None, None),
    ("suspend at once", Suspend("AE"), 0, 15, True, "none", "suspend", None, None),
    ("suspend after retries, early", Suspend("x", after_retries=True), 3, 15, True, "none",
     "retry", "republish", 5.0),
    ("suspend after retries, late", Suspend("x", after_retries=True), 15, 15, True, "none",
     "suspend", None, None),
    ("retry with its own delay", Retry("later", delay=0.5), 0, 15, False, "none",
     "retry", "republish", 0.5),
    ("retry without delay", Retry("later"), 0, 15, False, "none", "retry", "republish", 5.0),
    ("retry past the timeout", Retry("later"), 20, 15, True, "none", "suspend", None, None),
    ("operation error", ValueError("peer"), 0, 15, True, "none", "retry", "republish", 5.0),
    ("operation error past the timeout", ValueError("peer"), 15, 15, True, "none",
     "suspend", None, None),
    ("operation error, retry forever", ValueError("peer"), 10**6, -1, True, "none",
     "retry", "republish", 5.0),
    ("process error", ValueError("bug"), 0, 15, False, "none", "fail", None, None),
    ("process meets the store", StoreError("locked"), 0, 15, False, "none",
     "retry", "republish", 5.0),
    ("process meets the broker", RedisConnectionError("down"), 0, 15, False, "none",
     "retry", "republish", 5.0),
    ("fifo retries in place", ValueError("peer"), 0, 15, True, "fifo", "retry", "in_place", 5.0),
    ("keyed parks the key", ValueError("peer"), 0, 15, True, "keyed", "retry", "park", 5.0),
    ("fifo past the timeout", ValueError("peer"), 30, 15, True, "fifo", "suspend", None, None),
]
# fmt: on


@pytest.mark.parametrize(
    ("error", "elapsed", "timeout", "retry_on_error", "ordering", "action", "how", "delay"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_decision_table(
    error: BaseException,
    elapsed: float,
    timeout: float,
    retry_on_error: bool,
    ordering: str,
    action: str,
    how: str | None,
    delay: float | None,
) -> None:
    verdict = decide(
        error,
        elapsed=elapsed,
        failure_timeout=timeout,
        retry_interval=5.0,
        retry_on_error=retry_on_error,
        ordering=ordering,  # type: ignore[arg-type]
    )
    assert verdict.action == action
    if how is not None:
        assert (verdict.how, verdict.delay) == (how, delay)


def test_a_message_given_up_after_the_timeout_says_so_and_why() -> None:
    verdict = decide(
        ConnectionRefusedError("peer down"),
        elapsed=20,
        failure_timeout=15,
        retry_interval=1,
        retry_on_error=True,
    )
    assert verdict == Verdict(
        "suspend", "gave up after failure_timeout: ConnectionRefusedError: peer down"
    )


def test_described_errors_carry_the_hook_that_raised_them() -> None:
    error = ValueError("bad PID-3")
    error.add_note("raised by hook Audit.before_process")
    assert describe(error) == "ValueError: bad PID-3 (raised by hook Audit.before_process)"
    assert describe(Suspend("AE from peer")) == "Suspend: AE from peer"
