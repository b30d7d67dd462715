"""The store on SQLite: connection settings, concurrency, forks, schema, HL7 field reading."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import text

from hie.errors import StoreError, StoreSyncError
from hie.messages import BODY_HL7, Envelope
from hie.store import GroupCommitter, HopRecord, ItemCounters, MessageStore, Status
from hie.store.hl7_fields import check_path, field_matches, msh_type_and_control_id
from hie.store.models import EVENTS, MESSAGES, Base

ADT = (
    "MSH|^~\\&|PAS|HOSP|LAB|HOSP|20240101||ADT^A01^ADT_A01|CTRL1|P|2.5\r"
    "PID|1||12345^^^HOSP^MR~NHS9^^^NHS^NH||Doe^John\r"
    "NK1|1|Doe^Jane|SPO\r"
    "NK1|2|Roe^Ann|MTH\r"
)


@pytest.fixture
def store_at(tmp_path: Path) -> Iterator[MessageStore]:
    """A store on a new SQLite file, not migrated yet."""
    s = MessageStore(f"sqlite:///{tmp_path / 'hie.db'}")
    yield s
    s.dispose()


def test_missing_parent_folder_is_created_and_pragmas_are_set(store: MessageStore) -> None:
    assert Path(str(store.url.database)).exists()
    with store.engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
        }
    # synchronous NORMAL is 1
    assert pragma == {
        "journal_mode": "wal",
        "busy_timeout": 30000,
        "foreign_keys": 1,
        "synchronous": 1,
    }


@contextmanager
def _durable(database: Path, url_path: Path | None = None) -> Iterator[MessageStore]:
    """The store the gateway opens (its commit gates an ACK) on ``database``, migrated first;
    opened through ``url_path`` when given (a link to it, say)."""
    MessageStore(f"sqlite:///{database}").migrate()
    durable = MessageStore(f"sqlite:///{url_path or database}", durable=True)
    try:
        yield durable
    finally:
        durable.dispose()


def _record_syncs(monkeypatch: pytest.MonkeyPatch, database: Path) -> list[tuple[str, int, bool]]:
    """Every ``os.fdatasync`` from Python, with what it saw: the file, how many messages another
    connection reads, and whether another writer could take the write lock (busy_timeout 0)."""
    real, synced = os.fdatasync, []

    def fdatasync(fd: int) -> None:
        other = sqlite3.connect(database, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            lock_free = True
        except sqlite3.OperationalError:
            lock_free = False
        rows = other.execute("SELECT count(*) FROM messages").fetchone()[0]
        other.close()
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), rows, lock_free))
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return synced


_needs_proc = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="which file was synced is read from /proc (Linux)"
)


@_needs_proc
def test_a_durable_store_syncs_the_log_after_every_commit_outside_the_write_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the store the gateway opens (its commit gates an ACK), on a migrated file
    path = tmp_path / "hie.db"
    with _durable(path) as durable:
        synced = _record_syncs(monkeypatch, path)
        # When two messages are saved, one after the other
        for _ in range(2):
            durable.save(Envelope.wrap(ADT, target="Router"), event="received")
        # Then the log was synced after each commit, with the write lock already free
        wal = os.path.realpath(f"{path}-wal")
        assert synced == [(wal, 1, True), (wal, 2, True)]
        # And the commit itself does not wait for the disk (NORMAL is 1; the sync above does)
        with durable.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1


@_needs_proc
def test_the_log_synced_is_the_one_sqlite_writes_when_the_store_path_is_a_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a store whose path is a symbolic link to the real file elsewhere
    (tmp_path / "data").mkdir()
    real, link = tmp_path / "data" / "real.db", tmp_path / "hie.db"
    link.symlink_to(real)
    with _durable(real, url_path=link) as durable:
        synced = _record_syncs(monkeypatch, real)
        durable.save(Envelope.wrap(ADT, target="Router"), event="received")
        # Then the log SQLite named after the real file is synced, never the database file
        assert Path(f"{real}-wal").exists() and not Path(f"{link}-wal").exists()
        assert [s[0] for s in synced] == [os.path.realpath(f"{real}-wal")]


def test_a_durable_store_given_as_a_uri_keeps_syncing_inside_the_commit(tmp_path: Path) -> None:
    # A file: URI names no path the store can sync itself: SQLite's FULL does it (2)
    durable = MessageStore(f"sqlite:///file:{tmp_path / 'hie.db'}?uri=true", durable=True)
    try:
        with durable.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        durable.dispose()


def test_a_failed_sync_acknowledges_nothing_and_is_not_retried_message_by_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a durable store whose disk refuses to sync (EIO)
    path = tmp_path / "hie.db"

    def broken(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with _durable(path) as durable:
        monkeypatch.setattr(os, "fdatasync", broken)
        # When two messages are submitted together to the group committer
        with GroupCommitter(durable, max_delay_ms=50) as committer:
            futures = [committer.submit(Envelope.wrap(ADT, target="Router")) for _ in range(2)]
            errors = [f.exception(timeout=10) for f in futures]
        # Then neither may be acknowledged, and the error says what happened (saved again one
        # by one, each would have failed on its own row instead: a plain StoreError)
        assert all(isinstance(e, StoreSyncError) for e in errors), errors
        assert "committed, but syncing" in str(errors[0]) and "Input/output error" in str(errors[0])
        # And what was committed is there once, queued for the sweeper
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT count(*), min(status) FROM messages").fetchone()
        assert rows == (2, "queued")


def test_a_worker_store_leaves_syncing_to_checkpoints(
    store: MessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (synced.append(fd), real_sync(fd))[1])
    store.save(Envelope.wrap(ADT, target="Router"), event="received")
    assert synced == []


def test_migrated_schema_matches_the_models(store: MessageStore) -> None:
    with store.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert version == "0004_production"


def store_before_counters(store: MessageStore) -> None:
    """Migrate ``store`` to the schema before ``item_counters`` and write messages as it did:
    at Out, 3 received (2 completed, 1 in error) from In, and 1 retry."""
    store.migrate("0002_target_status_index")
    now = datetime.now(UTC)
    rows = [
        {"message_id": str(uuid4()), "session_id": str(uuid4()), "source": "In", "target": "Out",
         "priority": 5, "status": status, "created_at": now, "updated_at": now,
         "possible_duplicate": False, "attempts": 1}
        for status in ("completed", "completed", "error")
    ]  # fmt: skip
    retry = {"message_id": rows[0]["message_id"], "at": now, "event": "retried", "item": "Out"}
    with store.engine.begin() as conn:
        conn.execute(MESSAGES.insert(), rows)
        conn.execute(EVENTS.insert(), [retry])


def test_upgrade_starts_the_counters_from_the_stored_messages(store_at: MessageStore) -> None:
    # Given a store written before there were counters
    store_before_counters(store_at)
    # When it is upgraded
    store_at.migrate()
    # Then status shows the same figures as before the upgrade
    counters = store_at.counters(["Out", "In"])
    assert counters["Out"] == ItemCounters(received=3, completed=2, failed=1, retried=1)
    assert counters["In"] == ItemCounters(sent=3)


def test_in_memory_database_works_for_single_threaded_tools() -> None:
    s = MessageStore("sqlite://")
    s.migrate()
    sent = Envelope(body_type=BODY_HL7, body=ADT)
    s.save(sent)
    assert s.load(sent.message_id) == sent


def test_concurrent_writers_wait_for_the_lock_instead_of_failing(store: MessageStore) -> None:
    # Given messages and eight threads updating them at once (one SQLite writer at a time)
    envelopes = [Envelope(body_type=BODY_HL7, body=ADT) for _ in range(8)]
    store.save_many(envelopes)
    errors: list[BaseException] = []

    def work(env: Envelope) -> None:
        try:
            for _ in range(25):
                store.set_status(env.message_id, Status.IN_PROGRESS)
                store.record_event(env.message_id, "alert", detail="tick")
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    # When they all write
    threads = [threading.Thread(target=work, args=(e,)) for e in envelopes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then BEGIN IMMEDIATE + busy_timeout queued them: no "database is locked"
    assert errors == []
    assert {store.header(e.message_id).attempts for e in envelopes} == {25}


def _save_in_child(store: MessageStore, env: Envelope, engine_id: int, out: object) -> None:
    store.save(env)
    out.put(id(store.engine) != engine_id)  # type: ignore[attr-defined]


def test_forked_child_builds_its_own_engine(store: MessageStore) -> None:
    # Given a store already used by the parent (so its pool holds a connection)
    store.counts_by_status()
    parent_engine = store.engine
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    env = Envelope(body_type=BODY_HL7, body=ADT)

    # When a forked child saves through the same store object
    child = ctx.Process(target=_save_in_child, args=(store, env, id(parent_engine), out))
    child.start()
    child.join(timeout=60)

    # Then the child used a new engine, and the parent still reads fine (its pool intact)
    assert child.exitcode == 0
    assert out.get(timeout=5) is True
    out.close()
    out.join_thread()
    assert store.engine is parent_engine
    assert store.load(env.message_id) == env


def test_unreachable_database_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot create folder"):
        MessageStore(f"sqlite:///{blocker / 'hie.db'}").migrate()


# -- HL7 fields ----------------------------------------------------------------------------------


def test_msh_type_and_control_id_are_read_from_the_header() -> None:
    assert msh_type_and_control_id(ADT) == ("ADT^A01", "CTRL1")
    assert msh_type_and_control_id("MSH|^~\\&|A|B|C|D|20240101||ACK|9|P|2.5") == ("ACK", "9")
    assert msh_type_and_control_id("MSH#$~\\&#A#B#C#D#1##ORU$R01#7#P") == ("ORU^R01", "7")
    assert msh_type_and_control_id("PID|1") == (None, None)
    assert msh_type_and_control_id("MSH|^~\\&|A") == (None, None)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("PID-3", "12345", True),  # first component of the first repetition
        ("PID-3", "NHS9", True),  # first component of the second repetition
        ("PID-3", "12345^^^HOSP^MR", True),  # one whole repetition
        ("PID-3.4", "HOSP", True),
        ("PID-3.4", "NHS", True),
        ("PID-3", "1234", False),
        ("PID-5", "Doe^John", True),
        ("NK1-2", "Roe^Ann", True),  # any occurrence of a repeated segment
        ("MSH-10", "CTRL1", True),
        ("MSH-9", "ADT^A01^ADT_A01", True),
        ("PID-3(2)", "NHS9", True),
        ("PID-3(2).1", "12345", False),
        ("PID-30", "x", False),
        ("OBX-5", "x", False),
    ],
)
def test_field_matches_exactly(path: str, value: str, expected: bool) -> None:
    assert field_matches(ADT, path, value) is expected
    assert field_matches(ADT.replace("\r", "\n"), path, value) is expected


def test_field_path_must_be_an_hl7_path() -> None:
    check_path("pid-3(2).1")
    with pytest.raises(ValueError, match="not an HL7 path"):
        check_path("PID.3")


def test_text_that_is_not_hl7_matches_nothing() -> None:
    assert not field_matches("PID|1||12345", "PID-3", "12345")


@given(st.text(max_size=300), st.text(min_size=1, max_size=10))
def test_field_matching_never_raises_on_any_text(raw: str, value: str) -> None:
    field_matches("MSH|^~\\&|" + raw, "PID-3", value)
    field_matches(raw, "MSH-9", value)
    msh_type_and_control_id(raw)
    msh_type_and_control_id("MSH" + raw)


def _adt(n: int = 1) -> Envelope:
    return Envelope.wrap(f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X{n}|P|2.5\r", target="Op")


def _record(envelope: Envelope, item: str, **fields: Any) -> HopRecord:
    base: dict[str, Any] = {"status": Status.COMPLETED, "event": "completed", "delivered": True}
    return HopRecord(str(envelope.message_id), str(envelope.session_id), item, **(base | fields))


def test_claim_takes_what_may_run_and_says_why_it_skips_the_rest(tmp_path: Path) -> None:
    store = MessageStore(f"sqlite:///{tmp_path / 'hop.db'}")
    store.migrate()
    # Given a queued message, one already completed at Op, one suspended, one never stored
    queued, done, held, stranger = (_adt(n) for n in range(4))
    store.save_many([queued, done, held])
    store.claim([done], "Op")
    store.record_hops([_record(done, "Op")])
    store.set_status(held.message_id, "suspended")

    # When a worker of Op claims all four, the first copy redelivered by the broker
    claims = store.claim([queued, done, held, stranger], "Op", redelivered={str(queued.message_id)})

    # Then the queued and the unknown message run (the unknown one is stored now) ...
    assert claims[str(queued.message_id)].attempt == 1
    assert claims[str(stranger.message_id)].attempt == 1
    assert store.header(stranger.message_id).status is Status.IN_PROGRESS
    assert store.header(queued.message_id).status is Status.IN_PROGRESS
    assert store.header(queued.message_id).possible_duplicate
    # ... and the others are skipped with their reason
    assert claims[str(done.message_id)].skip == "already completed"
    assert claims[str(held.message_id)].skip == "it is suspended"
    # A second claim of the same message is its second attempt; another item may run it too
    assert store.claim([queued], "Op")[str(queued.message_id)].attempt == 2
    assert store.claim([done], "Other")[str(done.message_id)].skip is None


def test_recorded_hops_write_status_children_ack_and_delivery_in_order(tmp_path: Path) -> None:
    store = MessageStore(f"sqlite:///{tmp_path / 'hop.db'}")
    store.migrate()
    # Given a claimed message whose hop sent a child and got an ACK
    sent = _adt()
    store.save(sent)
    store.claim([sent], "Op")
    child = sent.child(sent.body, target="Next", source="Op")
    record = _record(
        sent, "Op", duration_ms=2.5, children=(child,), events=(("rule", "all -> Next"),),
        ack=("AE", "unknown patient"), possible_duplicate="sent, no ACK",
    )  # fmt: skip

    # When it is recorded (and once more by a redelivered task that got as far as its commit)
    store.record_hops([record])
    store.record_hops([_record(sent, "Op")], running=[str(child.message_id)])

    # Then the message is completed with its ACK, flagged, and delivered once
    header = store.header(sent.message_id)
    assert (header.status, header.ack_code, header.ack_text) == (
        Status.COMPLETED, "AE", "unknown patient",
    )  # fmt: skip
    assert header.possible_duplicate
    assert store.claim([sent], "Op")[str(sent.message_id)].skip == "already completed"
    # ... the child is queued for its target, sharing the body of its parent
    assert store.header(child.message_id).status is Status.QUEUED
    assert store.header(child.message_id).body_id == header.body_id
    assert store.waiting(["Next", "Op"]) == {"Next": 1, "Op": 0}
    # ... and the trail says what happened in the order it happened
    trail = [e.event for e in store.events(sent.message_id)][:6]
    assert trail == ["stored", "started", "rule", "ack_received", "possible_duplicate", "completed"]


def test_a_new_store_file_and_the_home_are_for_their_owner_only(tmp_path: Path) -> None:
    from hie.settings import make_home_private
    from hie.store import MessageStore

    store = MessageStore(f"sqlite:///{tmp_path / 'data' / 'hie.db'}")
    store.migrate()
    store.save(Envelope.wrap("MSH|^~\\&|A|B|C|D|1||ADT^A01|1|P|2.5\r", target="Out"))
    store.dispose()
    assert (tmp_path / "data" / "hie.db").exists()
    for name in ("hie.db", "hie.db-wal"):
        path = tmp_path / "data" / name
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, name
    home = tmp_path / "home"
    make_home_private(home / "new")
    assert (home / "new").stat().st_mode & 0o777 == 0o700
    (home / "open").mkdir(mode=0o755)
    make_home_private(home / "open")
    assert (home / "open").stat().st_mode & 0o777 == 0o700
