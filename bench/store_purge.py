"""Purge cost: time and peak Python memory to delete N old messages (default 100,000).

Messages are inserted through the bulk path (``save_many``, 5,000 per transaction), all created
90 days ago and completed, plus one old session that is still queued and must survive. Peak
memory is what tracemalloc sees during ``purge`` (Python allocations, not the database's cache);
the purge is timed without tracemalloc, which slows Python code down.

Run: .venv/bin/python bench/store_purge.py [messages] [batch-size] [sqlite|postgres]
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

from store import postgres_schema  # bench/store.py, the sibling script

from hie.messages import BODY_HL7, Envelope
from hie.store import MessageStore, SaveRequest, Status

ADT = (
    "MSH|^~\\&|PAS|HOSP|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control}|P|2.5\r"
    "PID|1||{control}^^^HOSP^MR||Doe^John||19700101|M\rPV1|1|I|WARD1^101^1\r"
)


def fill(store: MessageStore, total: int, chunk: int = 5000) -> None:
    created = datetime.now(UTC) - timedelta(days=90)
    for start in range(0, total, chunk):
        store.save_many(
            SaveRequest(
                Envelope(
                    body_type=BODY_HL7,
                    body=ADT.format(control=f"B{i}"),
                    created_at=created + timedelta(milliseconds=i),
                ),
                status=Status.COMPLETED,
            )
            for i in range(start, min(start + chunk, total))
        )
    busy = Envelope(body_type=BODY_HL7, body=ADT.format(control="BUSY"), created_at=created)
    store.save_many([busy, SaveRequest(busy.model_copy(update={"message_id": uuid4()}))])


def run(url: str, total: int, batch: int, traced: bool) -> tuple[int, float, int]:
    store = MessageStore(url)
    store.migrate()
    fill(store, total)
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    removed = store.purge(30, batch_size=batch)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    tracemalloc.stop()
    left = sum(store.counts_by_status().values())
    store.dispose()
    assert removed == total and left == 2, (removed, left)
    return removed, elapsed, peak


def main() -> None:
    total = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    backend = sys.argv[3] if len(sys.argv) > 3 else "sqlite"
    for traced in (False, True):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                result = run(f"sqlite:///{Path(tmp) / 'purge.db'}", total, batch, traced)
        else:
            with postgres_schema() as url:
                if url is None:
                    return
                result = run(url, total, batch, traced)
        removed, elapsed, peak = result
        what = f"peak {peak / 1e6:.1f} MB traced" if traced else f"{removed / elapsed:,.0f}/s"
        print(f"{backend}: purged {removed:,} in {elapsed:.1f} s (batch {batch}), {what}")


if __name__ == "__main__":
    main()
