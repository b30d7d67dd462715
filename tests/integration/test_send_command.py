"""``hie send`` as a user runs it: a real subprocess against a real MLLP peer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


def adt(control_id: str) -> str:
    return (
        f"MSH|^~\\&|HIS|WARD|LAB|HOSP|20240101120000||ADT^A01^ADT_A01|{control_id}|P|2.5\r"
        f"PID|1||{control_id}^^^HOSP^MR||DOE^JANE\r"
    )


def send(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "hie.cli", "send", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_send_prints_control_id_and_aa_and_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(adt("S1"))
    with MLLPPeer("AA") as peer:
        result = send("--port", str(peer.port), str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["S1", "AA"]
    assert peer.received == [adt("S1").encode()]


def test_send_exits_1_on_ae_and_prints_its_text(tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(adt("S2"))
    with MLLPPeer("AE", text="unknown patient") as peer:
        result = send("--port", str(peer.port), str(path))
    assert result.returncode == 1
    assert result.stdout.strip() == "S2 AE unknown patient"


def test_batch_file_goes_over_one_connection_and_json_has_one_record_each(
    tmp_path: Path,
) -> None:
    batch = "FHS|^~\\&|HIS\rBHS|^~\\&|HIS\r" + "".join(adt(f"B{n}") for n in range(3))
    path = tmp_path / "batch.hl7"
    path.write_text(batch + "BTS|3\rFTS|1\r")
    with MLLPPeer("AA") as peer:
        result = send("--port", str(peer.port), "--json", str(path))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["control_id"], r["ack"], r["ok"]) for r in records] == [
        (f"B{n}", "AA", True) for n in range(3)
    ]
    assert [m.control_id for m in peer.messages()] == ["B0", "B1", "B2"]
    assert peer.connections == 1


def test_timeout_exits_1_and_bad_usage_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "one.hl7"
    path.write_text(adt("S3"))
    with MLLPPeer("AA", delay=2.0) as peer:
        result = send("--port", str(peer.port), "--timeout", "0.5", str(path))
    assert result.returncode == 1
    assert result.stdout.startswith("S3 -") and "no ACK" in result.stdout
    assert send("--port", "notaport", str(path)).returncode == 2
    assert send(str(tmp_path / "missing.hl7")).returncode == 2
