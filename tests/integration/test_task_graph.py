"""The task graph on real workers: pools, requests between hosts, deferred replies."""

from __future__ import annotations

import pytest

from hie.messages import Envelope
from tests.hosts import CallOutcome, Evidence, Work
from tests.integration.harness import Harness, wait_for

pytestmark = pytest.mark.integration

OP = "tests.hosts:RecordingOperation"


def _overlap(a: Evidence, b: Evidence) -> bool:
    return a.started < b.ended and b.started < a.ended


def test_prefork_item_runs_messages_in_two_os_processes_at_once(harness: Harness) -> None:
    harness.write([{"name": "Op", "class": OP, "pool": "prefork", "pool_size": 2}])
    worker = harness.start_worker("Op")
    replies = harness.request_all("Op", [Work(label=f"m{n}", delay=1.0) for n in range(4)])
    pids = {r.pid for r in replies}
    assert len(pids) == 2, f"expected two worker processes, saw pids {pids}"
    assert worker.pid not in pids, "prefork children, not the worker's main process, run tasks"
    assert any(_overlap(a, b) for a in replies for b in replies if a.pid != b.pid), (
        "the two processes must work at the same time"
    )


def test_threads_item_runs_four_messages_at_once_in_one_process(harness: Harness) -> None:
    harness.write([{"name": "Op", "class": OP, "pool": "threads", "pool_size": 4}])
    worker = harness.start_worker("Op")
    replies = harness.request_all("Op", [Work(label=f"m{n}", delay=1.0) for n in range(4)])
    assert {r.pid for r in replies} == {worker.pid}
    assert len({r.thread for r in replies}) == 4
    latest_start = max(r.started for r in replies)
    earliest_end = min(r.ended for r in replies)
    assert latest_start < earliest_end, "all four must have been running at one moment"


def _caller_production(h: Harness, mode: str, targets: list[str], **settings: object) -> None:
    items = [
        {
            "name": "Caller",
            "class": "tests.hosts:CallerProcess",
            "pool": "threads",
            "pool_size": 2,
            "targets": targets,
            "settings": {"mode": mode, **settings},
        }
    ]
    items += [{"name": t, "class": OP, "pool": "threads", "pool_size": 2} for t in targets]
    h.write(items)
    for name in ["Caller", *targets]:
        h.start_worker(name)


def test_sync_request_from_process_to_operation_returns_the_reply(any_broker: Harness) -> None:
    _caller_production(any_broker, "sync", ["Op"])
    request = Envelope.wrap(Work(label="hello"), target="Caller", source="test")
    reply = any_broker.dispatcher.request(request, timeout=30)
    assert reply is not None and reply.correlation_id == request.message_id
    outcome = reply.payload()
    assert isinstance(outcome, CallOutcome) and outcome.error is None
    evidence = Evidence.model_validate(outcome.replies[0])
    assert evidence.body == "hello"
    # The operation saw the same session and a request that points back to the caller's message.
    assert evidence.session_id == str(request.session_id)
    op_requests = [h for h in any_broker.store.session(request.session_id) if h.target == "Op"]
    assert len(op_requests) == 1 and str(op_requests[0].parent_id) == str(request.message_id)


def test_async_requests_reach_on_response_and_join_in_on_complete(any_broker: Harness) -> None:
    targets = ["OpA", "OpB", "OpC"]
    _caller_production(any_broker, "async", targets)
    request = Envelope.wrap(Work(label="fan", delay=0.2), target="Caller", source="test")
    reply = any_broker.dispatcher.request(request, timeout=30)
    assert reply is not None
    outcome = reply.payload()
    assert isinstance(outcome, CallOutcome)
    assert sorted(r["item"] for r in outcome.replies) == targets, "joined once all three replied"
    assert outcome.correlations_ok
    assert sorted(e for e in any_broker.journal() if e.startswith("response:")) == [
        f"response:{t}" for t in targets
    ]
    # Each reply is stored correlated to the request that caused it.
    session = any_broker.store.session(request.session_id)
    calls = {str(h.message_id): h for h in session if h.target in targets}
    replies = [
        h for h in session if h.correlation_id is not None and str(h.correlation_id) in calls
    ]
    assert len(calls) == 3 and len(replies) == 3


def test_sync_multi_request_fans_out_and_returns_replies_in_order(harness: Harness) -> None:
    targets = ["OpA", "OpB", "OpC"]
    _caller_production(harness, "multi", targets)
    outcome = harness.request("Caller", Work(label="multi", delay=0.5))
    assert [r["item"] for r in outcome.replies] == targets
    spans = [Evidence.model_validate(r) for r in outcome.replies]
    assert max(s.started for s in spans) < min(s.ended for s in spans), "sent at once, not in turn"


def test_sync_timeout_raises_in_caller_and_late_reply_is_recorded_not_delivered(
    harness: Harness,
) -> None:
    _caller_production(harness, "sync", ["Op"], call_timeout=0.5)
    slow = harness.request("Caller", Work(label="slow", delay=2.0))
    assert isinstance(slow, CallOutcome) and slow.error and "no reply" in slow.error
    fast = harness.request("Caller", Work(label="fast", delay=0.0))
    assert fast.error is None
    assert Evidence.model_validate(fast.replies[0]).body == "fast", (
        "the late reply went nowhere else"
    )
    # The slow call's reply arrives later and is stored, correlated to the timed-out request.
    slow_session = harness.store.session(harness.store.header(slow.request_id).session_id)
    op_request = next(h for h in slow_session if h.target == "Op")
    events = [e.event for e in harness.store.events(op_request.message_id)]
    assert "request_timeout" in events

    def late_reply() -> bool:
        return any(
            h.correlation_id is not None and str(h.correlation_id) == str(op_request.message_id)
            for h in harness.store.session(op_request.session_id)
        )

    wait_for(late_reply, 15, "the late reply to be stored")


def test_sync_request_to_own_item_is_refused_with_a_clear_error(harness: Harness) -> None:
    harness.write(
        [
            {
                "name": "Caller",
                "class": "tests.hosts:CallerProcess",
                "pool": "solo",
                "settings": {"mode": "self"},
            }
        ]
    )
    harness.start_worker("Caller")
    outcome = harness.request("Caller", Work(label="me"))
    assert outcome.error.startswith("SelfRequestError") and "itself" in outcome.error


def test_deferred_response_is_answered_by_another_host(harness: Harness) -> None:
    harness.write(
        [
            {
                "name": "Caller",
                "class": "tests.hosts:CallerProcess",
                "pool": "threads",
                "pool_size": 2,
                "targets": ["Deferrer"],
                "settings": {"mode": "sync", "call_timeout": 20},
            },
            {
                "name": "Deferrer",
                "class": "tests.hosts:DeferringOperation",
                "pool": "threads",
                "settings": {"answerer": "Answerer"},
            },
            {"name": "Answerer", "class": "tests.hosts:AnsweringOperation", "pool": "threads"},
        ]
    )
    for name in ("Caller", "Deferrer", "Answerer"):
        harness.start_worker(name)
    outcome = harness.request("Caller", Work(label="later"))
    assert outcome.error is None
    assert outcome.replies[0]["label"].startswith("answered ")


def test_a_message_suspended_while_queued_is_not_handled(harness: Harness) -> None:
    harness.write([{"name": "Op", "class": OP, "pool": "solo"}])
    # Given two queued messages, one of which an operator suspends before any worker runs
    held = harness.send("Op", Work(label="held"))
    other = harness.send("Op", Work(label="other"))
    harness.store.set_status(held.message_id, "suspended", event="suspended", detail="operator")
    harness.start_worker("Op")
    wait_for(lambda: harness.store.header(other.message_id).status == "completed", 30, "other")
    # Then the worker took its copy off the queue but did not handle it
    wait_for(lambda: "done:other" in harness.journal(), 10, "journal")
    assert "done:held" not in harness.journal()
    assert harness.store.header(held.message_id).status == "suspended"


def test_an_error_past_failure_timeout_is_suspended_as_in_iris(harness: Harness) -> None:
    harness.write(
        [
            {
                "name": "Op",
                "class": OP,
                "pool": "solo",
                "settings": {"retry_interval": 0.2, "failure_timeout": 1.0},
            }
        ]
    )
    harness.start_worker("Op")
    envelope = harness.send("Op", Work(label="never", fail_times=1000))
    wait_for(lambda: harness.store.header(envelope.message_id).status == "suspended", 30, "suspend")
    events = harness.store.events(envelope.message_id)
    assert [e.event for e in events].count("retried") >= 3
    assert "gave up after failure_timeout" in (events[-1].detail or "")
