"""Per-message hooks and priorities on real workers, on Redis and on RabbitMQ."""

from __future__ import annotations

import pytest

from hie.store import Status
from tests.hosts import Work
from tests.integration.harness import Harness, wait_for

pytestmark = pytest.mark.integration

HOOKS = ["tests.hosts:RecordingHook", "tests.hosts:RecordingHookB"]


def _hooked(h: Harness, failure_timeout: float = 0) -> None:
    h.write(
        [
            {
                "name": "Op",
                "class": "tests.hosts:HookedOperation",
                "pool": "solo",
                "settings": {"failure_timeout": failure_timeout},
            }
        ],
        hooks=HOOKS,
    )
    h.start_worker("Op")


def test_hooks_wrap_the_host_in_order(any_broker: Harness) -> None:
    _hooked(any_broker)
    reply = any_broker.request("Op", Work(label="fine"))
    assert reply.label == "ok fine"
    assert any_broker.journal() == ["A.before", "B.before", "host", "B.after:ok", "A.after:ok"]


def test_on_error_runs_in_reverse_and_the_message_is_stored_failed(harness: Harness) -> None:
    _hooked(harness)
    envelope = harness.send("Op", Work(label="boom"))
    wait_for(lambda: harness.store.header(envelope.message_id).status == Status.ERROR, 20, "error")
    assert harness.journal() == [
        "A.before",
        "B.before",
        "host",
        "B.on_error",
        "A.on_error",
        "B.after:error",
        "A.after:error",
    ]
    assert "boom" in (harness.store.header(envelope.message_id).error or "")


def test_skip_message_from_a_hook_skips_the_host_and_is_stored_skipped(harness: Harness) -> None:
    _hooked(harness)
    envelope = harness.send("Op", Work(label="skip-B"))
    wait_for(lambda: harness.store.header(envelope.message_id).status == Status.SKIPPED, 20, "skip")
    # B raised in before_process: the host never ran; A (already entered) still saw after.
    assert harness.journal() == ["A.before", "B.before", "A.after:error"]
    events = harness.store.events(envelope.message_id)
    assert any(e.event == "skipped" and "hook B skips" in (e.detail or "") for e in events)


def test_retry_from_the_host_runs_it_again(harness: Harness) -> None:
    _hooked(harness, failure_timeout=30)  # a retry needs time left before the message fails
    envelope = harness.send("Op", Work(label="retry-once"))
    wait_for(
        lambda: harness.store.header(envelope.message_id).status == Status.COMPLETED, 20, "done"
    )
    assert harness.journal().count("host") == 2
    events = [e.event for e in harness.store.events(envelope.message_id)]
    assert "retried" in events and events[-1] == "completed"


def test_high_priority_overtakes_a_backlog_in_one_queue(any_broker: Harness) -> None:
    any_broker.write([{"name": "Op", "class": "tests.hosts:RecordingOperation", "pool": "solo"}])
    # Given a stopped worker and 200 priority-0 messages queued before 5 priority-9 ones
    for n in range(200):
        any_broker.send("Op", Work(label=f"low{n}"), priority=0)
    for n in range(5):
        any_broker.send("Op", Work(label=f"high{n}"), priority=9)
    # When the worker starts with concurrency 1
    any_broker.start_worker("Op")
    wait_for(lambda: len(any_broker.journal()) >= 205, 120, "all 205 messages")
    done = [e.removeprefix("done:") for e in any_broker.journal()]
    # Then the five urgent ones ran before the remaining low ones (at most one low one was already
    # taken when the worker started consuming).
    positions = [done.index(f"high{n}") for n in range(5)]
    assert max(positions) <= 5, f"urgent messages ran at positions {positions}"
