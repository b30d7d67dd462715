"""The message commands (messages, trace, suspend, discard, purge, resend) as a user runs them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from hie.cli import main
from hie.commands.messages import parse_time
from hie.messages import Envelope
from hie.store import Status
from tests.integration.harness import Harness, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


def adt(control_id: str, mrn: str) -> str:
    return (
        f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|{control_id}|P|2.5\r"
        f"PID|1||{mrn}^^^H^MR||DOE^J\r"
    )


@pytest.fixture
def cli(harness: Harness, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Run ``hie ...`` in-process against the harness's store; returns (status, stdout)."""
    import hie.cli

    monkeypatch.setattr(hie.cli, "get_settings", lambda: harness.settings)

    def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
        code = main(list(argv))
        return code, capsys.readouterr().out

    return run


def test_relative_and_iso_times() -> None:
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("90m", now=now) == now - timedelta(minutes=90)
    assert parse_time("2026-01-31T08:00") == datetime(2026, 1, 31, 8, tzinfo=UTC)


def test_messages_filters_trace_suspend_discard_and_purge(
    harness: Harness,
    cli,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    harness.write([{"name": "Out", "class": "HL7TCPOperation",
                    "settings": {"host": "127.0.0.1", "port": 9}}])  # fmt: skip
    envs = [Envelope.wrap(adt(f"C{n}", f"MRN{n}"), target="Out", source="In") for n in range(3)]
    for env in envs:
        harness.store.save(env, status="queued", item="Out")
    code, out = cli("messages", "--field", "PID-3=MRN1", "--since", "1h", "--json", capsys=capsys)
    assert code == 0 and [m["control_id"] for m in json.loads(out)] == ["C1"]
    code, out = cli("trace", "C2", capsys=capsys)
    assert code == 0 and "In -> Out  [queued]" in out and str(envs[2].message_id) in out
    assert cli("suspend", "C0", capsys=capsys)[0] == 0
    assert cli("discard", str(envs[1].message_id), capsys=capsys)[0] == 0
    assert harness.store.header(envs[0].message_id).status == Status.SUSPENDED
    assert harness.store.header(envs[1].message_id).status == Status.DISCARDED
    code, out = cli("messages", "--status", "suspended", "--json", capsys=capsys)
    assert [m["control_id"] for m in json.loads(out)] == ["C0"]
    assert cli("trace", "NO-SUCH-ID", capsys=capsys)[0] == 1
    old = Envelope.wrap(adt("OLD", "MRN9"), target="Out", source="In")
    old = old.model_copy(update={"created_at": datetime.now(UTC) - timedelta(days=3)})
    harness.store.save(old, status="completed", item="Out")
    code, out = cli("purge", "--days", "2", capsys=capsys)
    # Only the old finished one: the discarded one is finished but fresh.
    assert code == 0 and "purged 1 message(s)" in out
    assert harness.store.header(envs[1].message_id).status == Status.DISCARDED


@pytest.mark.parametrize("days", ["0", "-1", "nan", "soon"])
def test_purge_refuses_an_age_that_would_delete_fresh_messages(
    harness: Harness,
    cli,
    days: str,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    env = Envelope.wrap(adt("C1", "MRN1"), target="Out", source="In")
    harness.store.save(env, status="completed", item="Out")
    with pytest.raises(SystemExit) as exit_info:
        cli("purge", "--days", days, capsys=capsys)
    assert exit_info.value.code == 2
    assert "--days" in capsys.readouterr().err
    assert harness.store.header(env.message_id).status == Status.COMPLETED


def test_resend_command_delivers_again_in_the_same_session(
    harness: Harness,
    cli,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    with MLLPPeer("AA") as peer:
        harness.write([{"name": "Out", "class": "HL7TCPOperation", "pool": "threads",
                        "settings": {"host": "127.0.0.1", "port": peer.port}}])  # fmt: skip
        harness.start_worker("Out")
        env = harness.send("Out", adt("RS1", "M1"))
        wait_for(lambda: len(peer.received) == 1, 30, "first delivery")
        code, out = cli("resend", "RS1", str(harness.path), capsys=capsys)
        assert code == 0
        new = harness.store.header(out.strip())
        assert new.session_id == str(env.session_id) and new.parent_id == str(env.message_id)
        wait_for(lambda: len(peer.received) == 2, 30, "the resent copy at the peer")
        assert cli("resend", "RS1", capsys=capsys)[0] == 2  # no production given or found


def test_cli_and_viewer_resend_alike_and_a_query_resends_in_bulk(
    harness: Harness,
    cli,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    from hie import operator

    with MLLPPeer("AA") as peer:
        harness.write([{"name": "Out", "class": "HL7TCPOperation", "pool": "threads",
                        "settings": {"host": "127.0.0.1", "port": peer.port}}])  # fmt: skip
        # Given a message that was once part of a synchronous request, and three in error
        awaited = Envelope.wrap(adt("AW1", "M1"), target="Out", source="test",
                                headers={"hie-await": "sync", "site": "north"})  # fmt: skip
        harness.store.save(awaited, status="error", item="Out", event="failed")
        errors = [Envelope.wrap(adt(f"ER{n}", f"M{n}"), target="Out", source="test")
                  for n in range(3)]  # fmt: skip
        for envelope in errors:
            harness.store.save(envelope, status="error", item="Out", event="failed")
        harness.start_worker("Out")

        # When the command line resends the first, and the viewer's action the same message
        code, out = cli("resend", "AW1", str(harness.path), "--json", capsys=capsys)
        assert code == 0
        by_cli = harness.store.load(json.loads(out)["message_id"])
        by_viewer = operator.resend(
            harness.store, harness.dispatcher, harness.production, str(awaited.message_id),
            target=None, user="alice",
        )  # fmt: skip

        # Then both copies carry the same headers: the original's id, no request/reply link
        for copy in (by_cli, by_viewer):
            assert copy.headers == {"site": "north", "hie-resent-from": str(awaited.message_id)}
        audit = [e.detail for e in harness.store.events(awaited.message_id) if e.event == "audit"]
        assert len(audit) == 2 and any("by alice" in a for a in audit)

        # When a query resends every message in error for Out (a dry run first sends nothing)
        code, out = cli("resend", "--status", "error", "--target", "Out", "--dry-run",
                        "--production", str(harness.path), capsys=capsys)  # fmt: skip
        assert code == 0 and len(out.split()) == 4
        wait_for(lambda: len(peer.received) == 2, 30, "the two single resends")
        code, out = cli("resend", "--status", "error", "--target", "Out", "--json",
                        "--production", str(harness.path), capsys=capsys)  # fmt: skip

        # Then each of the four is resent once, oldest first, and reaches the peer
        sent = json.loads(out)
        originals = [str(awaited.message_id)] + [str(e.message_id) for e in errors]
        assert [s["resent_from"] for s in sent] == originals
        wait_for(lambda: len(peer.received) == 6, 30, "the four bulk copies at the peer")

        # And a message already completed cannot be set aside; one in error can
        done = harness.store.header(by_cli.message_id)
        assert done.status == Status.COMPLETED
        assert cli("suspend", str(done.message_id), capsys=capsys)[0] == 1
        code, out = cli("discard", "ER0", "--json", capsys=capsys)
        assert code == 0 and json.loads(out)["was"] == "error"
