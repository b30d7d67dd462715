"""MLLP: framing on asyncio streams, and the blocking outbound client.

A frame is ``START_BLOCK payload END_BLOCK`` (0x0B ... 0x1C 0x0D). ``MLLPFrameReader`` turns any
chunking of a byte stream into the same frames, discards (and counts) bytes outside frames, and
bounds memory: an oversize frame is skipped up to its end block and reported as ``Frame(oversize=
True)`` with its first bytes, so the caller can answer AR and keep the connection.

Errors: ``MLLPFramingError`` when the peer closes inside a frame; ``MLLPIdleTimeoutError`` when no
frame starts within ``idle_timeout``; ``MLLPFrameTimeoutError`` when a started frame does not end
within ``frame_timeout``. Both timeouts subclass ``MLLPFramingError`` *and* ``TimeoutError``, so
either ``except`` catches them (all are in ``hie.errors``). The client raises ``DeliveryError``
for every failure: a message is sent only when its ACK frame came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import ssl as ssl_module
import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from hie.errors import (
    ConnectionLostError,
    DeliveryError,
    MLLPFrameTimeoutError,
    MLLPFramingError,
    MLLPIdleTimeoutError,
    PeerUnreachableError,
)

logger = logging.getLogger(__name__)

START_BLOCK = b"\x0b"
END_BLOCK = b"\x1c\x0d"
#: How much of an oversize frame is kept: enough to read its MSH and answer it.
OVERSIZE_HEAD = 4096


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame read from a stream.

    ``payload`` is the message between the blocks; for an oversize frame only its first
    ``OVERSIZE_HEAD`` bytes. ``size`` is the payload's full length as received.
    """

    payload: bytes
    size: int
    oversize: bool = False


def frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in MLLP blocks; raises ``ValueError`` if it contains a block character."""
    if b"\x0b" in payload or b"\x1c" in payload:
        raise ValueError("an MLLP payload cannot contain 0x0B or 0x1C (they delimit frames)")
    return START_BLOCK + payload + END_BLOCK


class ByteBudget:
    """Bytes that all the connections of a listener may hold in frames at once.

    A reader takes bytes from it as a frame arrives and gives them back once the frame was
    handled (when it reads the next one, or closes). A reader that finds the budget spent waits,
    and its peer's bytes stay in the socket: memory stays bounded however many connections send
    large frames together, and a frame that waits longer than its ``frame_timeout`` ends its
    connection (the sender keeps the message and sends it again).
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._changed = asyncio.Condition()

    async def take(self, size: int) -> None:
        """Wait until ``size`` more bytes fit, then hold them."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + size <= self.limit)
            self.used += size
            self.peak = max(self.peak, self.used)

    async def give_back(self, size: int) -> None:
        """Return ``size`` bytes taken before."""
        if size:
            async with self._changed:
                self.used -= size
                self._changed.notify_all()


class MLLPFrameReader:
    """Reads frames from one connection; ``await read()`` until it returns None (clean EOF).

    ``discarded_bytes`` counts the bytes seen outside any frame. Memory stays under
    ``max_size`` plus the stream's buffer limit whatever the peer sends; with a ``budget``
    shared by several readers, their frames together stay under it (``close`` gives back what
    the last frame held). Example::

        frames = MLLPFrameReader(reader, max_size=1 << 20, idle_timeout=600, frame_timeout=30)
        async for f in frames:
            ...
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        *,
        max_size: int,
        idle_timeout: float | None = None,
        frame_timeout: float | None = None,
        budget: ByteBudget | None = None,
    ) -> None:
        if budget is not None and budget.limit < max_size:
            raise ValueError(
                f"a byte budget of {budget.limit} cannot hold one frame of max_size {max_size}"
            )
        self.reader = reader
        self.max_size = max_size
        self.idle_timeout = idle_timeout
        self.frame_timeout = frame_timeout
        self.budget = budget
        self.discarded_bytes = 0
        self.frames = 0
        self._held = 0

    def __aiter__(self) -> MLLPFrameReader:
        return self

    async def __anext__(self) -> Frame:
        result = await self.read()
        if result is None:
            raise StopAsyncIteration
        return result

    async def close(self) -> None:
        """Give back the bytes of the last frame to the budget (the frame was handled)."""
        if self.budget is not None:
            held, self._held = self._held, 0
            await self.budget.give_back(held)

    async def read(self) -> Frame | None:
        """The next frame, or None when the peer closed between frames.

        The previous frame counts as handled: its bytes go back to the budget.
        """
        await self.close()
        try:
            # asyncio.timeout costs a timer per call; skip it on the hot path when not needed.
            if self.idle_timeout is None:
                started = await self._skip_to_start()
            else:
                async with asyncio.timeout(self.idle_timeout):
                    started = await self._skip_to_start()
        except TimeoutError:
            raise MLLPIdleTimeoutError(
                f"no MLLP frame started within {self.idle_timeout}s"
            ) from None
        if not started:
            return None
        try:
            if self.frame_timeout is None:
                result = await self._read_body()
            else:
                async with asyncio.timeout(self.frame_timeout):
                    result = await self._read_body()
        except TimeoutError:
            raise MLLPFrameTimeoutError(
                f"an MLLP frame started but did not end within {self.frame_timeout}s"
            ) from None
        self.frames += 1
        return result

    def _discard(self, data: bytes) -> None:
        if data:
            self.discarded_bytes += len(data)
            # The count only: the bytes may be part of a message (patient data).
            logger.warning("discarded %d byte(s) outside MLLP frames", len(data))

    async def _hold(self, size: int) -> None:
        """Count ``size`` more bytes of this frame against the budget (waiting for room)."""
        if self.budget is None:
            return
        if size > 0:
            await self.budget.take(size)
        elif size < 0:
            await self.budget.give_back(-size)
        self._held += size

    async def _skip_to_start(self) -> bool:
        while True:
            try:
                data = await self.reader.readuntil(START_BLOCK)
            except asyncio.IncompleteReadError as exc:
                self._discard(exc.partial)
                return False
            except asyncio.LimitOverrunError as exc:
                self._discard(await self.reader.readexactly(exc.consumed))
                continue
            if len(data) > 1:
                self._discard(data[:-1])
            return True

    async def _read_body(self) -> Frame:
        chunks: list[bytes] = []
        size = 0
        oversize = False
        while True:
            try:
                data = await self.reader.readuntil(END_BLOCK)
                done = True
            except asyncio.IncompleteReadError as exc:
                raise MLLPFramingError(
                    f"connection closed inside an MLLP frame after {size + len(exc.partial)} "
                    "byte(s); the partial message was never acknowledged"
                ) from None
            except asyncio.LimitOverrunError as exc:
                # Longer than the stream's buffer limit: take what is there (the limit leaves a
                # possible half end block in the buffer) and keep looking.
                data = await self.reader.readexactly(exc.consumed)
                done = False
            if done:
                data = data[: -len(END_BLOCK)]
            size += len(data)
            if not oversize:
                if size > self.max_size:
                    oversize = True
                    chunks = [b"".join([*chunks, data])[:OVERSIZE_HEAD]]
                    await self._hold(len(chunks[0]) - self._held)
                else:
                    await self._hold(len(data))
                    chunks.append(data)
            if done:
                break
        payload = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if oversize:
            return Frame(payload, size, oversize=True)
        restart = payload.rfind(START_BLOCK)
        if restart >= 0:
            # A frame that lost its end block, followed by a new frame: keep the new one.
            self._discard(payload[: restart + 1])
            payload = payload[restart + 1 :]
        return Frame(payload, len(payload))


class BlockingMLLPClient:
    """An MLLP sender with plain sockets (Celery workers have no event loop), one send at a time.

    It keeps one connection open and reconnects after failures; ``send`` returns the payload of
    the ACK frame. A connection the peer closed while idle (some receivers, hl7apy's among them,
    close after every message) is replaced by a fresh one, and a send that finds a reused
    connection dead before any response is tried once more on a fresh one; that retry can deliver
    a message twice, which MLLP receivers must tolerate anyway. Raises ``DeliveryError`` when no
    complete ACK frame came back (``PeerUnreachableError`` when no connection could be opened).
    A lock serialises the threads that share a client.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float = 10.0,
        response_timeout: float = 30.0,
        max_ack_size: int = 1 << 20,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self.response_timeout = response_timeout
        self.max_ack_size = max_ack_size
        self.ssl = ssl
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._sock is not None

    def connect(self) -> None:
        """Open the connection; raises ``DeliveryError`` if it cannot be opened in time."""
        self.close()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
            if self.ssl is not None:
                sock = self.ssl.wrap_socket(sock, server_hostname=self.host)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # frames are small
        except OSError as exc:
            raise PeerUnreachableError(
                f"cannot connect to MLLP peer {self.host}:{self.port}: {exc}"
            ) from exc
        self._sock = sock

    def close(self) -> None:
        """Close the connection, if any."""
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    def _peer_gone(self, sock: socket.socket) -> bool:
        # An idle MLLP connection has nothing to read: readable means EOF, a reset, or stray
        # bytes, and each is a reason to start fresh. TLS may have handshake records pending,
        # which a non-blocking read tells apart (SSLWantReadError: nothing for us, still alive).
        try:
            if not select.select([sock], [], [], 0)[0]:
                return False
            sock.setblocking(False)
            try:
                sock.recv(1)
            finally:
                sock.settimeout(self.response_timeout)
        except (ssl_module.SSLWantReadError, BlockingIOError):
            return False
        except (OSError, ValueError):
            return True
        return True

    def send(self, payload: bytes) -> bytes:
        """Send one message and return its ACK payload; raises ``DeliveryError``."""
        data = frame(payload)
        with self._lock:
            reused = self._sock is not None and not self._peer_gone(self._sock)
            if not reused:
                self.connect()
            try:
                return self._exchange(data)
            except ConnectionLostError:
                self.close()
                if not reused:
                    raise
            except BaseException:
                self.close()
                raise
            self.connect()
            try:
                return self._exchange(data)
            except BaseException:
                self.close()
                raise

    def _exchange(self, data: bytes) -> bytes:
        sock = self._sock
        assert sock is not None
        peer = f"{self.host}:{self.port}"
        deadline = time.monotonic() + self.response_timeout
        try:
            sock.settimeout(self.response_timeout)
            sock.sendall(data)
        except OSError as exc:
            raise ConnectionLostError(f"connection to {peer} lost while sending: {exc}") from exc
        buf = bytearray()
        received = 0
        while True:
            start = buf.find(START_BLOCK)
            if start < 0:
                buf.clear()  # garbage before the ACK: counted in `received`, then dropped
            else:
                end = buf.find(END_BLOCK, start + 1)
                if end >= 0:
                    ack = bytes(buf[start + 1 : end])
                    return ack[ack.rfind(START_BLOCK) + 1 :]
                if len(buf) - start > self.max_ack_size + len(END_BLOCK):
                    raise DeliveryError(f"ACK from {peer} is over {self.max_ack_size} bytes")
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                sock.settimeout(remaining)
                chunk = sock.recv(65536)
            except TimeoutError as exc:
                raise DeliveryError(f"no ACK from {peer} within {self.response_timeout}s") from exc
            except OSError as exc:
                if received:
                    raise DeliveryError(f"connection to {peer} lost before an ACK: {exc}") from exc
                raise ConnectionLostError(f"connection to {peer} lost: {exc}") from exc
            if not chunk:
                if received:
                    raise DeliveryError(
                        f"{peer} closed the connection after {received} byte(s) that were not "
                        "a complete ACK frame; the message was not acknowledged"
                    )
                raise ConnectionLostError(f"{peer} closed the connection without sending an ACK")
            received += len(chunk)
            buf += chunk
