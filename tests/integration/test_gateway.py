"""The MLLP gateway as an OS process: store before ACK, enqueue, ACK modes, NAKs with reasons."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from hie.adapters.mllp import END_BLOCK, START_BLOCK, BlockingMLLPClient
from hie.hl7 import HL7Message, ack_code, ack_control_id
from hie.store import Status
from tests.integration.harness import Harness, free_port, wait_for

pytestmark = pytest.mark.integration


def adt(
    n: int, *, accept: str = "", app: str = "", charset: str = "", name: str = "DOE^JANE"
) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A01^ADT_A01|CTRL{n:05d}|P|2.5.1"
                f"|||{accept}|{app}||{charset}",
                "EVN|A01|20260101120000",
                f"PID|1||{5000 + n}^^^HOSP^MR||{name}||19800101|F",
            ]
        )
        + "\r"
    )


def _gateway(h: Harness, **settings: Any) -> int:
    port = free_port()
    h.write(
        [
            {
                "name": "ADT.In",
                "class": "HL7TCPService",
                "targets": ["ADT.Op"],
                "settings": {"port": port, **settings},
            },
            {
                "name": "ADT.Op",
                "class": "tests.hosts:RecordingOperation",
                "pool": "threads",
                "pool_size": 2,
            },
        ]
    )
    h.start_worker("ADT.Op")
    h.start_gateway(port)
    return port


def test_message_is_stored_queued_delivered_and_acked_aa(harness: Harness) -> None:
    port = _gateway(harness)
    with BlockingMLLPClient("127.0.0.1", port) as client:
        acks = [HL7Message(client.send(adt(n).encode())) for n in range(20)]
    assert [ack_code(a) for a in acks] == ["AA"] * 20
    assert [ack_control_id(a) for a in acks] == [f"CTRL{n:05d}" for n in range(20)]
    assert acks[0].get("MSH-9") == "ACK^A01^ACK" and acks[0].get("MSH-3") == "RECV"
    stored = harness.store.find(source="ADT.In", limit=100)
    assert sorted(h.control_id for h in stored) == [f"CTRL{n:05d}" for n in range(20)]
    wait_for(
        lambda: all(harness.store.header(h.message_id).status == Status.COMPLETED for h in stored),
        30,
        "all twenty delivered",
    )
    events = [e.event for e in harness.store.events(stored[0].message_id)]
    assert events.index("received") < events.index("ack_sent")


def test_malformed_message_gets_ar_with_reason_and_is_stored(harness: Harness) -> None:
    port = _gateway(harness)
    with BlockingMLLPClient("127.0.0.1", port) as client:
        nak = HL7Message(client.send(b"PID|1||123\rgarbage"))
        # The connection stays usable for the next, good message.
        good = HL7Message(client.send(adt(1).encode()))
    assert ack_code(nak) == "AR" and "MSH" in nak.get("ERR-8") + nak.get("MSA-3")
    assert ack_code(good) == "AA"
    errors = harness.store.find(status="error", source="ADT.In")
    assert len(errors) == 1 and "MSH" in (errors[0].error or "")
    assert harness.store.load(errors[0].message_id).body.startswith("PID|1||123")


def test_oversize_message_gets_ar_and_the_connection_still_works(harness: Harness) -> None:
    port = _gateway(harness, max_message_size=2048)
    big = adt(1).replace("DOE^JANE", "X" * 5000)
    with BlockingMLLPClient("127.0.0.1", port) as client:
        nak = HL7Message(client.send(big.encode()))
        good = HL7Message(client.send(adt(2).encode()))
    assert ack_code(nak) == "AR" and "larger than the limit" in nak.get("ERR-8") + nak.get("MSA-3")
    assert ack_code(good) == "AA" and ack_control_id(good) == "CTRL00002"


def _raw_exchange(port: int, payload: bytes, wait: float) -> bytes:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(START_BLOCK + payload + END_BLOCK)
        sock.settimeout(wait)
        try:
            return sock.recv(65536)
        except TimeoutError:
            return b""


def test_ack_mode_never_and_msh_ne_send_no_accept_ack(harness: Harness) -> None:
    port = _gateway(harness, ack_mode="msh")
    assert _raw_exchange(port, adt(1, accept="NE").encode(), 1.5) == b""
    answer = _raw_exchange(port, adt(2, accept="AL").encode(), 10)
    assert b"MSA|CA|CTRL00002" in answer
    # Both were stored and delivered, ACKed or not.
    wait_for(lambda: len(harness.store.find(source="ADT.In", status="completed")) == 2, 30, "two")


def test_charsets_round_trip_names_with_accents(harness: Harness) -> None:
    port = _gateway(harness)
    latin = adt(1, charset="8859/1", name="MÜLLER^JOSÉ")
    utf8 = adt(2, charset="UNICODE UTF-8", name="ÇELİK^ŞÜKRÜ")
    with BlockingMLLPClient("127.0.0.1", port) as client:
        ack_latin = client.send(latin.encode("latin-1"))
        ack_utf8 = client.send(utf8.encode("utf-8"))
    assert ack_code(ack_latin) == "AA" and ack_code(ack_utf8) == "AA"
    bodies = {
        h.control_id: harness.store.load(h.message_id).body
        for h in harness.store.find(source="ADT.In")
    }
    assert "MÜLLER^JOSÉ" in bodies["CTRL00001"] and "ÇELİK^ŞÜKRÜ" in bodies["CTRL00002"]


@pytest.mark.parametrize("codec", ["base64", "zlib_codec", "rot13", "hex"])
def test_msh18_naming_a_codec_that_is_not_a_character_set_gets_ar(
    harness: Harness, codec: str
) -> None:
    port = _gateway(harness)
    with BlockingMLLPClient("127.0.0.1", port) as client:
        nak = HL7Message(client.send(adt(1, charset=codec).encode()))
        # The handler lives on: the next message on the same connection is accepted.
        good = HL7Message(client.send(adt(2).encode()))
    assert ack_code(nak) == "AR" and ack_control_id(nak) == "CTRL00001"
    assert "not a character set" in nak.get("ERR-8")
    assert ack_code(good) == "AA"
    errors = harness.store.find(status="error", source="ADT.In")
    assert len(errors) == 1 and "not a character set" in (errors[0].error or "")
    assert "CTRL00001" in harness.store.load(errors[0].message_id).body


def test_ascii_message_with_other_bytes_in_its_header_gets_ar(harness: Harness) -> None:
    port = _gateway(harness)
    raw = adt(1, charset="ASCII").replace("|SEND|FAC|", "|SÉND|FÄC|").encode("latin-1")
    with BlockingMLLPClient("127.0.0.1", port) as client:
        nak = HL7Message(client.send(raw))
        good = HL7Message(client.send(adt(2).encode()))
    assert ack_code(nak) == "AR" and ack_control_id(nak) == "CTRL00001"
    assert "ascii" in nak.get("ERR-8").lower()
    assert ack_code(good) == "AA"
    errors = harness.store.find(status="error", source="ADT.In")
    assert len(errors) == 1


def test_a_frame_holding_two_messages_gets_ar_and_neither_is_routed(harness: Harness) -> None:
    port = _gateway(harness)
    with BlockingMLLPClient("127.0.0.1", port) as client:
        nak = HL7Message(client.send((adt(1) + adt(2)).encode()))
    assert ack_code(nak) == "AR" and ack_control_id(nak) == "CTRL00001"
    assert "holds 2 messages" in nak.get("ERR-8")
    errors = harness.store.find(status="error", source="ADT.In")
    assert len(errors) == 1 and "one message per frame" in (errors[0].error or "")
    # Nothing was queued for the operation.
    assert harness.store.find(source="ADT.In", status="queued") == []
    assert harness.store.find(source="ADT.In", status="completed") == []
