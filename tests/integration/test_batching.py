"""Batched hops on real workers: messages sent together travel in one task and are recorded in one
transaction, yet each is handled, retried and traced on its own."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from hie.messages import Envelope
from hie.store import Status
from hie.tasks.dispatcher import AWAIT
from tests.hosts import Work
from tests.integration.harness import Harness, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


def _journal(harness: Harness, kind: str) -> dict[str, list[str]]:
    """label -> the task ids that journaled ``kind`` (``done`` or ``fail``) for it."""
    out: dict[str, list[str]] = {}
    for entry in harness.journal():
        what, label, task = entry.split(":", 2)
        if what == kind:
            out.setdefault(label, []).append(task)
    return out


def test_a_failing_message_is_retried_alone_and_the_rest_of_its_batch_delivered_once(
    harness: Harness,
) -> None:
    # Given an operation and eight messages sent together, the fourth failing once
    harness.write(
        [
            {
                "name": "Op",
                "class": "tests.hosts:TaskJournalOperation",
                "pool": "solo",
                "settings": {"retry_interval": 0.2, "batch_size": 32},
            }
        ]
    )
    harness.start_worker("Op")
    labels = [f"m{n}" for n in range(8)]
    sent = harness.send_many("Op", [Work(label=x, fail_times=int(x == "m3")) for x in labels])

    # When they have all been handled
    wait_for(lambda: len(_journal(harness, "done")) == 8, 30, "all eight delivered")
    time.sleep(0.5)  # anything delivered twice would show by now

    # Then every message was delivered exactly once, seven of them by the one task they came in
    done, failed = _journal(harness, "done"), _journal(harness, "fail")
    assert all(len(done[x]) == 1 for x in labels), done
    batch_task = failed["m3"][0]
    assert {done[x][0] for x in labels if x != "m3"} == {batch_task}, "one task carried them"
    # ... and the failing one alone, in a task of its own, after the batch was recorded
    assert done["m3"][0] != batch_task
    for envelope in sent:
        header = harness.store.header(envelope.message_id)
        assert header.status is Status.COMPLETED
        events = [e.event for e in harness.store.events(envelope.message_id)]
        if envelope.payload().label == "m3":
            assert events.count("retried") == 1 and header.attempts == 2
        else:
            assert "retried" not in events and header.attempts == 1
        assert events[-1] == "completed", "each message keeps its own hop in the trail"


def _pool_child(worker_pid: int) -> int:
    children = Path(f"/proc/{worker_pid}/task/{worker_pid}/children").read_text().split()
    assert children, "the prefork worker has a pool child"
    return int(children[0])


def test_a_worker_killed_mid_batch_loses_nothing_and_resends_nothing_it_recorded(
    harness: Harness,
) -> None:
    # Given an MLLP operation whose peer takes 0.2 s per ACK, and ten messages sent together
    with MLLPPeer("AA", delay=0.2) as peer:
        harness.write(
            [
                {
                    "name": "Out",
                    "class": "HL7TCPOperation",
                    "pool": "prefork",
                    "pool_size": 1,
                    "settings": {"host": "127.0.0.1", "port": peer.port, "retry_interval": 0.2},
                }
            ]
        )
        worker = harness.start_worker("Out")
        messages = [
            f"MSH|^~\\&|T|F|R|F|20260101||ADT^A01|K{n:03d}|P|2.5\rPID|1||{n}^^^H^MR\r"
            for n in range(10)
        ]
        sent = harness.send_many("Out", messages)

        # When the pool child running the batch is killed after its fourth delivery
        wait_for(lambda: len(peer.received) >= 4, 30, "four deliveries")
        os.kill(_pool_child(worker.pid), signal.SIGKILL)
        reached = len(peer.received)

        # Then the redelivered batch completes every message
        wait_for(
            lambda: all(
                harness.store.header(e.message_id).status is Status.COMPLETED for e in sent
            ),
            60,
            "every message completed",
        )
    controls = [m.control_id for m in peer.messages()]
    counts = {c: controls.count(c) for c in set(controls)}
    twice = sorted(c for c, n in counts.items() if n > 1)
    print(f"reached the peer before the kill: {reached}; delivered twice: {twice}")
    assert set(counts) == {f"K{n:03d}" for n in range(10)}, "nothing is lost"
    # Each delivery was recorded within a checkpoint of its ACK: at most the one in flight
    # when the worker died reaches the peer again, not the whole batch so far.
    assert reached >= 4 and len(twice) <= 1, counts
    for envelope in sent:
        header = harness.store.header(envelope.message_id)
        if header.control_id in twice:
            assert header.possible_duplicate, "a message sent twice is flagged"


def test_an_ordered_item_keeps_order_across_batches_while_one_message_fails(
    harness: Harness,
) -> None:
    # Given a FIFO operation taking four messages per task, and twenty messages sent together
    harness.write(
        [
            {
                "name": "Op",
                "class": "tests.hosts:TaskJournalOperation",
                "fifo": True,
                "settings": {"retry_interval": 0.2, "batch_size": 4},
            }
        ]
    )
    harness.start_worker("Op")
    labels = [f"m{n:02d}" for n in range(20)]
    harness.send_many("Op", [Work(label=x, fail_times=2 if x == "m06" else 0) for x in labels])

    # When all are delivered (m06 fails twice, retried in place)
    wait_for(lambda: len(_journal(harness, "done")) == 20, 60, "all twenty delivered")

    # Then they arrived in send order, over five tasks of four
    order = [e.split(":")[1] for e in harness.journal() if e.startswith("done:")]
    assert order == labels
    tasks = _journal(harness, "done")
    assert len({tasks[x][0] for x in labels}) == 5
    assert _journal(harness, "fail")["m06"] == [tasks["m06"][0]] * 2, "retried in its own task"


def test_a_worker_takes_waiting_tasks_into_its_batch_and_a_request_goes_alone(
    harness: Harness,
) -> None:
    # Given a FIFO operation whose queue fills while no worker runs: ten messages sent one by
    # one (ten tasks), a request someone waits for, then five more
    harness.write([{"name": "Op", "class": "tests.hosts:TaskJournalOperation", "fifo": True}])
    labels = [f"m{n:02d}" for n in range(15)]
    for label in labels[:10]:
        harness.send("Op", Work(label=label))
    request = Envelope.wrap(Work(label="req"), target="Op", source="test", headers={AWAIT: "sync"})
    result = harness.dispatcher.send(request)
    for label in labels[10:]:
        harness.send("Op", Work(label=label))

    # When the worker starts
    harness.start_worker("Op")
    wait_for(lambda: len(_journal(harness, "done")) == 16, 60, "all sixteen delivered")

    # Then the waiting tasks were taken into batches, in order, the request alone between them
    order = [e.split(":")[1] for e in harness.journal() if e.startswith("done:")]
    assert order == [*labels[:10], "req", *labels[10:]]
    tasks = _journal(harness, "done")
    assert len({tasks[x][0] for x in labels[:10]}) == 1, "ten tasks taken into one batch"
    assert len({tasks[x][0] for x in labels[10:]}) == 1, "and the five after the request"
    assert tasks["req"][0] not in {tasks["m00"][0], tasks["m10"][0]}, "the request went alone"
    assert result is not None and result.get(timeout=30) is None, "its caller got its answer"
