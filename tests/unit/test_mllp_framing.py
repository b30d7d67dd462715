"""MLLP framing on StreamReader (fed by hand) and the clients against a loopback server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Self, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hie.adapters.mllp import (
    ByteBudget,
    END_BLOCK,
    OVERSIZE_HEAD,
    START_BLOCK,
    BlockingMLLPClient,
    Frame,
    MLLPFrameReader,
    frame,
)
from hie.errors import (
    DeliveryError,
    HIEError,
    MLLPFramingError,
    MLLPFrameTimeoutError,
    MLLPIdleTimeoutError,
    PeerUnreachableError,
)
from hie.hl7 import HL7Message, ack_code, ack_control_id, build_ack

T = TypeVar("T")

MSG = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|%d|P|2.5\rPID|1||123\r"

payloads = st.binary(max_size=300).map(lambda b: b.replace(b"\x0b", b"").replace(b"\x1c", b""))


def read_all(
    chunks: list[bytes], *, max_size: int = 1 << 20, limit: int = 2**16
) -> tuple[list[Frame], MLLPFrameReader]:
    """Feed ``chunks`` then EOF into a StreamReader and read every frame."""

    async def run() -> tuple[list[Frame], MLLPFrameReader]:
        reader = asyncio.StreamReader(limit=limit)
        for chunk in chunks:
            reader.feed_data(chunk)
        reader.feed_eof()
        frames = MLLPFrameReader(reader, max_size=max_size)
        return [f async for f in frames], frames

    return asyncio.run(run())


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- framing ----------------------------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(payloads, max_size=8),
    st.lists(st.integers(min_value=0), max_size=20),
    st.sampled_from([4, 64, 2**16]),
)
def test_any_chunking_yields_the_same_messages(
    messages: list[bytes], cuts: list[int], limit: int
) -> None:
    stream = b"".join(frame(m) for m in messages)
    frames, reader = read_all(split(stream, cuts), limit=limit)
    assert [f.payload for f in frames] == messages
    assert not any(f.oversize for f in frames)
    assert reader.discarded_bytes == 0


@settings(max_examples=150)
@given(
    st.lists(
        st.tuples(st.binary(max_size=40).map(lambda b: b.replace(b"\x0b", b"")), payloads),
        max_size=6,
    ),
    st.lists(st.integers(min_value=0), max_size=10),
)
def test_garbage_between_frames_is_discarded_and_counted(
    pairs: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(garbage + frame(m) for garbage, m in pairs)
    frames, reader = read_all(split(stream, cuts), limit=16)
    assert [f.payload for f in frames] == [m for _, m in pairs]
    assert reader.discarded_bytes == sum(len(g) for g, _ in pairs)


@settings(max_examples=300)
@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=10))
def test_random_bytes_raise_only_hie_errors_and_yield_only_framed_data(
    data: bytes, cuts: list[int]
) -> None:
    try:
        frames, _ = read_all(split(data, cuts), max_size=100, limit=8)
    except MLLPFramingError:
        return  # EOF inside a frame
    for f in frames:
        if f.oversize:
            assert f.size > 100 and f.payload in data
        else:
            assert START_BLOCK + f.payload + END_BLOCK in data
    if START_BLOCK not in data:
        assert frames == []


def test_several_frames_in_one_read() -> None:
    frames, _ = read_all([frame(MSG % 1) + frame(MSG % 2) + frame(MSG % 3)])
    assert [f.payload for f in frames] == [MSG % 1, MSG % 2, MSG % 3]


@pytest.mark.parametrize("limit", [16, 2**16])
def test_oversize_frame_is_skipped_and_the_next_one_still_parses(limit: int) -> None:
    big = MSG % 1 + b"OBX|1|TX|||" + b"x" * 50_000 + b"\r"
    frames, _ = read_all([frame(big) + frame(MSG % 2)], max_size=10_000, limit=limit)
    assert [(f.oversize, f.size) for f in frames] == [(True, len(big)), (False, len(MSG % 2))]
    assert frames[0].payload == big[:OVERSIZE_HEAD]
    assert HL7Message(frames[0].payload.split(b"\r")[0]).control_id == "1"
    assert frames[1].payload == MSG % 2


def test_clean_eof_returns_none_and_counts_trailing_garbage() -> None:
    frames, reader = read_all([frame(MSG % 1) + b"\r\n"])
    assert len(frames) == 1
    assert reader.discarded_bytes == 2
    assert read_all([])[0] == []


def test_eof_inside_a_frame_is_a_framing_error() -> None:
    with pytest.raises(MLLPFramingError, match="never acknowledged"):
        read_all([frame(MSG % 1) + START_BLOCK + b"MSH|^~\\&|partial"])


def test_frame_that_lost_its_end_block_is_replaced_by_the_next_one() -> None:
    frames, reader = read_all([START_BLOCK + b"MSH|lost" + frame(MSG % 2)])
    assert [f.payload for f in frames] == [MSG % 2]
    assert reader.discarded_bytes == len(b"\x0bMSH|lost")


def test_discarded_bytes_are_logged_by_count_never_by_content(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("WARNING", logger="hie.adapters.mllp"):
        _, reader = read_all([b"PID|1||SECRET-MRN^^^H||DOE^JANE\r" + frame(MSG % 1)])
    assert reader.discarded_bytes == len(b"PID|1||SECRET-MRN^^^H||DOE^JANE\r")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert f"discarded {reader.discarded_bytes} byte(s)" in logged
    assert "SECRET" not in logged and "DOE" not in logged


def test_a_shared_byte_budget_holds_back_a_connection_until_another_frame_is_handled() -> None:
    big = b"MSH|" + b"x" * 2500

    async def run() -> tuple[bool, bool, int]:
        budget = ByteBudget(4096)
        a, b = asyncio.StreamReader(limit=512), asyncio.StreamReader(limit=512)
        frames_a = MLLPFrameReader(a, max_size=4096, budget=budget)
        frames_b = MLLPFrameReader(b, max_size=4096, budget=budget)
        a.feed_data(frame(big))
        first = await frames_a.read()  # held by A while it is handled
        assert first is not None and first.payload == big
        b.feed_data(frame(big))
        waiting = asyncio.ensure_future(frames_b.read())
        await asyncio.sleep(0.2)
        held_back = not waiting.done()  # 2,504 + 2,504 bytes do not fit in 4,096
        a.feed_eof()
        assert await frames_a.read() is None  # A's frame handled: its bytes go back
        second = await asyncio.wait_for(waiting, 5)
        await frames_b.close()
        return held_back, second is not None and second.payload == big, budget.peak

    held_back, delivered, peak = asyncio.run(run())
    assert held_back and delivered
    assert peak <= 4096


def test_a_byte_budget_smaller_than_one_frame_is_refused() -> None:
    async def build() -> None:
        MLLPFrameReader(asyncio.StreamReader(), max_size=8192, budget=ByteBudget(4096))

    with pytest.raises(ValueError, match="cannot hold one frame"):
        asyncio.run(build())


def test_frame_refuses_block_characters() -> None:
    with pytest.raises(ValueError, match="0x0B or 0x1C"):
        frame(b"MSH\x1c\r")


def test_idle_and_frame_timeouts_are_distinct() -> None:
    async def idle() -> None:
        reader = asyncio.StreamReader()
        await MLLPFrameReader(reader, max_size=100, idle_timeout=0.05).read()

    async def stalled() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(START_BLOCK + b"MSH|^~\\&|half")
        await MLLPFrameReader(reader, max_size=100, idle_timeout=5, frame_timeout=0.05).read()

    with pytest.raises(MLLPIdleTimeoutError) as info:
        asyncio.run(idle())
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, HIEError)
    with pytest.raises(MLLPFrameTimeoutError):
        asyncio.run(stalled())


# -- clients against a loopback MLLP server ---------------------------------------------------


class LoopbackServer:
    """A small real MLLP receiver; ``mode`` decides how it answers, ``received`` records."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.received: list[bytes] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            async for f in MLLPFrameReader(reader, max_size=1 << 20):
                self.received.append(f.payload)
                if self.mode == "close":
                    break
                if self.mode == "silent":
                    continue
                ack = frame(build_ack(HL7Message(f.payload)).encode())
                if self.mode == "garbage":
                    ack = b"\r\nnoise\x1c\r" + ack
                if self.mode == "split":
                    for i in range(0, len(ack), 7):
                        writer.write(ack[i : i + 7])
                        await writer.drain()
                        await asyncio.sleep(0.002)  # separate TCP segments on purpose
                else:
                    writer.write(ack)
                    await writer.drain()
                if self.mode == "once":  # like hl7apy's MLLPServer: one message per connection
                    break
        except (MLLPFramingError, ConnectionError):
            pass
        finally:
            writer.close()
            await writer.wait_closed()


def with_server(mode: str, scenario: Callable[[LoopbackServer], Awaitable[T]]) -> T:
    async def run() -> T:
        async with LoopbackServer(mode) as server:
            return await scenario(server)

    return asyncio.run(run())


def _assert_acks(acks: list[bytes], n: int) -> None:
    assert [ack_code(a) for a in acks] == ["AA"] * n
    assert [ack_control_id(a) for a in acks] == [str(i) for i in range(n)]


@pytest.mark.parametrize("mode", ["ack", "split", "garbage", "once"])
def test_blocking_client_reads_the_ack_however_it_arrives(mode: str) -> None:
    async def scenario(server: LoopbackServer) -> None:
        def send_three() -> list[bytes]:
            with BlockingMLLPClient("127.0.0.1", server.port, response_timeout=5) as client:
                return [client.send(MSG % i) for i in range(3)]

        _assert_acks(await asyncio.to_thread(send_three), 3)
        assert server.received == [MSG % i for i in range(3)]
        assert server.connections == (3 if mode == "once" else 1)

    with_server(mode, scenario)


class LateBlockingClient(BlockingMLLPClient):
    """Cannot see that the peer closed the idle connection (as when the FIN is still in flight)."""

    def _peer_gone(self, sock: socket.socket) -> bool:
        return False


def test_send_on_a_connection_the_peer_closed_retries_once_on_a_fresh_one() -> None:
    async def scenario(server: LoopbackServer) -> None:
        # Given a peer that closes after each ACK, and a client that reuses the dead connection
        def blocking() -> list[bytes]:
            with LateBlockingClient("127.0.0.1", server.port, response_timeout=5) as sync:
                return [sync.send(MSG % i) for i in range(3)]

        acks = await asyncio.to_thread(blocking)
        # Then every send is acknowledged, each on a fresh connection, each message received once
        assert [ack_control_id(a) for a in acks] == ["0", "1", "2"]
        assert server.received == [MSG % i for i in range(3)]
        assert server.connections == 3

    with_server("once", scenario)


def test_peer_closing_without_ack_is_a_delivery_error() -> None:
    async def scenario(server: LoopbackServer) -> None:
        def blocking() -> None:
            sync = BlockingMLLPClient("127.0.0.1", server.port, response_timeout=5)
            with pytest.raises(DeliveryError, match="without sending an ACK"):
                sync.send(MSG % 1)
            assert not sync.connected

        await asyncio.to_thread(blocking)
        # A fresh connection that fails is not retried: the message was sent exactly once.
        assert server.received == [MSG % 1]

    with_server("close", scenario)


def test_no_ack_in_time_is_a_delivery_error() -> None:
    async def scenario(server: LoopbackServer) -> None:
        def blocking() -> None:
            sync = BlockingMLLPClient("127.0.0.1", server.port, response_timeout=0.1)
            with pytest.raises(DeliveryError, match="no ACK"):
                sync.send(MSG % 2)
            assert not sync.connected

        await asyncio.to_thread(blocking)

    with_server("silent", scenario)


def test_connection_refused_is_a_delivery_error_saying_nothing_was_sent() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PeerUnreachableError, match="cannot connect") as info:
        BlockingMLLPClient("127.0.0.1", port, connect_timeout=1).send(MSG % 1)
    assert isinstance(info.value, DeliveryError)
