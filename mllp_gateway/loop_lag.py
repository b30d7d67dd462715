"""LoopLag: how late the gateway's event loop wakes up, to prove nothing blocks it.

A task asks to sleep ``interval`` seconds over and over and records how much later than asked it
woke. Blocking I/O on the loop (a broker publish, a database commit) shows up here directly.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field


@dataclass
class LoopLag:
    """Samples of event-loop lateness, in seconds."""

    interval: float = 0.01
    samples: list[float] = field(default_factory=list)
    limit: int = 100_000
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            asked = time.perf_counter()
            await asyncio.sleep(self.interval)
            self.samples.append(max(0.0, time.perf_counter() - asked - self.interval))
            if len(self.samples) > self.limit:
                del self.samples[: self.limit // 2]

    def stop(self) -> None:
        """Stop sampling."""
        if self._task is not None:
            self._task.cancel()

    def summary(self) -> str:
        """p50 / p99 / max lateness in milliseconds."""
        if not self.samples:
            return "event loop lag: no samples"
        ordered = sorted(self.samples)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000

        return (
            f"event loop lag: p50 {pct(0.5):.2f} ms, p99 {pct(0.99):.2f} ms, "
            f"max {ordered[-1] * 1000:.2f} ms over {len(ordered)} samples"
        )
