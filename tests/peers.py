"""Real MLLP and HTTP peers for tests: loopback receivers that record what they got and answer
as told.

Example::

    with MLLPPeer(reply="AE", text="no such patient") as peer:
        send_to(peer.port)
        assert peer.received[0].startswith(b"MSH")

``reply`` can be changed while the peer runs (the next message sees it), so a test can make a
peer fail first and recover later.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self

from hie.adapters.mllp import END_BLOCK, START_BLOCK, frame
from hie.hl7 import HL7Message, build_ack

#: How the peer answers each message:
#: ``AA``/``AE``/``AR``/``CA``/``CE``/``CR``: an ACK with that MSA-1;
#: ``close``: close the connection without an ACK (after reading the message);
#: ``mismatch``: an AA whose MSA-2 is another control id;
#: ``garbage``: a frame that is not HL7.
Reply = Literal["AA", "AE", "AR", "CA", "CE", "CR", "close", "mismatch", "garbage"]


class MLLPPeer:
    """A threaded MLLP receiver on 127.0.0.1 (port 0 by default); ``received`` lists payloads.

    Options: ``close_after_each`` closes after every ACK (like hl7apy's MLLPServer);
    ``split_ack`` sends each ACK in small pieces with pauses; ``delay`` waits before answering.
    """

    def __init__(
        self,
        reply: Reply = "AA",
        *,
        text: str | None = None,
        close_after_each: bool = False,
        split_ack: bool = False,
        delay: float = 0.0,
        port: int = 0,
    ) -> None:
        self.reply: Reply = reply
        self.text = text
        self.close_after_each = close_after_each
        self.split_ack = split_ack
        self.delay = delay
        self.received: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> Self:
        """Listen and serve in background threads."""
        self._sock.listen(16)
        self._sock.settimeout(0.1)
        thread = threading.Thread(target=self._accept_loop, name="mllp-peer", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop listening and close every connection."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            for client in self._clients:
                with contextlib.suppress(OSError):
                    client.close()

    def messages(self) -> list[HL7Message]:
        """What was received, parsed."""
        with self._lock:
            return [HL7Message(raw) for raw in self.received]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._clients.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.1)
        buf = b""
        try:
            while not self._stop.is_set():
                start, end = buf.find(START_BLOCK), buf.find(END_BLOCK)
                if start >= 0 and end > start:
                    payload, buf = buf[start + 1 : end], buf[end + len(END_BLOCK) :]
                    if not self._answer(conn, payload):
                        return
                    continue
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    return
                buf += chunk
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                conn.close()

    def _answer(self, conn: socket.socket, payload: bytes) -> bool:
        """Record and answer one message; False when the connection is to be closed."""
        with self._lock:
            self.received.append(payload)
        reply = self.reply
        if reply == "close":
            return False
        if self.delay:
            time.sleep(self.delay)
        data = frame(self._ack_bytes(payload, reply))
        if self.split_ack:
            for i in range(0, len(data), 7):
                conn.sendall(data[i : i + 7])
                time.sleep(0.01)
        else:
            conn.sendall(data)
        return not self.close_after_each

    def _ack_bytes(self, payload: bytes, reply: Reply) -> bytes:
        if reply == "garbage":
            return b"this is not HL7"
        msg = HL7Message(payload)
        if reply == "mismatch":
            ack = build_ack(msg, "AA")
            ack.set("MSA-2", "NOT-" + msg.control_id)
        else:
            ack = build_ack(msg, reply, text=self.text)
        return ack.encode()


class HTTPPeer:
    """A threaded HTTP receiver on 127.0.0.1 that records every request and answers as told.

    ``statuses`` are the statuses of the first answers, in order (then ``status`` for the
    rest), so a test can make the peer fail first and recover. With ``hl7=True`` a 2xx answer
    carries an ACK (``ack_code``) for the HL7 message received, as an HL7 HTTP receiver does.
    ``received`` holds ``(path, headers, body)`` per request (headers lower-cased).
    """

    def __init__(
        self,
        *,
        status: int = 200,
        statuses: list[int] | None = None,
        hl7: bool = False,
        ack_code: str = "AA",
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        retry_after: str | None = None,
    ) -> None:
        self.status = status
        self.statuses = list(statuses or [])
        self.hl7 = hl7
        self.ack_code = ack_code
        self.body = body
        self.headers = headers or {}
        #: ``Retry-After`` sent with 429 and 503 answers only.
        self.retry_after = retry_after
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        #: ``time.monotonic()`` of each request's arrival.
        self.times: list[float] = []
        self._lock = threading.Lock()
        peer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                data = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with peer._lock:
                    peer.received.append((self.path, headers, data))
                    peer.times.append(time.monotonic())
                    status = peer.statuses.pop(0) if peer.statuses else peer.status
                out = peer.body
                if peer.hl7 and 200 <= status < 300:
                    out = build_ack(HL7Message(data), peer.ack_code).encode()
                self.send_response(status)
                for name, value in peer.headers.items():
                    self.send_header(name, value)
                if peer.retry_after is not None and status in (429, 503):
                    self.send_header("Retry-After", peer.retry_after)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_PUT = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass  # tests read ``received``, not stderr

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/in"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[bytes]:
        """The bodies received so far."""
        with self._lock:
            return [body for _, _, body in self.received]
