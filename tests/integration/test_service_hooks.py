"""Per-message hooks and on_message on business services: the MLLP gateway and a file service.

Real parts: the gateway and the operation's worker run as OS processes, messages arrive over
MLLP from a socket client or as files in a folder, and leave over MLLP to a loopback peer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hie.adapters.mllp import BlockingMLLPClient
from hie.hl7 import HL7Message, ack_code
from hie.store import Status
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration

TCP_HOOKS = ["tests.hosts:RecordingHook", "tests.hosts:RecordingHookB"]
FILE_HOOKS = ["tests.hosts:RecordingHook", "tests.hosts:SkipTestPatients"]


def adt(control_id: str, patient: str) -> str:
    return (
        f"MSH|^~\\&|LAB|HOSP|HIE|HOSP|20260101120000||ADT^A01|{control_id}|P|2.5\r"
        f"PID|1||{patient}^^^HOSP^MR||DOE^JANE\r"
    )


@pytest.fixture
def running(harness: Harness) -> Iterator[tuple[Harness, int, MLLPPeer, Path]]:
    """A production with a hooked HL7TCPService subclass and a hooked HL7FileService, both
    sending to an HL7TCPOperation whose peer records what reaches it."""
    inbox = harness.tmp / "in"
    with MLLPPeer("AA") as peer:
        port = free_port()
        harness.write(
            [
                {
                    "name": "In",
                    "class": "tests.hosts:StampingTCPService",
                    "targets": ["Out"],
                    "hooks": TCP_HOOKS,
                    "settings": {"port": port},
                },
                {
                    "name": "Files",
                    "class": "HL7FileService",
                    "targets": ["Out"],
                    "hooks": FILE_HOOKS,
                    "settings": {"file_path": str(inbox), "poll_interval": 0.1},
                },
                {
                    "name": "Out",
                    "class": "HL7TCPOperation",
                    "pool": "threads",
                    "pool_size": 1,
                    "settings": {"host": "127.0.0.1", "port": peer.port, "failure_timeout": 5},
                },
            ]
        )
        harness.start_worker("Out")
        harness.start_gateway(port)
        yield harness, port, peer, inbox


def _delivered(peer: MLLPPeer, control_id: str) -> list[HL7Message]:
    return [m for m in peer.messages() if m.control_id == control_id]


def test_gateway_runs_item_hooks_around_a_subclass_on_message(
    running: tuple[Harness, int, MLLPPeer, Path],
) -> None:
    harness, port, peer, _ = running
    # When a message arrives over MLLP at an item with two hooks and its own on_message
    with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
        assert ack_code(client.send(adt("G1", "P1").encode())) == "AA"
    # Then the hooks wrap on_message in list order, and what it returned is what went on
    (delivered,) = wait_for(lambda: _delivered(peer, "G1"), 30, "G1 at the peer")
    assert delivered.get("MSH-4") == "STAMPED"
    assert harness.journal() == ["A.before", "B.before", "service:G1", "B.after:ok", "A.after:ok"]


def test_gateway_keeps_a_skipped_message_and_answers_ae_when_on_message_fails(
    running: tuple[Harness, int, MLLPPeer, Path],
) -> None:
    harness, port, peer, _ = running
    store = harness.store
    with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
        # Given on_message skips one patient: the message is acknowledged and kept as skipped
        assert ack_code(client.send(adt("S1", "SKIP").encode())) == "AA"
        # and raises for another: the sender gets AE with the reason, the message is kept
        nak = client.send(adt("B1", "BOOM").encode())
        # and a good one after them
        assert ack_code(client.send(adt("G2", "P2").encode())) == "AA"
    assert ack_code(nak) == "AE" and b"no route for this patient" in nak
    wait_for(lambda: _delivered(peer, "G2"), 30, "G2 at the peer")
    (skipped,) = store.find(control_id="S1")
    assert (skipped.status, skipped.target, skipped.error) == (
        Status.SKIPPED,
        None,
        "a test patient",
    )
    (failed,) = store.find(control_id="B1")
    assert failed.status == Status.ERROR and failed.target is None
    assert "ValueError: no route for this patient" in (failed.error or "")
    assert [m.control_id for m in peer.messages()] == ["G2"], "neither went on to the target"
    journal = harness.journal()
    assert journal[:5] == ["A.before", "B.before", "service:S1", "B.after:error", "A.after:error"]
    assert journal[5:12] == [
        "A.before",
        "B.before",
        "service:B1",
        "B.on_error",
        "A.on_error",
        "B.after:error",
        "A.after:error",
    ]


def test_file_service_runs_item_hooks_and_keeps_what_a_hook_skips(
    running: tuple[Harness, int, MLLPPeer, Path],
) -> None:
    harness, _, peer, inbox = running
    # When a file of two messages arrives, one of a patient the item's hook skips
    (inbox / "two.hl7").write_text(adt("F1", "P1") + adt("F2", "SKIP"))
    # Then the other goes on, the skipped one is stored as skipped with the hook's reason
    wait_for(lambda: _delivered(peer, "F1"), 30, "F1 at the peer")
    (skipped,) = wait_for(lambda: harness.store.find(control_id="F2"), 30, "F2 stored")
    assert (skipped.status, skipped.error) == (Status.SKIPPED, "a test patient")
    assert [m.control_id for m in peer.messages()] == ["F1"]
    assert harness.journal() == [
        "A.before",
        "skip-hook:F1",
        "A.after:ok",
        "A.before",
        "skip-hook:F2",
        "A.after:error",
    ]
    # and the file is done with: not moved aside as unreadable
    assert not (inbox / ".error").exists()
