"""What a user meets at the command line: one-line errors, and the store's schema upgrades."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hie.store import MessageStore

ROOT = Path(__file__).resolve().parents[2]


def hie(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("HIE_")}
    environ.update(
        PYTHONPATH=str(ROOT),
        HIE_HOME=str(tmp_path / "home"),
        HIE_DATABASE_URL=f"sqlite:///{tmp_path / 'hie.db'}",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-m", "hie.cli", *args],
        env=environ,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    out = hie(tmp_path, "status", HIE_BROKER_URL="not-a-url")
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "HIE_BROKER_URL" in lines[0] and "not-a-url" in lines[0]


def test_read_commands_ask_for_db_upgrade_on_an_older_store_and_print_no_migration_lines(
    tmp_path: Path,
) -> None:
    # Given a store left at an older schema by an earlier HIE
    store = MessageStore(f"sqlite:///{tmp_path / 'hie.db'}")
    store.migrate("0002_target_status_index")
    store.dispose()

    # When a read command opens it, it is not upgraded behind the user's back
    out = hie(tmp_path, "messages")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "0002_target_status_index" in out.stderr and "hie db upgrade" in out.stderr

    # When `hie db upgrade` runs, it says what changed, once
    up = hie(tmp_path, "db", "upgrade", "--json")
    assert up.returncode == 0, up.stderr
    record = json.loads(up.stdout)
    assert (record["before"], record["after"], record["upgraded"]) == (
        "0002_target_status_index", "0004_production", True,
    )  # fmt: skip
    again = hie(tmp_path, "db", "upgrade")
    assert again.returncode == 0 and "already at schema revision 0004_production" in again.stdout

    # Then read commands work, and none prints Alembic's progress lines
    listed = hie(tmp_path, "messages")
    assert listed.returncode == 0, listed.stderr
    assert "0 message(s)" in listed.stdout + listed.stderr
    assert "alembic" not in (listed.stdout + listed.stderr + up.stderr).lower()


def test_a_new_store_is_set_up_by_a_read_command(tmp_path: Path) -> None:
    out = hie(tmp_path, "messages")
    assert out.returncode == 0, out.stderr
    assert "alembic" not in (out.stdout + out.stderr).lower()
    assert MessageStore(f"sqlite:///{tmp_path / 'hie.db'}").schema_revision() == ("0004_production")


def test_status_with_the_broker_down_answers_without_a_traceback(tmp_path: Path) -> None:
    production = tmp_path / "p.yaml"
    production.write_text(
        "name: Down\nitems:\n"
        "  - {name: Out, class: HL7TCPOperation, settings: {host: 127.0.0.1, port: 9}}\n"
    )
    # A port nobody listens on: the broker is down
    out = hie(tmp_path, "status", str(production), "--json", HIE_BROKER_URL="redis://127.0.0.1:9/0")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    report = json.loads(out.stdout)
    assert report["running"] is False and report["items"][0]["state"] == "stopped"
