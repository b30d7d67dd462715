"""Ordered parallelism against FIFO, measured in the same run.

    .venv/bin/python bench/ordering.py [--messages 2000] [--patients 50] [--partitions 8]

The same HL7 messages (``--patients`` patients, interleaved) go through an item ordered by
``PID-3.1`` over ``--partitions`` sub-queues, and through a FIFO item (one slot), each with a random
``--min-delay``..``--max-delay`` seconds of work per message (20-40 ms by default: a peer's
round trip). Real worker processes, the real broker and a SQLite store. Prints
messages/s of each (first delivery to last, so start-up does not count), the ratio, and whether
every patient's messages arrived in send order. Not a test; run by hand.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hie.broker import ensure_broker
from hie.settings import Settings
from tests.integration.harness import Harness, wait_for


def orm(n: int, patient: str) -> str:
    return (
        f"MSH|^~\\&|LAB|HOSP|HIE|HOSP|20260101120000||ORM^O01|M{n:06d}|P|2.4\r"
        f"PID|1||{patient}^^^HOSP^MR||DOE^JANE\rORC|NW|{n}\rOBR|1|{n}||CBC^BLOOD COUNT\r"
    )


def run(
    folder: Path, partitions: int, messages: list[tuple[int, str]], delays: tuple[float, float]
) -> tuple[float, bool]:
    """Messages/s through one item, and whether each patient's order held."""
    settings = Settings(database_url=f"sqlite:///{folder / 'hie.db'}", home=folder)
    harness = Harness(settings, folder)
    harness.write(
        [
            {
                "name": "Op",
                "class": "tests.ordering_hosts:PatientOperation",
                "ordering_key": "PID-3.1",
                "partitions": partitions,
                "fifo": partitions == 1,
                "settings": {"min_delay": delays[0], "max_delay": delays[1]},
            }
        ]
    )
    try:
        for n, patient in messages:
            harness.send("Op", orm(n, patient))
        harness.start_worker("Op", expect=partitions)

        def done() -> list[str]:
            return [e for e in harness.journal() if e.startswith("done:")]

        wait_for(done, 120, "the first delivery")
        started = time.monotonic()
        wait_for(lambda: len(done()) >= len(messages), 1800, "every delivery")
        rate = (len(messages) - 1) / (time.monotonic() - started)
        seen: dict[str, list[int]] = {}
        for entry in done():
            _, patient, control = entry.split(":")
            seen.setdefault(patient, []).append(int(control[1:]))
        in_order = all(order == sorted(order) for order in seen.values())
        return rate, in_order
    finally:
        harness.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--patients", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument(
        "--fifo-messages", type=int, default=400, help="FIFO is slow: measure it on fewer messages"
    )
    args = parser.parse_args()
    ensure_broker(Settings())
    messages = [(n, f"P{n % args.patients:03d}") for n in range(args.messages)]
    with tempfile.TemporaryDirectory(prefix="hie-bench-order-") as tmp:
        keyed_dir, fifo_dir = Path(tmp) / "keyed", Path(tmp) / "fifo"
        keyed_dir.mkdir()
        fifo_dir.mkdir()
        delays = (args.min_delay, args.max_delay)
        keyed, keyed_ok = run(keyed_dir, args.partitions, messages, delays)
        fifo, fifo_ok = run(fifo_dir, 1, messages[: args.fifo_messages], delays)
    print(
        f"ordered by key over {args.partitions} partitions: {keyed:7.1f} msg/s "
        f"({args.messages} messages, per-patient order held: {keyed_ok})"
    )
    print(
        f"FIFO, one slot:                        {fifo:7.1f} msg/s "
        f"({args.fifo_messages} messages, order held: {fifo_ok})"
    )
    print(f"ratio keyed / FIFO: {keyed / fifo:.2f}")


if __name__ == "__main__":
    main()
