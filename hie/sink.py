"""A small MLLP sink: writes every message it receives to a file and answers AA.

It stands in for a downstream system in the demo (``hie sink --port 6661 --out DIR``) and in
local testing. Unreadable HL7 gets an AR with the reason; the bytes are still written, so nothing
a sender thought it delivered disappears.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
from pathlib import Path

from hie.adapters.mllp import MLLPFrameReader, frame
from hie.errors import HIEError
from hie.hl7 import HL7Message, build_ack

log = logging.getLogger(__name__)


class MLLPSink:
    """Writes each received message to ``out/<n>_<control id>.hl7`` and ACKs it."""

    def __init__(self, out: Path, host: str = "127.0.0.1", port: int = 6661) -> None:
        self.out = out
        self.host = host
        self.port = port
        self.received = 0
        self._numbers = itertools.count(1)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and start accepting."""
        self.out.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop accepting."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async for item in MLLPFrameReader(reader, max_size=16 << 20, idle_timeout=600):
                writer.write(frame(self.answer(item.payload)))
                await writer.drain()
        except (HIEError, ConnectionError) as exc:
            log.info("sink connection ended: %s", exc)
        finally:
            writer.close()

    def answer(self, payload: bytes) -> bytes:
        """Write ``payload`` to its file and return the ACK bytes."""
        n = next(self._numbers)
        try:
            msg = HL7Message(payload)
            control = "".join(c for c in msg.control_id if c.isalnum() or c in "-_.") or "none"
        except HIEError as exc:
            (self.out / f"{n:06d}_unreadable.hl7").write_bytes(payload)
            return f"MSH|^~\\&|SINK|HIE|||||ACK|{n}|P|2.5.1\rMSA|AR||{exc}\r".encode()
        tmp = self.out / f".{n:06d}.tmp"
        tmp.write_bytes(payload)
        tmp.replace(self.out / f"{n:06d}_{control}.hl7")  # readers never see half a file
        self.received += 1
        return build_ack(msg, "AA").encode()


async def _serve(sink: MLLPSink) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sink.start()
    print(f"MLLP sink on {sink.host}:{sink.port}, writing to {sink.out}", flush=True)
    await stop.wait()
    await sink.close()


def run_sink(out: Path, host: str, port: int) -> None:
    """Run a sink until SIGINT or SIGTERM."""
    asyncio.run(_serve(MLLPSink(out, host, port)))
