"""The message store's behaviour, run against SQLite (a file) and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import gc
import re
import threading
import time
import tracemalloc
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from pydantic import BaseModel
from sqlalchemy import event, func, select

from hie.errors import StoreError
from hie.messages import BODY_HL7, Envelope
from hie.store import (
    GroupCommitter,
    HopRecord,
    ItemCounters,
    MessageStore,
    SaveRequest,
    Status,
)
from hie.store.models import BODIES, DELIVERIES, EVENTS, MESSAGES

pytestmark = pytest.mark.integration

ADT = (
    "MSH|^~\\&|PAS|HOSP|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control}|P|2.5\r"
    "EVN|A01|20240101120000\r"
    "PID|1||{mrn}^^^HOSP^MR~NHS{mrn}^^^NHS^NH||Doe^John||19700101|M\r"
    "PV1|1|I|WARD1^101^1\r"
)


class LabOrder(BaseModel):
    """A structured body, rebuilt from its class path on load."""

    patient_id: str
    tests: list[str]


def adt(control: str = "MSG0001", mrn: str = "12345") -> str:
    return ADT.format(control=control, mrn=mrn)


def hl7_envelope(text: str | None = None, **fields: object) -> Envelope:
    return Envelope(body_type=BODY_HL7, body=text or adt(), **fields)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MessageStore]:
    """A migrated, empty store on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'var' / 'hie.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    s = MessageStore(url)
    s.migrate()
    yield s
    s.dispose()


def count(store: MessageStore, table: object) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


# -- save / load -------------------------------------------------------------------------------


def test_hl7_message_round_trips_with_every_envelope_field(store: MessageStore) -> None:
    sent = hl7_envelope(
        correlation_id=uuid4(),
        parent_id=uuid4(),
        source="HL7.In",
        target="Router",
        priority=8,
        key="12345",
        headers={"rule": "adt-to-lab"},
    )
    store.save(sent, item="HL7.In")

    assert store.load(sent.message_id) == sent
    header = store.header(str(sent.message_id))
    assert (header.msg_type, header.control_id) == ("ADT^A01", "MSG0001")
    assert (header.status, header.priority, header.attempts) == (Status.QUEUED, 8, 0)
    assert header.created_at == sent.created_at


def test_model_body_is_rebuilt_as_its_class(store: MessageStore) -> None:
    order = LabOrder(patient_id="p1", tests=["FBC", "U&E"])
    sent = Envelope(body_type=f"{__name__}:LabOrder", body=order.model_dump(mode="json"))
    store.save(sent)

    loaded = store.load(sent.message_id)
    assert loaded.payload() == order
    assert store.header(sent.message_id).msg_type is None


def test_message_without_body_has_no_body_row(store: MessageStore) -> None:
    sent = Envelope(source="Timer")
    store.save(sent)
    assert store.load(sent.message_id) == sent
    assert store.header(sent.message_id).body_id is None


def test_raw_body_is_stored_instead_of_the_envelope_body(store: MessageStore) -> None:
    raw = "MSH|^~\\&|X|Y|||20240101||ORU^R01|RAW1|P|2.5\rOBX|1|TX|||caf\xe9\r".encode("latin-1")
    sent = hl7_envelope()
    store.save(sent, raw_body=raw)
    assert store.load(sent.message_id).body == raw.decode("latin-1")
    assert store.header(sent.message_id).control_id == "RAW1"


def test_large_body_is_stored_once_for_routed_copies(store: MessageStore) -> None:
    # Given a 5 MB HL7 message and two routed copies of it in the same session
    big = adt() + "".join(f"OBX|{i}|TX|||{'x' * 990}\r" for i in range(5_000))
    assert len(big) > 5_000_000
    original = hl7_envelope(big, source="HL7.In")
    copies = [original.model_copy(update={"message_id": uuid4(), "target": t}) for t in "AB"]

    # When the original and its copies are saved
    store.save(original)
    store.save_many(copies)

    # Then one body row serves all three, and each loads the full text
    body_ids = {store.header(e.message_id).body_id for e in [original, *copies]}
    assert len(body_ids) == 1
    assert count(store, BODIES) == 1
    assert store.load(copies[1].message_id).body == big


def test_a_new_session_stores_its_body_once_without_looking_for_one(store: MessageStore) -> None:
    # Given a gateway's new message for two targets: one session, one body
    first = hl7_envelope(target="A")
    second = first.model_copy(update={"message_id": uuid4(), "target": "B"})
    statements: list[str] = []

    def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    # When both are saved as the first saves of their session
    event.listen(store.engine, "before_cursor_execute", note)
    try:
        store.save_many([SaveRequest(e, new_session=True) for e in (first, second)])
    finally:
        event.remove(store.engine, "before_cursor_execute", note)

    # Then one body row serves both, found without a read of the bodies table
    assert store.header(first.message_id).body_id == store.header(second.message_id).body_id
    assert count(store, BODIES) == 1
    assert store.load(second.message_id).body == first.body
    assert any(s.startswith("INSERT INTO bodies") for s in statements)
    assert not [s for s in statements if s.startswith("SELECT") and "FROM bodies" in s]

    # And a routed copy saved later in the session still shares it
    copy = first.model_copy(update={"message_id": uuid4(), "target": "C"})
    store.save(copy)
    assert store.header(copy.message_id).body_id == store.header(first.message_id).body_id
    assert count(store, BODIES) == 1


def test_same_content_in_another_session_gets_its_own_body(store: MessageStore) -> None:
    first, second = hl7_envelope(), hl7_envelope()
    store.save_many([first, second])
    assert store.header(first.message_id).body_id != store.header(second.message_id).body_id


def test_saving_a_message_id_twice_is_refused(store: MessageStore) -> None:
    sent = hl7_envelope()
    store.save(sent)
    with pytest.raises(StoreError, match="cannot save"):
        store.save(sent)


def test_loading_an_unknown_message_names_it(store: MessageStore) -> None:
    missing = uuid4()
    with pytest.raises(StoreError, match=str(missing)):
        store.load(missing)


# -- statuses and events -------------------------------------------------------------------------


def test_status_changes_leave_a_trail_of_events(store: MessageStore) -> None:
    sent = hl7_envelope()
    store.save(sent, item="HL7.In")
    mid = sent.message_id

    store.set_status(mid, Status.IN_PROGRESS, item="HL7.Out")
    store.set_status(mid, Status.ERROR, item="HL7.Out", error="connection refused", duration_ms=4)
    store.record_event(mid, "retried", item="HL7.Out", detail="in 5 s")
    store.set_status(mid, Status.IN_PROGRESS, item="HL7.Out")
    store.set_status(mid, Status.COMPLETED, item="HL7.Out", duration_ms=12.5)
    store.set_ack(mid, "AA", "accepted", event="ack_received", item="HL7.Out")

    header = store.header(mid)
    assert header.status is Status.COMPLETED
    assert header.attempts == 2
    assert header.error == "connection refused"  # the last error stays for the record
    assert (header.ack_code, header.ack_text) == ("AA", "accepted")
    trail = store.events(mid)
    assert [e.event for e in trail] == [
        "stored",
        "started",
        "failed",
        "retried",
        "started",
        "completed",
        "ack_received",
    ]
    assert trail[2].detail == "connection refused"
    assert trail[5].duration_ms == 12.5
    assert all(e.session_id == str(sent.session_id) and e.pid for e in trail)
    assert [e.at for e in trail] == sorted(e.at for e in trail)


def test_events_of_a_session_cover_all_its_messages(store: MessageStore) -> None:
    parent = hl7_envelope()
    child = hl7_envelope(session_id=parent.session_id, parent_id=parent.message_id)
    store.save_many([parent, child])
    store.record_event(child.message_id, "alert", detail="slow")
    store.record_event(parent.message_id, "x")
    assert len(store.events(session_id=parent.session_id)) == 4


def test_possible_duplicate_is_flagged_and_recorded(store: MessageStore) -> None:
    sent = hl7_envelope()
    store.save(sent)
    store.mark_possible_duplicate(sent.message_id, "redelivered", item="HL7.Out")
    assert store.header(sent.message_id).possible_duplicate
    assert store.events(sent.message_id)[-1].event == "possible_duplicate"


def test_status_of_an_unknown_message_cannot_be_set(store: MessageStore) -> None:
    with pytest.raises(StoreError, match="not in the store"):
        store.set_status(uuid4(), Status.COMPLETED)


def test_counts_by_status(store: MessageStore) -> None:
    store.save_many([SaveRequest(hl7_envelope(), status=s) for s in ("queued", "queued", "error")])
    counts = store.counts_by_status()
    assert (counts[Status.QUEUED], counts[Status.ERROR], counts[Status.COMPLETED]) == (2, 1, 0)


# -- item counters -------------------------------------------------------------------------------


def hop(env: Envelope, item: str, status: Status, event: str, **more: Any) -> HopRecord:
    return HopRecord(str(env.message_id), str(env.session_id), item, status, event, **more)


def test_counters_follow_deliveries_failures_retries_and_resends(store: MessageStore) -> None:
    # Given three messages a service sent in for Out, and a worker's batch: one delivered, one
    # retried, one failed
    sent = [hl7_envelope(source="In", target="Out") for _ in range(3)]
    store.save_many(sent)
    ok, again, bad = sent
    store.claim(sent, "Out")
    store.record_hops(
        [
            hop(ok, "Out", Status.COMPLETED, "completed", delivered=True),
            hop(again, "Out", Status.QUEUED, "retried", error="timeout"),
            hop(bad, "Out", Status.ERROR, "failed", error="AR"),
        ]
    )
    # When the retried one completes next time, and the failed one is resent as a copy that
    # completes
    store.claim([again], "Out")
    store.record_hops([hop(again, "Out", Status.COMPLETED, "completed", delivered=True)])
    copy = bad.model_copy(update={"message_id": uuid4(), "parent_id": bad.message_id})
    store.save(copy)
    store.claim([copy], "Out")
    store.record_hops([hop(copy, "Out", Status.COMPLETED, "completed", delivered=True)])

    # Then Out received 4, completed 3, failed 1, retried 1; In sent 4 (the copy says In too)
    counters = store.counters(["Out", "In", "Nobody"])
    assert counters["Out"] == ItemCounters(received=4, completed=3, failed=1, retried=1)
    assert counters["In"] == ItemCounters(sent=4)
    assert counters["Nobody"] == ItemCounters()


def test_counters_count_a_status_entered_by_hand_once(store: MessageStore) -> None:
    # Given a message stored in error (a gateway's NAK) and then given its reason
    rejected = hl7_envelope(target="Router")
    store.save(rejected, status=Status.ERROR)
    store.set_status(rejected.message_id, Status.ERROR, error="MSH-9 is empty")
    # and a message an operator resumes by hand, which then completes
    parked = hl7_envelope(target="Router")
    store.save(parked, status=Status.SUSPENDED)
    store.set_status(parked.message_id, Status.COMPLETED)

    # Then each went into its status once
    assert store.counters(["Router"])["Router"] == ItemCounters(received=2, completed=1, failed=1)


def test_counters_do_not_go_down_after_a_purge(store: MessageStore) -> None:
    # Given old sessions, done and failed, at Out
    done = old_session(Status.COMPLETED, target="Out")
    failed = old_session(Status.ERROR, target="Out")
    store.save_many(done + failed)
    before = store.counters(["Out"])

    # When they are purged
    assert store.purge(30) == 4

    # Then the counters still say what happened
    assert before["Out"] == ItemCounters(received=4, completed=2, failed=2)
    assert store.counters(["Out"]) == before


def test_concurrent_batches_add_up_on_the_counters(store: MessageStore) -> None:
    # Given 8 threads that each record 25 completed hops at Out, one at a time
    batches = [[hl7_envelope(target="Out") for _ in range(25)] for _ in range(8)]
    store.save_many([e for b in batches for e in b])

    def work(batch: list[Envelope]) -> None:
        for env in batch:
            store.record_hops([hop(env, "Out", Status.COMPLETED, "completed")])

    with ThreadPoolExecutor(len(batches)) as pool:
        list(pool.map(work, batches))  # re-raises a thread's error here

    # Then no update was lost and none waited for another forever
    assert store.counters(["Out"])["Out"].completed == 200


def test_completions_carry_when_their_session_began(store: MessageStore) -> None:
    # Given a session that began an hour ago at In and completed at Out just now
    began = datetime.now(UTC) - timedelta(hours=1)
    first = hl7_envelope(source="In", target="Router", created_at=began)
    routed = hl7_envelope(session_id=first.session_id, source="Router", target="Out")
    store.save_many([first, routed])
    store.record_hops([hop(routed, "Out", Status.COMPLETED, "completed")])

    # Then the completion at Out is an hour after the session began, and nothing is newer
    (done,) = store.completions(["Out"])
    assert (done.message_id, done.item) == (str(routed.message_id), "Out")
    assert done.session_started == began
    assert store.completions(["Out"], since=done.completed_at + timedelta(seconds=1)) == []


def test_last_errors_give_each_items_newest_error(store: MessageStore) -> None:
    older, newer = hl7_envelope(target="Out"), hl7_envelope(target="Out")
    store.save_many([older, newer])
    store.set_status(older.message_id, Status.ERROR, error="AR: unknown patient")
    store.set_status(newer.message_id, Status.ERROR, error="timeout")
    assert store.last_errors(["Out", "Other"]) == {"Out": "timeout", "Other": None}
    store.ping()


# -- a business process's claim, folded into its record ----------------------------------------


def _done(envelope: Envelope, item: str, **fields: Any) -> HopRecord:
    base: dict[str, Any] = {"status": Status.COMPLETED, "event": "completed", "delivered": True}
    return HopRecord(str(envelope.message_id), str(envelope.session_id), item, **(base | fields))


def test_a_check_reads_what_a_claim_would_take_and_the_record_takes_it(store: MessageStore) -> None:
    # Given a queued message, one already completed at Router, one suspended
    queued, done, held, stranger = (hl7_envelope() for _ in range(4))
    store.save_many([queued, done, held])
    store.claim([done], "Router")
    store.record_hops([_done(done, "Router")])
    store.set_status(held.message_id, "suspended")

    # When a business process checks them: the same answers as a claim, nothing written
    checked = store.check([queued, done, held], "Router")
    assert checked is not None
    assert checked[str(queued.message_id)].attempt == 1
    assert checked[str(done.message_id)].skip == "already completed"
    assert checked[str(held.message_id)].skip == "it is suspended"
    assert store.header(queued.message_id).status is Status.QUEUED
    assert store.header(queued.message_id).attempts == 0
    # ... and a message the store has never seen makes it a claim's job (it saves the message)
    assert store.check([queued, stranger], "Router") is None

    # When its hop is recorded with the claim folded in
    began = datetime.now(UTC)
    child = queued.child(queued.body, target="Out", source="Router")
    dropped = store.record_hops(
        [_done(queued, "Router", children=(child,))], claim={str(queued.message_id): began}
    )

    # Then the message was taken (one attempt, started when it began) and completed
    assert dropped == set()
    header = store.header(queued.message_id)
    assert (header.status, header.attempts) == (Status.COMPLETED, 1)
    trail = store.events(queued.message_id)
    assert [e.event for e in trail] == ["stored", "started", "completed"]
    assert trail[1].at == began and trail[-2].detail == "attempt 1"
    assert store.header(child.message_id).status is Status.QUEUED


def test_a_folded_claim_drops_what_was_set_aside_meanwhile(store: MessageStore) -> None:
    # Given two messages checked by a process, one discarded by an operator while it ran
    kept, discarded = hl7_envelope(), hl7_envelope()
    store.save_many([kept, discarded])
    assert store.check([kept, discarded], "Router") is not None
    store.set_status(discarded.message_id, "discarded")

    # When their hops are recorded, each with a child
    children = [m.child(m.body, target="Out", source="Router") for m in (kept, discarded)]
    began = datetime.now(UTC)
    dropped = store.record_hops(
        [
            _done(m, "Router", children=(c,))
            for m, c in zip((kept, discarded), children, strict=True)
        ],
        claim={str(kept.message_id): began, str(discarded.message_id): began},
    )

    # Then the discarded one stays discarded, its child never stored: it is the one dropped
    assert dropped == {str(discarded.message_id)}
    assert store.header(discarded.message_id).status is Status.DISCARDED
    with pytest.raises(StoreError):
        store.header(children[1].message_id)
    assert store.header(kept.message_id).status is Status.COMPLETED
    assert store.header(children[0].message_id).status is Status.QUEUED


# -- idempotent delivery -------------------------------------------------------------------------


def test_racing_records_of_one_hop_leave_one_delivery(store: MessageStore) -> None:
    # Given 12 threads that finished the same message at the same item (a redelivered task)
    sent = hl7_envelope()
    store.save(sent)
    racers = 12
    barrier = threading.Barrier(racers)
    record = HopRecord(
        str(sent.message_id), str(sent.session_id), "HL7.Out", Status.COMPLETED, "completed",
        delivered=True,
    )  # fmt: skip
    errors: list[BaseException] = []

    def deliver() -> None:
        barrier.wait()
        try:
            store.record_hops([record])
        except BaseException as exc:
            errors.append(exc)

    # When they all record it at once
    threads = [threading.Thread(target=deliver) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    # Then none failed, one delivery row stands, and only that item counts as done
    assert errors == []
    assert count(store, DELIVERIES) == 1
    assert store.claim([sent], "HL7.Out")[str(sent.message_id)].skip == "already completed"
    assert store.claim([sent], "Other.Out")[str(sent.message_id)].skip is None


# -- group commit --------------------------------------------------------------------------------


def test_group_commit_makes_concurrent_submits_durable_in_few_transactions(
    store: MessageStore,
) -> None:
    # Given a committer and a counter of every transaction the engine commits
    commits = 0

    def on_commit(_conn: object) -> None:
        nonlocal commits
        commits += 1

    event.listen(store.engine, "commit", on_commit)
    envelopes = [hl7_envelope(adt(control=f"C{i}")) for i in range(1000)]

    # When 20 threads submit 1000 messages and wait for each to be committed
    with GroupCommitter(store, max_delay_ms=2.0) as committer:
        futures = []
        lock = threading.Lock()

        def submit(chunk: list[Envelope]) -> None:
            for env in chunk:
                fut = committer.submit(env, item="HL7.In")
                with lock:
                    futures.append(fut)

        threads = [threading.Thread(target=submit, args=(envelopes[i::20],)) for i in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for fut in futures:
            fut.result(timeout=60)
    event.remove(store.engine, "commit", on_commit)

    # Then every message is stored, with far fewer commits than messages
    assert count(store, MESSAGES) == 1000
    assert count(store, EVENTS) == 1000
    assert committer.saved == 1000
    assert commits == committer.transactions
    assert commits < 1000 / 4, f"{commits} transactions for 1000 submits"


def test_group_commit_fails_only_the_bad_message(store: MessageStore) -> None:
    existing = hl7_envelope()
    store.save(existing)
    with GroupCommitter(store, max_delay_ms=50) as committer:
        good = [committer.submit(hl7_envelope()) for _ in range(5)]
        bad = committer.submit(existing)
        for fut in good:
            fut.result(timeout=30)
        with pytest.raises(StoreError):
            bad.result(timeout=30)
    assert count(store, MESSAGES) == 6


def test_submit_async_returns_once_committed(store: MessageStore) -> None:
    sent = hl7_envelope()

    async def gateway() -> Envelope:
        with GroupCommitter(store) as committer:
            await committer.submit_async(sent, item="MLLP.In")
            # Nothing is ACKed before it is stored: it must be readable right now.
            return store.load(sent.message_id)

    assert asyncio.run(gateway()) == sent


def test_submit_after_close_is_refused(store: MessageStore) -> None:
    committer = GroupCommitter(store)
    committer.submit(hl7_envelope()).result(timeout=30)
    committer.close()
    committer.close()
    with pytest.raises(StoreError, match="closed"):
        committer.submit(hl7_envelope())


# -- find, session, trace, stale -----------------------------------------------------------------


def test_find_combines_status_type_source_target_time_and_control_id(store: MessageStore) -> None:
    now = datetime.now(UTC)
    old = hl7_envelope(adt("OLD"), source="A", target="X", created_at=now - timedelta(days=2))
    new = hl7_envelope(adt("NEW"), source="A", target="Y", created_at=now - timedelta(minutes=1))
    oru = hl7_envelope(adt("ORU").replace("ADT^A01^ADT_A01", "ORU^R01"), source="B")
    store.save_many([old, new, SaveRequest(oru, status=Status.ERROR)])

    def ids(**filters: object) -> list[str]:
        return [h.message_id for h in store.find(**filters)]  # type: ignore[arg-type]

    assert ids(status="error") == [str(oru.message_id)]
    assert ids(msg_type="ADT^A01") == [str(new.message_id), str(old.message_id)]
    assert ids(source="A", target="X") == [str(old.message_id)]
    assert ids(since=now - timedelta(hours=1), msg_type="ADT^A01") == [str(new.message_id)]
    assert ids(until=now - timedelta(days=1)) == [str(old.message_id)]
    assert ids(control_id="NEW") == [str(new.message_id)]
    assert ids(limit=1, offset=1) == [str(new.message_id)]


def test_find_by_field_compares_the_field_exactly(store: MessageStore) -> None:
    wanted = hl7_envelope(adt("A", mrn="12345"))
    longer = hl7_envelope(adt("B", mrn="123456"))  # contains the value: SQL finds it, Python not
    elsewhere = hl7_envelope(adt("12345", mrn="999"))  # the value is MSH-10, not PID-3
    store.save_many([wanted, longer, elsewhere])

    found = store.find(field=("PID-3", "12345"))
    assert [h.message_id for h in found] == [str(wanted.message_id)]
    assert [h.message_id for h in store.find(field=("PID-3", "NHS12345"))] == [
        str(wanted.message_id)
    ]
    assert [h.message_id for h in store.find(field=("MSH-10", "12345"))] == [
        str(elsewhere.message_id)
    ]
    assert store.find(field=("PID-3", "1234%")) == []  # LIKE wildcards are escaped


def test_find_by_field_pages_over_matches(store: MessageStore) -> None:
    base = datetime.now(UTC)
    matches = [
        hl7_envelope(adt(f"M{i}", mrn="777"), created_at=base - timedelta(seconds=i))
        for i in range(120)
    ]
    noise = [hl7_envelope(adt(f"N{i}", mrn="7770")) for i in range(80)]
    store.save_many(matches + noise)

    page = store.find(field=("PID-3.1", "777"), limit=30, offset=60)
    assert [h.message_id for h in page] == [str(e.message_id) for e in matches[60:90]]
    with pytest.raises(StoreError, match="not an HL7 path"):
        store.find(field=("PID3", "777"))


def test_find_by_field_far_past_the_matches_reads_one_page_of_bodies_at_a_time(
    store: MessageStore,
) -> None:
    store.save_many([hl7_envelope(adt(f"M{i}", mrn="777")) for i in range(30)])
    limits: list[int] = []

    def note_limit(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if "bodies" not in statement or "LIMIT" not in statement:
            return
        if isinstance(params, dict):  # PostgreSQL: LIMIT %(param_n)s
            name = re.search(r"LIMIT %\((\w+)\)s", statement)
            assert name is not None, statement
            limits.append(int(params[name.group(1)]))
        else:  # SQLite: ... LIMIT ? OFFSET ?
            limits.append(int(params[-2]))

    event.listen(store.engine, "before_cursor_execute", note_limit)
    try:
        assert store.find(field=("PID-3.1", "777"), limit=50, offset=2_000_000_000) == []
    finally:
        event.remove(store.engine, "before_cursor_execute", note_limit)
    assert limits and max(limits) <= 500


def test_trace_builds_the_session_tree_from_any_message(store: MessageStore) -> None:
    # Given a service message routed to two operations, one of which got a reply
    root = hl7_envelope(source="HL7.In", target="Router")
    to_lab = root.model_copy(
        update={"message_id": uuid4(), "parent_id": root.message_id, "target": "Lab.Out"}
    )
    to_pas = root.model_copy(
        update={"message_id": uuid4(), "parent_id": root.message_id, "target": "PAS.Out"}
    )
    reply = Envelope(
        session_id=root.session_id,
        parent_id=to_lab.message_id,
        correlation_id=to_lab.message_id,
        body_type="text",
        body="AA",
    )
    other_session = hl7_envelope()
    store.save_many([root, to_lab, to_pas, reply, other_session])
    store.set_status(to_lab.message_id, Status.COMPLETED, item="Lab.Out", duration_ms=3.0)

    # When tracing from the deepest message
    tree = store.trace(reply.message_id)

    # Then the whole tree hangs from the root, each node with its own events
    assert tree.header.message_id == str(root.message_id)
    assert {c.header.target for c in tree.children} == {"Lab.Out", "PAS.Out"}
    lab = next(c for c in tree.children if c.header.target == "Lab.Out")
    assert [e.event for e in lab.events] == ["stored", "completed"]
    assert [n.header.message_id for n in lab.children] == [str(reply.message_id)]
    assert [(d, n.header.message_id) for d, n in tree.walk()][-1][0] in (1, 2)
    assert len(list(tree.walk())) == 4
    assert lab.elapsed_ms >= 0


def test_session_lists_its_messages_oldest_first(store: MessageStore) -> None:
    first = hl7_envelope()
    second = hl7_envelope(session_id=first.session_id, parent_id=first.message_id)
    store.save_many([second, first])
    assert [h.message_id for h in store.session(first.session_id)] == [
        str(first.message_id),
        str(second.message_id),
    ]


def test_stale_lists_unfinished_messages_without_progress(store: MessageStore) -> None:
    waiting, running, done = hl7_envelope(), hl7_envelope(), hl7_envelope()
    store.save_many([waiting, running, done])
    store.set_status(running.message_id, Status.IN_PROGRESS)
    store.set_status(done.message_id, Status.COMPLETED)

    assert store.stale(3600) == []
    stale_ids = {h.message_id for h in store.stale(0)}
    assert stale_ids == {str(waiting.message_id), str(running.message_id)}
    assert [h.message_id for h in store.stale(0, statuses=["in_progress"])] == [
        str(running.message_id)
    ]


# -- purge ---------------------------------------------------------------------------------------


def old_session(
    status: Status, *, days: int = 40, size: int = 2, target: str | None = None
) -> list[SaveRequest]:
    """A session of ``size`` messages created ``days`` ago, all sharing one body."""
    root = hl7_envelope(created_at=datetime.now(UTC) - timedelta(days=days), target=target)
    copies = [root.model_copy(update={"message_id": uuid4()}) for _ in range(size - 1)]
    return [SaveRequest(e, status=status) for e in [root, *copies]]


def test_purge_removes_old_finished_sessions_with_their_rows(store: MessageStore) -> None:
    # Given two old finished sessions (one delivered), and a recent one
    done = old_session(Status.COMPLETED)
    failed = old_session(Status.ERROR)
    recent = old_session(Status.COMPLETED, days=1)
    store.save_many(done + failed + recent)
    first = done[0].envelope
    store.record_hops(
        [HopRecord(str(first.message_id), str(first.session_id), "Out", Status.COMPLETED,
                   "completed", delivered=True)]
    )  # fmt: skip

    # When purging beyond 30 days in small batches
    removed = store.purge(30, batch_size=3)

    # Then the old sessions are gone with their events, deliveries and bodies
    assert removed == 4
    assert count(store, MESSAGES) == 2
    assert count(store, BODIES) == 1
    assert count(store, EVENTS) == 2
    assert count(store, DELIVERIES) == 0
    assert store.load(recent[1].envelope.message_id).body == recent[1].envelope.body


def test_purge_never_removes_a_message_of_an_unfinished_session(store: MessageStore) -> None:
    # Given old sessions whose last message is still queued, in progress or suspended
    sessions = [old_session(Status.COMPLETED, size=3) for _ in range(3)]
    for requests, status in zip(sessions, ["queued", "in_progress", "suspended"], strict=True):
        last = requests[-1].envelope
        requests[-1] = SaveRequest(last, status=status)
    store.save_many([r for s in sessions for r in s] + old_session(Status.DISCARDED))

    # When purging
    removed = store.purge(30, batch_size=2)

    # Then only the finished session went; every message of the others is intact
    assert removed == 2
    for requests in sessions:
        for r in requests:
            assert store.load(r.envelope.message_id) == r.envelope


def bulk_insert_old_messages(store: MessageStore, total: int, chunk: int = 5000) -> None:
    """The bulk path: ``save_many`` in large transactions (one body and one event per message)."""
    created = datetime.now(UTC) - timedelta(days=90)
    for start in range(0, total, chunk):
        store.save_many(
            SaveRequest(
                hl7_envelope(adt(f"B{i}"), created_at=created + timedelta(milliseconds=i)),
                status=Status.COMPLETED,
            )
            for i in range(start, min(start + chunk, total))
        )


def test_purge_of_20000_messages_keeps_memory_bounded(store: MessageStore) -> None:
    # Given 20,000 old completed messages (100,000 in bench/store_purge.py)
    total = 20_000
    bulk_insert_old_messages(store, total)
    store.save_many(old_session(Status.QUEUED, days=90))

    # When purging with tracemalloc watching
    gc.collect()
    tracemalloc.start()
    started = time.perf_counter()
    removed = store.purge(30, batch_size=1000)
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    # Then all of them went, in bounded memory (batches, not the whole table)
    print(f"purged {removed} in {elapsed:.1f} s, peak {peak / 1e6:.1f} MB traced")
    assert removed == total
    assert count(store, MESSAGES) == 2
    assert count(store, BODIES) == 1
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB"


# -- migrations ----------------------------------------------------------------------------------


def test_migrating_again_changes_nothing(store: MessageStore) -> None:
    sent = hl7_envelope()
    store.save(sent)
    store.migrate()
    store.migrate()
    assert store.load(sent.message_id) == sent


# -- productions sharing one store ---------------------------------------------------------------


def test_productions_sharing_a_store_each_see_their_own_messages(store: MessageStore) -> None:
    url = store.url.render_as_string(hide_password=False)
    north, south = (MessageStore(url, production=name) for name in ("North", "South"))
    try:
        # Given both productions with an item named Out
        mine = [hl7_envelope(target="Out", source="In") for _ in range(2)]
        theirs = [hl7_envelope(target="Out", source="In") for _ in range(3)]
        north.save_many(SaveRequest(e, "queued", event="received", item="Out") for e in mine)
        south.save_many(SaveRequest(e, "queued", event="received", item="Out") for e in theirs)
        # Then each counts its own
        assert north.counters(["Out"])["Out"].received == 2
        assert south.counters(["Out"])["Out"].received == 3

        # Given also a message stored before productions were recorded (no production)
        legacy = hl7_envelope(target="Out", source="In")
        store.save(legacy, status="queued", item="Out")
        # Then each production finds, counts as waiting and sweeps its own and the older one
        assert north.waiting(["Out"]) == {"Out": 3} and south.waiting(["Out"]) == {"Out": 4}
        found = {h.message_id for h in north.find(target="Out")}
        assert found == {str(e.message_id) for e in [*mine, legacy]}
        time.sleep(0.05)
        stale = {h.message_id for h in north.stale(0.01)}
        assert stale == {str(e.message_id) for e in [*mine, legacy]}
        # ... while a store that names no production sees every one
        assert store.waiting(["Out"]) == {"Out": 6}
        assert store.header(mine[0].message_id).production == "North"
    finally:
        north.dispose()
        south.dispose()
