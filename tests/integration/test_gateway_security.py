"""Who may connect to the gateway: TLS with client certificates, allowed addresses, a limit."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from hie.adapters.mllp import END_BLOCK, START_BLOCK, BlockingMLLPClient
from hie.errors import DeliveryError
from hie.hl7 import ack_code
from hie.hosts.hl7_tcp import HL7TCPServiceSettings
from hie.store import Status
from tests.integration.harness import Harness, free_port, wait_for

pytestmark = pytest.mark.integration

ADT = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|S1|P|2.5\rPID|1||1\r"


def _gateway(h: Harness, **settings: Any) -> int:
    port = free_port()
    h.write(
        [
            {
                "name": "In",
                "class": "HL7TCPService",
                "targets": ["Op"],
                "settings": {"port": port, **settings},
            },
            {"name": "Op", "class": "tests.hosts:RecordingOperation", "pool": "solo"},
        ]
    )
    h.start_gateway(port)
    return port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path / "pki"
    d.mkdir()
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=Test CA",
        "-keyout",
        str(d / "ca.key"),
        "-out",
        str(d / "ca.pem"),
    )
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            str(d / f"{name}.key"),
            "-out",
            str(d / f"{name}.csr"),
        )
        (d / f"{name}.ext").write_text(ext + "\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            str(d / f"{name}.csr"),
            "-CA",
            str(d / "ca.pem"),
            "-CAkey",
            str(d / "ca.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            str(d / f"{name}.ext"),
            "-out",
            str(d / f"{name}.pem"),
        )
    return d


def _client_context(pki: Path, *, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if with_cert:
        context.load_cert_chain(str(pki / "client.pem"), str(pki / "client.key"))
    return context


def test_tls_with_client_certificates(harness: Harness, pki: Path) -> None:
    port = _gateway(
        harness,
        tls_cert=str(pki / "server.pem"),
        tls_key=str(pki / "server.key"),
        tls_ca=str(pki / "ca.pem"),
    )
    with BlockingMLLPClient("127.0.0.1", port, ssl=_client_context(pki, with_cert=True)) as client:
        assert ack_code(client.send(ADT)) == "AA"
    # A client without a certificate is refused during the handshake: nothing is stored.
    with pytest.raises((DeliveryError, ssl.SSLError, ConnectionError)):
        with BlockingMLLPClient(
            "127.0.0.1", port, ssl=_client_context(pki, with_cert=False), response_timeout=5
        ) as client:
            client.send(ADT.replace(b"|S1|", b"|S2|"))
    assert [h.control_id for h in harness.store.find(source="In")] == ["S1"]


def test_only_allowed_client_addresses_may_connect(harness: Harness) -> None:
    port = _gateway(harness, allowed_clients=["10.0.0.0/8"])
    with pytest.raises(DeliveryError):
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=5) as client:
            client.send(ADT)
    assert harness.store.find(source="In") == []


def test_connections_beyond_the_limit_are_closed(harness: Harness) -> None:
    port = _gateway(harness, max_connections=2)
    # Two connections, each proven to be served (an ACK came back), so the gateway counts them.
    held = [BlockingMLLPClient("127.0.0.1", port, response_timeout=5) for _ in range(2)]
    for n, client in enumerate(held):
        assert ack_code(client.send(ADT.replace(b"|S1|", f"|H{n}|".encode()))) == "AA"
    try:
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=5) as first:
            # The two held connections are open: a third one is refused ...
            with pytest.raises(DeliveryError):
                first.send(ADT)
        held.pop().close()

        # ... and once one closes (the gateway sees it go), a new connection is served.
        def served() -> bool:
            try:
                with BlockingMLLPClient("127.0.0.1", port, response_timeout=5) as client:
                    return ack_code(client.send(ADT)) == "AA"
            except DeliveryError:
                return False

        wait_for(served, 10, "a connection to be served again")
    finally:
        for client in held:
            client.close()


def _raw_ack(port: int, source: str, payload: bytes = ADT) -> bytes:
    """One message over a plain socket from ``source`` (a loopback address); the answer
    (empty when the gateway closed the connection unanswered)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        try:
            s.sendall(START_BLOCK + payload + END_BLOCK)
            return s.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return b""


def test_one_client_address_cannot_take_every_connection(harness: Harness) -> None:
    port = _gateway(harness, max_connections=10, max_connections_per_client=2)
    held = [BlockingMLLPClient("127.0.0.1", port, response_timeout=5) for _ in range(2)]
    try:
        for n, client in enumerate(held):
            assert ack_code(client.send(ADT.replace(b"|S1|", f"|H{n}|".encode()))) == "AA"
        # A third connection from the same address is closed unanswered ...
        assert _raw_ack(port, "127.0.0.1") == b""
        # ... while another client address is still served.
        assert b"MSA|AA|S1" in _raw_ack(port, "127.0.0.2")
    finally:
        for client in held:
            client.close()


def test_idle_connections_are_closed_and_the_default_is_five_minutes(harness: Harness) -> None:
    assert HL7TCPServiceSettings(port=1).idle_timeout == 300
    port = _gateway(harness, idle_timeout=1)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle:
        started = time.monotonic()
        assert idle.recv(1024) == b""  # the gateway closed it
        assert 0.5 < time.monotonic() - started < 9
    assert b"MSA|AA|S1" in _raw_ack(port, "127.0.0.1")


def test_hl7_operation_sends_over_tls_with_its_client_certificate(
    harness: Harness, pki: Path
) -> None:
    h = harness
    peer_port = free_port()
    tls_peer = {"host": "127.0.0.1", "port": peer_port, "tls_ca": str(pki / "ca.pem")}
    h.write(
        [
            {
                "name": "Out",
                "class": "HL7TCPOperation",
                "settings": {
                    **tls_peer,
                    "tls_cert": str(pki / "client.pem"),
                    "tls_key": str(pki / "client.key"),
                },
            },
            # Trusts the peer but has no certificate of its own: the peer refuses it.
            {
                "name": "NoCert",
                "class": "HL7TCPOperation",
                "settings": {**tls_peer, "failure_timeout": 0},
            },
            {
                "name": "Peer",
                "class": "HL7TCPService",
                "targets": ["Rec"],
                "settings": {
                    "port": peer_port,
                    "tls_cert": str(pki / "server.pem"),
                    "tls_key": str(pki / "server.key"),
                    "tls_ca": str(pki / "ca.pem"),
                },
            },
            {"name": "Rec", "class": "tests.hosts:RecordingOperation", "pool": "solo"},
        ]
    )
    for item in ("Out", "NoCert", "Rec"):
        h.start_worker(item)
    h.start_gateway(peer_port)
    sent = h.send("Out", ADT.decode())
    refused = h.send("NoCert", ADT.replace(b"|S1|", b"|S2|").decode())
    wait_for(
        lambda: h.store.header(sent.message_id).status == Status.COMPLETED, 60, "sent over TLS"
    )
    assert h.store.header(sent.message_id).ack_code == "AA"
    # Given up at the first refusal (failure_timeout 0): set aside as suspended, not delivered.
    wait_for(lambda: h.store.header(refused.message_id).status == Status.SUSPENDED, 60, "refused")
    refusal = [e.detail or "" for e in h.store.events(refused.message_id) if e.event == "suspended"]
    assert refusal and "without sending an ACK" in refusal[0]
    received = h.store.find(source="Peer")
    assert [m.control_id for m in received] == ["S1"]


def test_viewer_serves_https_and_marks_its_session_cookie_secure(
    harness: Harness, pki: Path
) -> None:
    h = harness
    h.write([{"name": "Rec", "class": "tests.hosts:RecordingOperation", "pool": "solo"}])
    port = free_port()
    viewer = h._spawn_cli(
        ["web", str(h.path), "--port", str(port), "--tls-cert", str(pki / "server.pem"),
         "--tls-key", str(pki / "server.key")],
        log="viewer",
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))

    def login_page() -> Any:
        try:
            return urllib.request.urlopen(
                f"https://127.0.0.1:{port}/login", context=context, timeout=5
            )
        except OSError:
            assert viewer.poll() is None, h.log("viewer")
            return None

    with wait_for(login_page, 60, "the viewer over HTTPS") as page:
        cookie = page.headers["set-cookie"] or ""
    assert "hie_viewer=" in cookie and "secure" in cookie.lower()
    assert "samesite=strict" in cookie.lower()


def test_hl7_over_https_both_ways_with_client_certificates(harness: Harness, pki: Path) -> None:
    """An HL7HTTPService that wants client certificates, fed by a client with one, whose
    HL7HTTPOperation POSTs over HTTPS with its own certificate to a second such service."""
    port, peer_port = free_port(), free_port()
    tls_in = {
        "tls_cert": str(pki / "server.pem"),
        "tls_key": str(pki / "server.key"),
        "tls_ca": str(pki / "ca.pem"),
    }
    harness.write(
        [
            {
                "name": "In",
                "class": "HL7HTTPService",
                "targets": ["Out"],
                "settings": {"port": port, **tls_in},
            },
            {
                "name": "Out",
                "class": "HL7HTTPOperation",
                "pool": "threads",
                "settings": {
                    "url": f"https://127.0.0.1:{peer_port}/",
                    "tls_ca": str(pki / "ca.pem"),
                    "tls_cert": str(pki / "client.pem"),
                    "tls_key": str(pki / "client.key"),
                    "retry_interval": 0.2,
                },
            },
            {"name": "Peer", "class": "HL7HTTPService", "settings": {"port": peer_port, **tls_in}},
        ]
    )
    harness.start_worker("Out")
    harness.start_gateway(port)

    def post(context: ssl.SSLContext) -> bytes:
        request = urllib.request.Request(f"https://127.0.0.1:{port}/", data=ADT, method="POST")
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return bytes(answer.read())

    assert ack_code(post(_client_context(pki, with_cert=True))) == "AA"
    # Without a certificate the handshake fails: nothing is stored from that client.
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        post(_client_context(pki, with_cert=False))
    # The operation's HTTPS delivery reached the second service with the very bytes.
    delivered = wait_for(
        lambda: harness.store.find(source="Peer"), 30, "the delivery over HTTPS to be stored"
    )
    assert harness.store.load(delivered[0].message_id).body.encode() == ADT
    sent = harness.store.find(target="Out")
    assert len(sent) == 1
    wait_for(lambda: harness.store.header(sent[0].message_id).ack_code == "AA", 30, "Out's ACK")
