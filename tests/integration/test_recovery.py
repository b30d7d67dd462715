"""The recovery sweeper and possible duplicates, on a real worker and a real MLLP peer."""

from __future__ import annotations

import time

import pytest

from hie.commands.messages import format_trace
from hie.hl7 import HL7Message
from hie.messages import Envelope
from hie.recovery import RecoverySweeper
from hie.store import Status
from tests.integration.harness import Harness, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


def adt(control_id: str) -> HL7Message:
    return HL7Message(
        f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|{control_id}|P|2.5\rPID|1||1^^^H^MR\r"
    )


def operation(h: Harness, port: int) -> None:
    h.write(
        [
            {"name": "Out", "class": "HL7TCPOperation", "pool": "threads", "pool_size": 1,
             "settings": {"host": "127.0.0.1", "port": port, "retry_interval": 0.2}},
        ]
    )  # fmt: skip
    h.start_worker("Out")


def test_sweeper_republishes_a_stored_message_the_broker_never_got(harness: Harness) -> None:
    with MLLPPeer("AA") as peer:
        operation(harness, peer.port)
        # Given a message stored as queued whose broker copy was lost (never published)
        lost = Envelope.wrap(adt("R1"), target="Out", source="test")
        harness.store.save(lost, status="queued", item="Out", event="queued")
        sweeper = RecoverySweeper(
            harness.store, harness.dispatcher, harness.production, stale_after=0.3
        )
        # When it has not moved for stale_after, the sweeper re-publishes it once
        requeued = wait_for(lambda: sweeper.sweep_once().requeued, 10, "a requeue")
        assert requeued == [str(lost.message_id)]
        done = wait_for(
            lambda: (h := harness.store.header(lost.message_id)).status == Status.COMPLETED and h,
            30,
            "the lost message delivered",
        )
        assert [m.control_id for m in peer.messages()] == ["R1"]
        assert "requeued" in [e.event for e in harness.store.events(lost.message_id)]
        # And a message that completed is never re-published
        assert sweeper.sweep_once().requeued == [] and done.possible_duplicate is False


def test_requeue_is_a_compare_and_set_on_status_and_time(harness: Harness) -> None:
    harness.write([{"name": "Out", "class": "HL7TCPOperation",
                    "settings": {"host": "127.0.0.1", "port": 9}}])  # fmt: skip
    env = Envelope.wrap(adt("R2"), target="Out", source="test")
    harness.store.save(env, status="queued", item="Out")
    seen = harness.store.header(env.message_id)
    harness.store.set_status(env.message_id, "completed", item="Out")
    assert not harness.store.requeue(env.message_id, Status.QUEUED, seen.updated_at, "lost?")
    assert harness.store.header(env.message_id).status == Status.COMPLETED


def test_lost_ack_flags_a_possible_duplicate_and_trace_shows_it(harness: Harness) -> None:
    # Given a peer that reads the first message and hangs up without an ACK, then recovers
    with MLLPPeer("close") as peer:
        operation(harness, peer.port)
        env = harness.send("Out", adt("P1"))
        wait_for(lambda: len(peer.received) >= 1, 30, "the first attempt at the peer")
        peer.reply = "AA"
        done = wait_for(
            lambda: (h := harness.store.header(env.message_id)).status == Status.COMPLETED and h,
            30,
            "the retry to complete",
        )
        # Then the peer saw it twice, the store flags it, and trace says so
        assert len(peer.received) >= 2 and done.possible_duplicate
        text = format_trace(harness.store.trace(env.message_id))
        assert "POSSIBLE DUPLICATE" in text and "possible_duplicate" in text


def test_a_long_attempt_is_not_taken_for_a_lost_one(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an operation whose attempt takes 4 s, on two threads (a second copy would run at
    # once), and workers touching what they run every 0.3 s
    monkeypatch.setenv("HIE_HEARTBEAT_INTERVAL", "0.3")
    harness.write(
        [{"name": "Slow", "class": "tests.hosts:RecordingOperation", "pool": "threads",
          "pool_size": 2, "settings": {"delay": 4, "retry_interval": 0.1}}]
    )  # fmt: skip
    harness.start_worker("Slow")
    sent = harness.send("Slow", "long-1")
    sweeper = RecoverySweeper(
        harness.store, harness.dispatcher, harness.production, stale_after=1.5
    )
    wait_for(
        lambda: harness.store.header(sent.message_id).status == Status.IN_PROGRESS,
        30,
        "the attempt to start",
    )

    # When the sweeper runs all through the attempt, past its stale_after
    requeued: list[str] = []
    while harness.store.header(sent.message_id).status != Status.COMPLETED:
        requeued += sweeper.sweep_once().requeued
        time.sleep(0.3)

    # Then it never re-published the message, and the peer got it once
    assert requeued == []
    assert harness.journal().count("done:long-1") == 1


def test_a_message_waiting_for_a_long_retry_is_not_taken_for_a_lost_one(harness: Harness) -> None:
    # Given an operation retrying every 120 s, and one retrying every 0.2 s
    harness.write(
        [{"name": "Patient", "class": "tests.hosts:RecordingOperation",
          "settings": {"retry_interval": 120}},
         {"name": "Quick", "class": "tests.hosts:RecordingOperation",
          "settings": {"retry_interval": 0.2}}]
    )  # fmt: skip
    sweeper = RecoverySweeper(harness.store, harness.dispatcher, harness.production, stale_after=1)
    # Then a message of the first rests twice its retry interval before it counts as lost
    assert sweeper.stale == {"Patient": 240.0, "Quick": 1.0}
    # When one of each has waited (queued for its retry, its task held by a worker) for 1.5 s
    for n, target in enumerate(["Patient", "Quick"]):
        waiting = Envelope.wrap(f"w{n}", target=target, source="test")
        harness.store.save(waiting, status="queued", item=target, event="retried")
    time.sleep(1.5)
    requeued = sweeper.sweep_once().requeued
    # Then only the quick one is taken for lost
    targets = {harness.store.header(m).target for m in requeued}
    assert targets == {"Quick"}
