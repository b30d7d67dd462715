"""HTTP in and out on real sockets: the gateway's HTTP listeners, real workers, real HTTP peers.

HL7 POSTed to an ``HL7HTTPService`` is stored, ACKed in the answer and delivered byte-identical by
an ``HL7HTTPOperation``; what is not HL7 gets 400 and is kept; a generic ``HTTPService`` answers
202 with the message id; an ``HTTPOperation`` retries 5xx and 429 (Retry-After) but not 400.
"""

from __future__ import annotations

import http.client
import contextlib
import json
import socket
import time
from typing import Any

import pytest
import yaml

from hie.hl7 import HL7Message
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import HTTPPeer

pytestmark = pytest.mark.integration

FAST = {"retry_interval": 0.2, "failure_timeout": 30}


def adt(control_id: str, name: str = "MÜLLER^JÖRG") -> bytes:
    """A synthetic ADT^A01 in ISO 8859-1 (MSH-18), so byte identity means something."""
    msh = (
        f"MSH|^~\\&|HIS|WARD|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5"
        "||||||8859/1"
    )
    text = f"{msh}\rEVN|A01|20240101120000\rPID|1||{control_id}^^^HOSP^MR||{name}||19800101|F\r"
    return text.encode("latin-1")


def post(
    port: int, body: bytes, *, path: str = "/hl7", method: str = "POST", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = {"Content-Type": "x-application/hl7-v2+er7", **headers}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        conn.close()


def hl7_production(h: Harness, peer_url: str, **service: Any) -> int:
    port = free_port()
    h.write(
        [
            {
                "name": "In",
                "class": "HL7HTTPService",
                "targets": ["Out"],
                "settings": {"port": port, "path": "/hl7", **service},
            },
            {
                "name": "Out",
                "class": "HL7HTTPOperation",
                "pool": "threads",
                "pool_size": 2,
                "settings": {"url": peer_url, **FAST},
            },
        ]
    )
    h.start_worker("Out")
    h.start_gateway(port)
    return port


def test_hl7_posted_is_acked_in_the_answer_and_reaches_the_http_peer_byte_identical(
    harness: Harness,
) -> None:
    with HTTPPeer(hl7=True) as peer:
        port = hl7_production(harness, peer.url)
        messages = [adt(f"H{n}") for n in range(3)]
        answers = [post(port, m) for m in messages]
        for (status, headers, body), sent in zip(answers, messages, strict=True):
            assert status == 200
            assert headers["content-type"].startswith("x-application/hl7-v2+er7")
            ack = HL7Message(body)
            assert ack.get("MSA-1") == "AA"
            assert ack.get("MSA-2") == HL7Message(sent.decode("latin-1")).control_id
        wait_for(lambda: len(peer.received) == 3, 30, "the peer to get 3 messages")
        assert sorted(peer.bodies()) == sorted(messages)  # the very bytes, in 8859/1
        path, headers, _ = peer.received[0]
        assert path == "/in"
        assert headers["content-type"] == "x-application/hl7-v2+er7; charset=iso8859-1"
        # Stored and completed with the peer's ACK recorded, like an MLLP delivery.
        found = harness.store.find(target="Out", limit=10)
        assert len(found) == 3
        wait_for(
            lambda: all(harness.store.header(m.message_id).status == "completed" for m in found),
            30,
            "the deliveries to complete",
        )
        assert {harness.store.header(m.message_id).ack_code for m in found} == {"AA"}


def test_what_is_not_hl7_gets_400_with_an_ar_and_is_kept(harness: Harness) -> None:
    with HTTPPeer(hl7=True) as peer:
        port = hl7_production(harness, peer.url)
        status, _, body = post(
            port, b"this is not an HL7 message", **{"Content-Type": "text/plain"}
        )
        assert status == 400
        nak = HL7Message(body)
        assert nak.get("MSA-1") == "AR"
        assert "MSH" in nak.get("ERR-8") or "MSH" in nak.get("MSA-3")
        kept = harness.store.find(status="error", limit=10)
        assert len(kept) == 1
        assert harness.store.load(kept[0].message_id).body == "this is not an HL7 message"
        # Wrong path, method and size: answered, nothing stored, the listener still serves.
        assert post(port, adt("P1"), path="/other")[0] == 404
        status, headers, _ = post(port, b"", method="GET")
        assert (status, headers["allow"]) == (405, "POST")
        assert post(port, b"x" * (9 * 1024 * 1024))[0] == 413
        assert post(port, adt("P2"))[0] == 200
        wait_for(lambda: len(peer.received) == 1, 30, "the good message to arrive")
        assert len(harness.store.find(status="error", limit=10)) == 1
        assert peer.received[0][2] == adt("P2")


def test_keep_alive_answers_every_request_on_one_connection(harness: Harness) -> None:
    with HTTPPeer(hl7=True) as peer:
        port = hl7_production(harness, peer.url)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        codes = []
        for n in range(5):
            conn.request("POST", "/hl7", body=adt(f"K{n}"))
            response = conn.getresponse()
            codes.append(HL7Message(response.read()).get("MSA-1"))
        conn.close()
        assert codes == ["AA"] * 5
        wait_for(lambda: len(peer.received) == 5, 30, "five deliveries")


def test_http_operation_retries_5xx_and_429_and_fails_a_400_at_once(harness: Harness) -> None:
    # Given a generic HTTP service feeding a generic HTTP operation
    with (
        HTTPPeer(statuses=[500, 429], status=201, retry_after="2") as flaky,
        HTTPPeer(status=400, body=b"bad patient") as refusing,
    ):
        port = free_port()
        harness.write(
            [
                {
                    "name": "In",
                    "class": "HTTPService",
                    "targets": ["Out"],
                    "settings": {"port": port, "path": "/orders"},
                },
                {
                    "name": "Out",
                    "class": "HTTPOperation",
                    "pool": "threads",
                    "pool_size": 2,
                    "settings": {"url": flaky.url, **FAST},
                },
                {
                    "name": "Strict",
                    "class": "HTTPOperation",
                    "settings": {"url": refusing.url, **FAST},
                },
            ]
        )
        harness.start_worker("Out")
        harness.start_worker("Strict")
        harness.start_gateway(port)
        # When a JSON order is POSTed
        order = json.dumps({"order": "O-1", "test": "CBC"}).encode()
        status, _, body = post(port, order, path="/orders", **{"Content-Type": "application/json"})
        # Then it is answered 202 with the id of the stored message
        assert status == 202
        message_id = json.loads(body)["message_id"]
        assert harness.store.load(message_id).body == order.decode()
        # And the operation got 500, then 429 (waited its Retry-After), then 201: delivered
        wait_for(lambda: len(flaky.received) == 3, 30, "three attempts")
        assert flaky.bodies() == [order] * 3
        first, second, third = flaky.times
        assert second - first < 1.5  # the 500: retried after retry_interval (0.2 s)
        assert third - second >= 1.9  # the 429: after the 2 s its Retry-After asked for
        assert flaky.received[-1][1]["content-type"] == "application/json; charset=utf-8"
        done = harness.store.find(target="Out", limit=5)
        wait_for(
            lambda: harness.store.header(done[0].message_id).status == "completed",
            30,
            "the delivery to complete",
        )
        # A 400 fails the message at once: one attempt, status failed
        env = harness.send("Strict", "an order the peer refuses")
        wait_for(
            lambda: harness.store.header(env.message_id).status in ("failed", "error"),
            30,
            "the refused message to fail",
        )
        time.sleep(1.0)  # several retry intervals: a retry would have come by now
        assert len(refusing.received) == 1
        assert "400" in (harness.store.header(env.message_id).error or "")


def test_a_full_target_queue_answers_503_with_retry_after_and_keeps_nothing(
    harness: Harness,
) -> None:
    # Given an HL7 HTTP service in reject mode whose target holds 3 messages and has no worker
    port = free_port()
    harness.write(
        [
            {
                "name": "In",
                "class": "HL7HTTPService",
                "targets": ["Out"],
                "settings": {"port": port, "path": "/hl7", "backpressure": "reject"},
            },
            {
                "name": "Out",
                "class": "HL7HTTPOperation",
                "max_queue_depth": 3,
                "settings": {"url": "http://127.0.0.1:9/never"},
            },
        ]
    )
    harness.start_gateway(port)
    # When six messages are POSTed
    answers = [post(port, adt(f"B{n}")) for n in range(6)]
    # Then the first three are accepted, the rest refused with 503, an AE and a Retry-After
    assert [status for status, _, _ in answers] == [200, 200, 200, 503, 503, 503]
    for _, headers, body in answers[3:]:
        assert int(headers["retry-after"]) > 0
        assert HL7Message(body).get("MSA-1") == "AE"
    stored = {h.control_id for h in harness.store.find(source="In", limit=20)}
    assert stored == {"B0", "B1", "B2"}


def test_hl7_to_fhir_routed_to_an_http_operation_survives_a_500(harness: Harness) -> None:
    # Given HL7 over HTTP -> a router sending through HL7ToFHIR -> an HTTP operation whose
    # FHIR server answers 500 once, then 200
    port = free_port()
    rules = harness.tmp / "routes.yaml"
    send = {"type": "send", "target": "FHIR.Out", "transform": "HL7ToFHIR"}
    rule = {"name": "adt", "when": [{"condition": 'HL7.{MSH:9.1}="ADT"', "actions": [send]}]}
    rules.write_text(
        yaml.safe_dump({"kind": "rules", "name": "ToFHIR", "rule_sets": [{"rules": [rule]}]})
    )
    with HTTPPeer(statuses=[500], status=200, body=b'{"resourceType": "Bundle"}') as fhir:
        harness.write(
            [
                {
                    "name": "In",
                    "class": "HL7HTTPService",
                    "targets": ["Router"],
                    "settings": {"port": port, "path": "/hl7"},
                },
                {
                    "name": "Router",
                    "class": "HL7RoutingEngine",
                    "pool": "threads",
                    "targets": ["FHIR.Out"],
                    "settings": {"rules": "routes.yaml"},
                },
                {
                    "name": "FHIR.Out",
                    "class": "HTTPOperation",
                    "pool": "threads",
                    "settings": {"url": fhir.url, **FAST},
                },
            ]
        )
        harness.start_worker("FHIR.Out")
        harness.start_worker("Router")
        harness.start_gateway(port)
        # When an ADT^A01 is POSTed
        status, _, _ = post(port, adt("F1", name="MÜLLER^JÖRG"))
        assert status == 200
        # Then the FHIR server got the Bundle twice: the 500, then the retry it accepted
        wait_for(lambda: len(fhir.received) == 2, 30, "the retried Bundle")
        first, second = fhir.bodies()
        assert first == second
        assert fhir.received[1][1]["content-type"].startswith("application/fhir+json")
        bundle = json.loads(second)
        assert (bundle["resourceType"], bundle["type"]) == ("Bundle", "transaction")
        patients = [
            e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
        ]
        assert len(patients) == 1
        patient = patients[0]
        identifier = patient["identifier"][0]
        assert (identifier["system"], identifier["value"]) == (
            "urn:id:HOSP",
            "F1",
        )  # PID-3.4, PID-3.1
        assert patient["name"][0]["family"] == "MÜLLER"
        assert patient["birthDate"] == "1980-01-01"
        assert patient["gender"] == "female"
        out = harness.store.find(target="FHIR.Out", limit=5)
        assert len(out) == 1
        wait_for(
            lambda: harness.store.header(out[0].message_id).status == "completed",
            30,
            "the delivery to complete",
        )


def _listener(h: Harness, **settings: Any) -> int:
    """An HL7 HTTP service whose target has no worker: what is tested is the listener."""
    port = free_port()
    h.write(
        [
            {
                "name": "In",
                "class": "HL7HTTPService",
                "targets": ["Out"],
                "settings": {"port": port, "path": "/hl7", **settings},
            },
            {
                "name": "Out",
                "class": "HL7HTTPOperation",
                "settings": {"url": "http://127.0.0.1:9/"},
            },
        ]
    )
    h.start_gateway(port)
    return port


def _head(length: int, *extra: str) -> bytes:
    lines = ["POST /hl7 HTTP/1.1", "Host: hie", f"Content-Length: {length}", *extra, "", ""]
    return "\r\n".join(lines).encode()


def _status_line(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    return sock.recv(4096).split(b"\r\n", 1)[0]


def test_the_listener_holds_its_limits_against_slow_and_oversized_requests(
    harness: Harness,
) -> None:
    mib = 1 << 20
    port = _listener(
        harness, read_timeout=2.0, max_message_size=3 * mib // 2, max_bytes_in_flight=2 * mib
    )
    # A head trickled a byte at a time is cut off after read_timeout, not kept for idle_timeout.
    with socket.create_connection(("127.0.0.1", port)) as slow:
        started = time.monotonic()
        closed = False
        for byte in _head(10):
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > 8:
                break
        assert closed or slow.recv(1) == b"", "the trickling sender kept its connection"
        assert time.monotonic() - started < 8
    # Two bodies that each hold half the byte budget and want more time out, give it back,
    # and a later message gets through (they do not wait on each other for ever).
    greedy = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    for sock in greedy:
        sock.sendall(_head(14 * mib // 10))
    for _ in range(8):  # 1 MiB each now, 1.25 MiB with what follows: never the whole body
        for sock in greedy:
            sock.sendall(b"x" * (mib // 8))
    for sock in greedy:
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.sendall(b"x" * (mib // 4))
    status, _, body = post(port, adt("AFTER"))
    assert status == 200 and HL7Message(body).get("MSA-1") == "AA"
    for sock in greedy:
        sock.close()
    # A head over 64 KiB gets 431; a chunked body over max_message_size gets 413.
    with socket.create_connection(("127.0.0.1", port)) as big_head:
        big_head.sendall(_head(10, "X-Filler: " + "a" * 70_000))
        assert _status_line(big_head).startswith(b"HTTP/1.1 431")
    with socket.create_connection(("127.0.0.1", port)) as chunked:
        head = b"POST /hl7 HTTP/1.1\r\nHost: hie\r\nTransfer-Encoding: chunked\r\n\r\n"
        chunk = b"x" * (mib // 2)
        chunked.sendall(head)
        with contextlib.suppress(OSError):
            for _ in range(4):
                chunked.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        assert _status_line(chunked).startswith(b"HTTP/1.1 413")
    # Expect: 100-continue gets its 100 before the body is sent, then the ACK.
    message = adt("CONT")
    with socket.create_connection(("127.0.0.1", port)) as polite:
        polite.sendall(_head(len(message), "Expect: 100-continue"))
        assert _status_line(polite).startswith(b"HTTP/1.1 100")
        polite.sendall(message)
        assert _status_line(polite).startswith(b"HTTP/1.1 200")
    # A POST to another path, with a body, gets its 404 rather than a reset.
    assert post(port, adt("P404") * 50, path="/nowhere")[0] == 404
    found = harness.store.find(source="In", limit=20)
    stored = {h.control_id for h in found}
    assert stored == {"AFTER", "CONT"}, [(h.status, h.error) for h in found]
