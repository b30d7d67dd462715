"""HL7 end to end through real processes: gateway -> MLLP operation -> a downstream MLLP peer.

Every shared sample arrives byte-identical; an outside MLLP client (python-hl7) talks to the
gateway; garbage never takes the gateway down; application ACK mode answers from downstream.
"""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from hie.adapters.mllp import BlockingMLLPClient
from hie.hl7 import HL7Message, ack_code, split_batch
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


def _production(h: Harness, peer_port: int, **service: Any) -> int:
    port = free_port()
    h.write([
        {"name": "In", "class": "HL7TCPService", "targets": ["Out"],
         "settings": {"port": port, **service}},
        {"name": "Out", "class": "HL7TCPOperation", "pool": "threads", "pool_size": 2,
         "settings": {"host": "127.0.0.1", "port": peer_port, "retry_interval": 0.2,
                      "failure_timeout": 5}},
    ])
    h.start_worker("Out")
    h.start_gateway(port)
    return port


def _sample_messages(samples: Path) -> list[tuple[str, bytes]]:
    out = []
    for path in sorted((samples / "hl7").rglob("*")):
        if not path.is_file():
            continue
        for n, message in enumerate(split_batch(path.read_bytes())):
            if message.message_code == "ACK":
                continue  # ACKs are answers, not messages a feed sends
            out.append((f"{path.name}#{n}", message.encode()))
    return out


def test_every_shared_sample_arrives_byte_identical_and_gets_aa(
    harness: Harness, samples: Path
) -> None:
    messages = _sample_messages(samples)
    assert len(messages) > 100
    with MLLPPeer("AA") as peer:
        port = _production(harness, peer.port)
        codes = {}
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
            for name, payload in messages:
                codes[name] = ack_code(client.send(payload))
        assert {n: c for n, c in codes.items() if c != "AA"} == {}
        wait_for(lambda: len(peer.received) >= len(messages), 120, "every sample at the peer")
        assert sorted(peer.received) == sorted(p for _, p in messages)


def test_python_hl7_asyncio_client_gets_an_ack_from_the_gateway(harness: Harness) -> None:
    import hl7
    from hl7.mllp import open_hl7_connection

    message = "\r".join([
        "MSH|^~\\&|EXT|EXTFAC|HIE|HIE|20260101120000||ADT^A04^ADT_A01|EXT0001|P|2.5",
        "PID|1||777^^^EXT^MR||ROE^RICHARD",
    ])
    with MLLPPeer("AA") as peer:
        port = _production(harness, peer.port)

        async def exchange() -> list[str]:
            reader, writer = await open_hl7_connection("127.0.0.1", port)
            codes = []
            for n in range(3):
                writer.writemessage(hl7.parse(message.replace("EXT0001", f"EXT000{n}")))
                await writer.drain()
                ack = await asyncio.wait_for(reader.readmessage(), 10)
                codes.append(str(ack.segment("MSA")[1]))
            writer.close()
            return codes

        assert asyncio.run(exchange()) == ["AA", "AA", "AA"]
        wait_for(lambda: len(peer.received) == 3, 30, "three at the peer")


def test_random_garbage_never_takes_the_gateway_down(harness: Harness) -> None:
    with MLLPPeer("AA") as peer:
        port = _production(harness, peer.port)
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(os.urandom(2000) + b"\x0b" + os.urandom(500) + b"\x1c\x0d")
                sock.settimeout(0.5)
                try:
                    sock.recv(65536)
                except (TimeoutError, ConnectionError):
                    pass
        good = "MSH|^~\\&|A|B|C|D|20260101||ADT^A01|G1|P|2.5\rPID|1||1\r"
        with BlockingMLLPClient("127.0.0.1", port) as client:
            assert ack_code(client.send(good.encode())) == "AA"
        wait_for(lambda: peer.received == [good.encode()], 30, "only the good message delivered")


def _adt(control: str) -> bytes:
    return f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|{control}|P|2.5\rPID|1||1\r".encode()


def test_application_ack_mode_answers_for_the_downstream_system(harness: Harness) -> None:
    with MLLPPeer("AA") as peer:
        port = _production(harness, peer.port, ack_mode="application", app_ack_timeout=4)
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
            # AA once the peer accepted it
            assert ack_code(client.send(_adt("APP1"))) == "AA"
            assert peer.received == [_adt("APP1")], "the ACK came after delivery"
            # AE when the downstream answers AE (default reply code actions suspend it)
            peer.reply, peer.text = "AE", "unknown patient"
            nak = HL7Message(client.send(_adt("APP2")))
            assert ack_code(nak) == "AE" and "unknown patient" in nak.to_er7()
            # AE when the downstream does not answer within the ACK timeout
            peer.reply, peer.delay = "AA", 8.0
            late = HL7Message(client.send(_adt("APP3")))
            assert ack_code(late) == "AE" and "did not finish" in late.to_er7()
