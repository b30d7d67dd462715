"""Bench (not a test): the viewer's searches over a store of 1 million messages (SQLite).

Bulk-inserts synthetic headers and bodies (sqlite3 executemany, one transaction per batch) into a
fresh store created by ``MessageStore.migrate()``, so every index the store defines is there,
then times each kind of search the viewer runs, as it runs it: ``find(..., limit=page+1)``.

    .venv/bin/python bench/viewer_search.py [--n 1000000] [--db /tmp/viewer-bench.db] [--keep]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hie.store import MessageStore

TYPES = ["ADT^A01", "ADT^A08", "ADT^A03", "ORU^R01", "ORM^O01"]
ITEMS = ["ADT.In", "ADT.Router", "ADT.Out", "LAB.Out", "PAS.Out"]
PAGE = 50


def body(n: int, msg_type: str, mrn: str) -> str:
    return (
        "\r".join(
            [
                f"MSH|^~\\&|PAS|HOSP|EPR|HOSP|20260101120000||{msg_type}|C{n:09d}|P|2.5.1",
                "EVN|A01|20260101120000",
                f"PID|1||{mrn}^^^HOSP^MR~{900000000 + n}^^^NHS^NH"
                f"||PATIENT{n % 5000}^ANNA||19800101|F",
                f"PV1|1|I|WARD{n % 40}^BED{n % 12}",
            ]
        )
        + "\r"
    )


def fill(path: Path, n: int, end: datetime, batch: int = 50_000) -> float:
    """Insert ``n`` messages spread over 30 days before ``end``; returns seconds taken."""
    rng = random.Random(7)
    span = 30 * 86400
    start = time.perf_counter()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    for first in range(0, n, batch):
        msgs, bodies = [], []
        for i in range(first, min(first + batch, n)):
            created = end - timedelta(seconds=span * (n - i) / n)
            stamp = created.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
            msg_type = TYPES[i % len(TYPES)]
            roll = rng.random()
            status = "error" if roll < 0.04 else "queued" if roll < 0.041 else "completed"
            sid = str(uuid.UUID(int=rng.getrandbits(128)))
            bodies.append((i + 1, sid, "hl7v2", body(i, msg_type, f"M{i:08d}"), 200, "x" * 64))
            msgs.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128))),
                    sid,
                    ITEMS[i % 3],
                    ITEMS[1 + i % 4],
                    msg_type,
                    f"C{i:09d}",
                    5,
                    status,
                    stamp,
                    stamp,
                    "peer refused: AE" if status == "error" else None,
                    i + 1,
                    0,
                    1,
                )
            )
        conn.executemany(
            "INSERT INTO bodies (body_id, session_id, content_type, content, size, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            bodies,
        )
        conn.executemany(
            "INSERT INTO messages (message_id, session_id, source, target, msg_type, control_id,"
            " priority, status, created_at, updated_at, error, body_id, possible_duplicate,"
            " attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            msgs,
        )
        conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return time.perf_counter() - start


def timed(fn: object, repeat: int = 5) -> tuple[float, int]:
    """Median milliseconds of ``repeat`` runs (after one warm-up), and the rows returned."""
    assert callable(fn)
    rows = len(fn())
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs), rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--db", default="/tmp/hie-viewer-bench.db")
    parser.add_argument("--keep", action="store_true", help="reuse an existing filled database")
    args = parser.parse_args()
    path = Path(args.db)
    end = datetime(2026, 2, 1, tzinfo=UTC)
    if not (args.keep and path.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        MessageStore(f"sqlite:///{path}").migrate()
        secs = fill(path, args.n, end)
        print(
            f"inserted {args.n:,} messages + bodies in {secs:.1f}s "
            f"({args.n / secs:,.0f}/s); file {path.stat().st_size / 1e6:,.0f} MB"
        )
    store = MessageStore(f"sqlite:///{path}")
    day = end - timedelta(days=1)
    hour = (end - timedelta(days=10), end - timedelta(days=10) + timedelta(hours=1))
    mid = args.n // 2
    cases = {
        "newest page, no filter": lambda: store.find(limit=PAGE + 1),
        "page 100, no filter (offset 4950)": lambda: store.find(limit=PAGE + 1, offset=4950),
        "status=error": lambda: store.find(status="error", limit=PAGE + 1),
        "status=queued (rare, 0.1%)": lambda: store.find(status="queued", limit=PAGE + 1),
        "type=ORU^R01": lambda: store.find(msg_type="ORU^R01", limit=PAGE + 1),
        "control_id (MSH-10)": lambda: store.find(control_id=f"C{mid:09d}", limit=PAGE + 1),
        "one hour, 10 days ago": lambda: store.find(since=hour[0], until=hour[1], limit=PAGE + 1),
        "target + last day": lambda: store.find(target="LAB.Out", since=day, limit=PAGE + 1),
        "PID-3 (field), all time": lambda: store.find(
            field=("PID-3", f"M{mid:08d}"), limit=PAGE + 1
        ),
        "PID-3 (field), last day": lambda: store.find(
            field=("PID-3", f"M{args.n - 10:08d}"), since=day, limit=PAGE + 1
        ),
        "PID-3 (field), 10-day-old hour": lambda: store.find(
            field=("PID-3", f"M{args.n - args.n // 3 + 1:08d}"),
            since=hour[0],
            until=hour[1],
            limit=PAGE + 1,
        ),
        "PID-5.1 (field, 200 matches), all time": lambda: store.find(
            field=("PID-5.1", "PATIENT1234"), limit=PAGE + 1
        ),
    }
    print(f"{'search':<42} {'median ms':>10} {'rows':>6}")
    for name, fn in cases.items():
        ms, rows = timed(fn, repeat=3 if "all time" in name else 5)
        print(f"{name:<42} {ms:>10.1f} {rows:>6}")
    store.dispose()


if __name__ == "__main__":
    main()
