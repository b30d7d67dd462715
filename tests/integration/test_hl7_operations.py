"""HL7 hosts on real workers: the MLLP operation against real peers, the file service and operation.

Every peer is a real socket on 127.0.0.1; every operation runs in a real ``hie worker`` process.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hl7apy.mllp import AbstractHandler, MLLPServer

from hie.hl7 import HL7Message, build_ack
from hie.messages import Envelope
from hie.service_runner import ServiceRunner
from hie.store.records import MessageHeader
from tests.integration.harness import Harness, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration

FAST = {"retry_interval": 0.2, "failure_timeout": 30}


def adt(control_id: str, name: str = "DOE^JANE", charset: str = "") -> HL7Message:
    """A small synthetic ADT^A01 (MSH-18 ``charset`` when given)."""
    msh = f"MSH|^~\\&|HIS|WARD|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5"
    if charset:
        msh += f"||||||{charset}"
    return HL7Message(f"{msh}\rEVN|A01|20240101120000\rPID|1||{control_id}^^^HOSP^MR||{name}\r")


def tcp_op(h: Harness, port: int, pool: str = "threads", size: int = 2, **settings: Any) -> None:
    h.write(
        [
            {
                "name": "Out",
                "class": "HL7TCPOperation",
                "pool": pool,
                "pool_size": size,
                "settings": {"host": "127.0.0.1", "port": port, **FAST, **settings},
            }
        ]
    )
    h.start_worker("Out")


def header(h: Harness, env: Envelope) -> MessageHeader:
    return h.store.header(env.message_id)


def wait_status(h: Harness, env: Envelope, *statuses: str, timeout: float = 30) -> MessageHeader:
    try:
        return wait_for(
            lambda: (hd := header(h, env)).status in statuses and hd,
            timeout,
            f"message {env.message_id} to reach {statuses}",
        )
    except AssertionError as exc:
        trail = [(e.at.isoformat(), e.event, e.pid) for e in h.store.events(env.message_id)]
        raise AssertionError(
            f"{exc}; events {trail}; {h.path.read_text()}; worker log: {h.log('Out')}"
        ) from None


def events(h: Harness, env: Envelope) -> list[str]:
    return [e.event for e in h.store.events(env.message_id)]


def test_operation_forwards_bytes_unchanged_and_completes_on_aa(harness: Harness) -> None:
    # Given a peer that accepts everything, and a message in ISO 8859-1 with a non-ASCII name
    with MLLPPeer("AA") as peer:
        tcp_op(harness, peer.port)
        msgs = [adt("L1", "MÜLLER^JÖRG", charset="8859/1"), adt("U1", "ØSTER^ÅSA")]
        # When both are sent through the operation
        sent = [harness.send("Out", m) for m in msgs]
        done = [wait_status(harness, env, "completed") for env in sent]
        # Then the peer got exactly the bytes of each message, in its own charset
        assert sorted(peer.received) == sorted(m.encode() for m in msgs)
        assert msgs[0].encode() in peer.received and b"M\xdcLLER" in msgs[0].encode()
        assert all(d.ack_code == "AA" for d in done)
        assert all("ack_received" in events(harness, env) for env in sent)
        # And the ACK is stored as the operation's reply, in the same session
        replies = [
            r
            for r in harness.store.session(sent[0].session_id)
            if r.correlation_id is not None and str(r.correlation_id) == str(sent[0].message_id)
        ]
        assert len(replies) == 1 and replies[0].msg_type and replies[0].msg_type.startswith("ACK")


def test_ae_is_suspended_by_the_default_reply_code_actions(harness: Harness) -> None:
    with MLLPPeer("AE", text="unknown patient") as peer:
        tcp_op(harness, peer.port)
        env = harness.send("Out", adt("E1"))
        done = wait_status(harness, env, "suspended")
        assert (done.ack_code, done.ack_text) == ("AE", "unknown patient")
        assert "matched :?E=S" in (done.error or "")
        assert len(peer.received) == 1, "a suspended message is not retried"
        assert "retried" not in events(harness, env)


def test_ae_with_retry_then_fail_is_retried_until_failure_timeout(harness: Harness) -> None:
    with MLLPPeer("AE") as peer:
        tcp_op(harness, peer.port, reply_code_actions=":?E=RF,:*=S", failure_timeout=1.0)
        env = harness.send("Out", adt("E2"))
        done = wait_status(harness, env, "error")
        trail = events(harness, env)
        assert trail.count("retried") >= 2 and trail[-1] == "failed"
        assert len(peer.received) >= 3 and len(set(peer.received)) == 1
        assert done.ack_code == "AE"


def test_peer_closing_without_ack_is_retried_then_completes_when_peer_answers(
    harness: Harness,
) -> None:
    # Given a peer that reads each message and hangs up without an ACK
    with MLLPPeer("close") as peer:
        tcp_op(harness, peer.port)
        env = harness.send("Out", adt("C1"))
        # Then the message is retried, never taken as sent
        wait_for(lambda: events(harness, env).count("retried") >= 3, 20, "three retries")
        now = header(harness, env)
        assert now.status in ("queued", "in_progress") and now.ack_code is None
        assert now.possible_duplicate, "the peer may have the message: flagged"
        # When the peer comes back to its senses, the message completes
        peer.reply = "AA"
        done = wait_status(harness, env, "completed")
        assert done.ack_code == "AA"
        assert len(peer.received) >= 4


def test_ack_for_another_message_is_retried_not_taken(harness: Harness) -> None:
    with MLLPPeer("mismatch") as peer:
        tcp_op(harness, peer.port)
        env = harness.send("Out", adt("M1"))
        wait_for(lambda: events(harness, env).count("retried") >= 2, 20, "two retries")
        assert header(harness, env).status in ("queued", "in_progress")
        assert "warning" in events(harness, env), ":I?=W still warns"
        peer.reply = "AA"
        assert wait_status(harness, env, "completed").ack_code == "AA"


def test_peer_that_closes_after_every_slow_split_ack_gets_every_message(
    harness: Harness,
) -> None:
    with MLLPPeer("AA", close_after_each=True, split_ack=True, delay=0.2) as peer:
        tcp_op(harness, peer.port, pool="solo", size=1)
        sent = [harness.send("Out", adt(f"K{n}")) for n in range(5)]
        for env in sent:
            wait_status(harness, env, "completed")
        assert sorted(m.control_id for m in peer.messages()) == [f"K{n}" for n in range(5)]
        assert peer.connections == 5


class _Accept(AbstractHandler):  # type: ignore[misc]
    """hl7apy handler: records the message, answers AA (framed, as hl7apy expects)."""

    def __init__(self, message: str, received: list[str]) -> None:
        super().__init__(message)
        received.append(message)

    def reply(self) -> str:
        ack = build_ack(HL7Message(self.incoming_message), "AA")
        return f"\x0b{ack.to_er7()}\x1c\r"


@pytest.fixture
def hl7apy_server() -> Iterator[tuple[int, list[str]]]:
    received: list[str] = []
    server = MLLPServer("127.0.0.1", 0, {"ADT^A01^ADT_A01": (_Accept, received)}, timeout=5)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_hl7apy_mllp_server_gets_every_message(
    harness: Harness, hl7apy_server: tuple[int, list[str]]
) -> None:
    port, received = hl7apy_server
    tcp_op(harness, port, pool="threads", size=1)
    sent = [harness.send("Out", adt(f"H{n}")) for n in range(4)]
    for env in sent:
        assert wait_status(harness, env, "completed").ack_code == "AA"
    assert sorted(HL7Message(r).control_id for r in received) == [f"H{n}" for n in range(4)]


def test_file_operation_writes_each_message_atomically_with_the_pattern(
    harness: Harness, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    harness.write(
        [
            {
                "name": "FileOut",
                "class": "HL7FileOperation",
                "pool": "threads",
                "pool_size": 2,
                "settings": {"file_path": str(out), "filename": "{type}_{control_id}.hl7"},
            }
        ]
    )
    harness.start_worker("FileOut")
    msgs = [adt("F1", "MÜLLER^JÖRG", charset="8859/1"), adt("F2")]
    sent = [harness.send("FileOut", m) for m in msgs]
    for env in sent:
        wait_status(harness, env, "completed")
    assert sorted(p.name for p in out.iterdir()) == ["ADT_A01_F1.hl7", "ADT_A01_F2.hl7"]
    assert (out / "ADT_A01_F1.hl7").read_bytes() == msgs[0].encode(), "in its MSH-18 charset"
    assert (out / "ADT_A01_F2.hl7").read_bytes() == msgs[1].encode()


def test_file_service_splits_a_batch_and_keeps_a_bad_message_aside(
    harness: Harness, tmp_path: Path
) -> None:
    inbox, archive, errors = tmp_path / "in", tmp_path / "archive", tmp_path / "errors"
    inbox.mkdir()
    with MLLPPeer("AA") as peer:
        harness.write(
            [
                {
                    "name": "FileIn",
                    "class": "HL7FileService",
                    "targets": ["Out"],
                    "settings": {
                        "file_path": str(inbox),
                        "file_spec": "*.hl7",
                        "archive_path": str(archive),
                        "error_path": str(errors),
                        "poll_interval": 0.1,
                    },
                },
                {
                    "name": "Out",
                    "class": "HL7TCPOperation",
                    "pool": "threads",
                    "pool_size": 2,
                    "settings": {"host": "127.0.0.1", "port": peer.port, **FAST},
                },
            ]
        )
        harness.start_worker("Out")
        # Given a batch file of three messages, and a file of two with one unreadable
        batch = "\r".join(
            ["FHS|^~\\&|HIS", "BHS|^~\\&|HIS"]
            + [adt(f"B{n}").to_er7().rstrip("\r") for n in range(3)]
            + ["BTS|3", "FTS|1", ""]
        )
        (inbox / "batch.hl7").write_bytes(batch.encode())
        mixed = adt("G1").to_er7() + "MSH|^~\\&|HIS|WARD\rPID|1||X\r"
        (inbox / "mixed.hl7").write_text(mixed.replace("\r", "\n"))
        runner = ServiceRunner(harness.production, harness.dispatcher)  # type: ignore[arg-type]
        runner.start()
        try:
            # Then every readable message reaches the peer, each as a message of its own
            wait_for(lambda: len(peer.received) == 4, 30, "four messages at the peer")
            wait_for(lambda: not list(inbox.glob("*.hl7")), 10, "the inbox to empty")
        finally:
            runner.stop()
        assert sorted(m.control_id for m in peer.messages()) == ["B0", "B1", "B2", "G1"]
        assert [p.name.split(".hl7")[0] for p in archive.iterdir()] == ["batch"]
        assert [p.name.split(".hl7")[0] for p in errors.iterdir()] == ["mixed"]
        # And the unreadable message is stored with its reason, not lost
        bad = harness.store.find(status="error")
        assert len(bad) == 1 and "MSH-9" in (bad[0].error or "")
        assert "mixed.hl7" in (bad[0].error or "")
        assert harness.store.load(bad[0].message_id).body.startswith("MSH|^~\\&|HIS|WARD")
