"""Message store save rate: one commit per message against group commit, SQLite and PostgreSQL.

Each case saves the same 1.3 KB ADT (unique MSH-10) and waits for every save to be durable, as
the MLLP gateway does before it ACKs. "clients" are threads that each save one message at a
time, like gateway connections waiting for their ACK.

Then what the gateway's durability costs: the group commit on SQLite with every commit synced
(what gates an ACK, ``MessageStore(durable=True)``: ``synchronous=NORMAL`` and the log synced right
after each commit, outside the write lock) against ``NORMAL`` alone (synced at checkpoints), and
against ``synchronous=FULL`` (the log synced inside the commit, what HIE did before), alternating,
3 rounds, medians of the save rate and of one save's latency.

And what the per-item counters (``item_counters``) cost a worker's batch: a router's claim and
hop record (each message completed and sent on to one target: three counter rows) with and
without their upsert, alternating, 5 rounds, medians of one batch's time.

Run: .venv/bin/python bench/store.py [messages-per-case] [clients]
     .venv/bin/python bench/store.py counters [batches] (the counters' cost only)
PostgreSQL: HIE_TEST_POSTGRES_URL, default postgresql+psycopg2://postgres@127.0.0.1:5432/test
(a throwaway schema is created and dropped); skipped when it does not answer.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from hie.messages import BODY_HL7, Envelope, new_id
from hie.store import GroupCommitter, HopRecord, MessageStore, Status

ADT = (
    "MSH|^~\\&|ADMIT|GENHOSP|LABSYS|GENLAB|20240311083000||ADT^A01^ADT_A01|{control}|P|2.5.1\r"
    "EVN|A01|20240311083000|||OPER01^DESK^CLERK\r"
    "PID|1||P1001^^^GENHOSP^MR~SSN-42^^^USA^SS||SMITH^ANNA^MARIE^^MS||19700101|F|||"
    "12 HIGH STREET^^LEEDS^WYK^LS1 1AA^GBR^H||0113 555 7777^PRN^PH|||M|CHR|ACCT9001\r"
    "PV1|1|I|WARD7^12^B^GENHOSP||||CONS01^BROWN^CLAIRE^^^DR|REF01^GREEN^PAUL^^^DR|"
    "|MED||||1|||CONS01^BROWN^CLAIRE^^^DR|IP|VISIT0001\r"
) + "OBX|1|NM|8867-4^Heart rate^LN||72|/min|60-100|N|||F|||20240311083500\r" * 10


def envelopes(n: int) -> list[Envelope]:
    return [Envelope(body_type=BODY_HL7, body=ADT.format(control=f"C{i}")) for i in range(n)]


def run_clients(batch: list[Envelope], clients: int, save: Callable[[Envelope], None]) -> float:
    """Seconds for ``clients`` threads to save ``batch``, each one message at a time."""
    shares = [batch[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=lambda s=s: [save(e) for e in s]) for s in shares]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def durability(folder: Path, n: int, clients: int, rounds: int = 3) -> None:
    """Group commit on SQLite: durable (log synced after each commit) against NORMAL alone and
    against synchronous=FULL (see the module docstring)."""
    import statistics

    from sqlalchemy import event

    cases = ("NORMAL", "durable", "FULL")
    figures: dict[str, list[tuple[float, float, float]]] = {c: [] for c in cases}
    for rnd in range(rounds):
        for case in cases:
            store = MessageStore(
                f"sqlite:///{folder / f'dur{rnd}{case}.db'}", durable=case == "durable"
            )
            if case == "FULL":
                # As the gateway's store was before: FULL, checkpoints as rare as the durable's
                event.listen(
                    store.engine,
                    "connect",
                    lambda conn, _record: conn.executescript(
                        "PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=10000;"
                    ),
                )
            store.migrate()
            latencies: list[float] = []

            def save(e: Envelope, c: GroupCommitter, out: list[float] = latencies) -> None:
                started = time.perf_counter()
                c.submit(e).result()
                out.append(time.perf_counter() - started)

            with GroupCommitter(store) as committer:
                rate = n / run_clients(envelopes(n), clients, lambda e, c=committer: save(e, c))
            store.dispose()
            latencies.sort()
            p50, p99 = latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.99)]
            figures[case].append((rate, p50 * 1000, p99 * 1000))
    for case, runs in figures.items():
        rate = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        print(
            f"sqlite     {case:8s} {clients:2d} clients  {rate:8.0f} saves/s, "
            f"one save p50 {p50:.2f} ms, p99 {p99:.2f} ms"
        )


def measure(name: str, url: str, n: int, clients: int) -> None:
    store = MessageStore(url, pool_size=clients, max_overflow=clients)
    store.migrate()
    single_1 = n / run_clients(envelopes(n), 1, store.save)
    single_c = n / run_clients(envelopes(n), clients, store.save)
    with GroupCommitter(store) as committer:
        group_c = n / run_clients(envelopes(n), clients, lambda e: committer.submit(e).result())
        per_tx = committer.saved / max(committer.transactions, 1)
    store.dispose()
    print(f"{name:10s} single commit, 1 client      {single_1:8.0f} saves/s")
    print(f"{name:10s} single commit, {clients:2d} clients    {single_c:8.0f} saves/s")
    print(
        f"{name:10s} group commit,  {clients:2d} clients    {group_c:8.0f} saves/s "
        f"({per_tx:.1f} per transaction)"
    )
    print(f"{name:10s} group / best single          {group_c / max(single_1, single_c):8.1f}x")


def routed_batch(store: MessageStore, size: int) -> float:
    """Seconds for a router's claim and hop record of ``size`` stored messages."""
    batch = [
        Envelope(body_type=BODY_HL7, body=ADT.format(control=f"R{i}"), source="In", target="Router")
        for i in range(size)
    ]
    store.save_many(batch)
    records = [
        HopRecord(
            str(e.message_id),
            str(e.session_id),
            "Router",
            Status.COMPLETED,
            "completed",
            children=(
                e.model_copy(update={"message_id": new_id(), "source": "Router", "target": "Out"}),
            ),
        )
        for e in batch
    ]
    started = time.perf_counter()
    store.claim(batch, "Router")
    store.record_hops(records)
    return time.perf_counter() - started


def counters_cost(name: str, url: str, batches: int, rounds: int = 5) -> None:
    """A router's batch with and without the counters' upsert (see the module docstring)."""
    import statistics

    store = MessageStore(url)
    store.migrate()
    for size in (1, 10, 100):
        figures: dict[bool, list[float]] = {False: [], True: []}
        for rnd in range(rounds):
            # Which goes first swaps every round: the store grows, and later batches are slower.
            for counted in (False, True) if rnd % 2 == 0 else (True, False):
                if not counted:
                    # The baseline: the same transactions without their last statement.
                    store._hot.count = lambda conn, tally: None  # type: ignore[method-assign]
                elif "count" in vars(store._hot):
                    del store._hot.count
                runs = sorted(routed_batch(store, size) for _ in range(batches))
                figures[counted].append(statistics.median(runs) * 1000)
        without, with_ = (statistics.median(figures[c]) for c in (False, True))
        print(
            f"{name:10s} router batch of {size:3d}: {without:6.2f} ms without counters, "
            f"{with_:6.2f} ms with ({(with_ / without - 1) * 100:+.0f} %)"
        )
    store.dispose()


@contextmanager
def postgres_schema() -> Iterator[str | None]:
    url = os.environ.get(
        "HIE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
    )
    admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    schema = f"hie_bench_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except OperationalError as exc:
        print(f"postgres   skipped: {exc.orig}")
        yield None
        return
    try:
        scoped = admin.url.update_query_dict({"options": f"-csearch_path={schema}"})
        yield scoped.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    if sys.argv[1:2] == ["counters"]:
        batches = int(sys.argv[2]) if len(sys.argv) > 2 else 200
        with tempfile.TemporaryDirectory() as tmp:
            counters_cost("sqlite", f"sqlite:///{Path(tmp) / 'counters.db'}", batches)
        with postgres_schema() as url:
            if url:
                counters_cost("postgres", url, batches)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 16
    with tempfile.TemporaryDirectory() as tmp:
        measure("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", n, clients)
        for c in (1, 4, clients):
            durability(Path(tmp), n, c)
    with postgres_schema() as url:
        if url:
            measure("postgres", url, n, clients)


if __name__ == "__main__":
    main()
