"""The manager as real processes: start --detach, status, kill -9, enable/disable, restart, update,
graceful stop with nothing lost, metrics."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from hie.adapters.mllp import BlockingMLLPClient
from hie.hl7 import HL7Message, ack_code
from hie.store import Status
from tests.integration.harness import Harness, free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def hie(h: Harness, *args: str, timeout: float = 200) -> subprocess.CompletedProcess[str]:
    """Run ``hie ARGS`` as another terminal would."""
    return subprocess.run(
        [sys.executable, "-m", "hie.cli", *args],
        env=h.env(),
        cwd=h.tmp,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def status(h: Harness) -> dict[str, dict[str, Any]]:
    out = hie(h, "status", str(h.path), "--json")
    assert out.returncode == 0, out.stderr
    return {i["name"]: i for i in json.loads(out.stdout)["items"]}


def completed(h: Harness, item: str) -> int:
    return len(h.store.find(target=item, status=Status.COMPLETED, limit=100_000))


def items(port: int, op_size: int = 2, delay: float = 0.0) -> list[dict[str, Any]]:
    return [
        {"name": "In", "class": "HL7TCPService", "targets": ["Router"], "settings": {"port": port}},
        {"name": "Router", "class": "RoutingEngine", "pool": "prefork", "pool_size": 2,
         "targets": ["Op"]},
        {"name": "Op", "class": "tests.hosts:RecordingOperation", "pool": "threads",
         "pool_size": op_size, "settings": {"delay": delay}},
    ]  # fmt: skip


def adt(n: int) -> bytes:
    return (
        f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A01^ADT_A01|M{n:05d}|P|2.5.1\r"
        f"PID|1||{n}^^^HOSP^MR||DOE^JANE\r"
    ).encode()


@contextlib.contextmanager
def running(h: Harness, *extra: str) -> Any:
    """``start --detach``; always stopped (or killed) afterwards."""
    out = hie(h, "start", str(h.path), "--detach", "--drain-timeout", "5", *extra)
    assert out.returncode == 0, out.stdout + out.stderr + manager_log(h)
    try:
        yield json.loads(out.stdout) if "--json" in extra else None
    finally:
        stop_or_kill(h)


def manager_log(h: Harness) -> str:
    path = h.settings.home / "log" / h.name / "manager.log"
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


def stop_or_kill(h: Harness) -> None:
    pid_file = h.settings.home / "run" / h.name / "manager.pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    if hie(h, "stop", str(h.path), "--drain-timeout", "0", "--wait", "60").returncode != 0:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def test_start_detach_returns_once_the_gateway_listens(harness: Harness) -> None:
    h = harness
    port = free_port()
    h.write(items(port))
    with running(h, "--json") as started:
        assert started["items"] == {"In": "running", "Router": "running", "Op": "running"}
        # No waiting: a sender right after `hie start --detach` finds the port open.
        with BlockingMLLPClient("127.0.0.1", port, connect_timeout=1) as client:
            assert ack_code(HL7Message(client.send(adt(1)))) == "AA"
        ready = list((h.settings.home / "run" / h.name / "gateway").glob("worker.*.ready"))
        assert len(ready) == 1 and str(port) in ready[0].read_text()


def test_status_kill_disable_enable_restart_update_and_metrics(harness: Harness) -> None:
    h = harness
    port, metrics = free_port(), free_port()
    h.write(items(port))
    with running(h, "--metrics-port", str(metrics)):
        # Given: every item runs, the prefork router with its two pool children.
        before = status(h)
        assert {n: i["state"] for n, i in before.items()} == dict.fromkeys(
            ["In", "Router", "Op"], "running"
        )
        assert len(before["Router"]["pool_pids"]) == 2 and before["Op"]["pid"]

        # When a worker is killed with SIGKILL, it is noticed and restarted, and messages flow.
        killed = time.monotonic()
        os.kill(before["Op"]["pid"], signal.SIGKILL)
        after = wait_for(
            lambda: (
                (s := status(h))["Op"]["state"] == "running"
                and s["Op"]["pid"] != before["Op"]["pid"]
                and s
            ),
            60,
            "Op to be restarted",
        )
        print(f"restart after kill -9: {time.monotonic() - killed:.1f}s")
        assert after["Op"]["restarts"] == 1 and after["Router"]["pid"] == before["Router"]["pid"]
        with BlockingMLLPClient("127.0.0.1", port) as client:
            acks = [HL7Message(client.send(adt(n))) for n in range(10)]
        assert [ack_code(a) for a in acks] == ["AA"] * 10
        wait_for(lambda: completed(h, "Op") == 10, 60, "ten delivered")

        # disable: messages wait in Op's queue, visible in status; enable: all delivered.
        disabled = hie(h, "disable", "Op", "--json")
        assert (
            disabled.returncode == 0 and json.loads(disabled.stdout)["item"]["state"] == "disabled"
        )
        assert status(h)["Op"]["state"] == "disabled"
        state = json.loads((h.settings.home / "run" / h.name / "state.json").read_text())
        assert state["enabled"] == {"Op": False}
        with BlockingMLLPClient("127.0.0.1", port) as client:
            for n in range(10, 30):
                client.send(adt(n))
        wait_for(lambda: status(h)["Op"]["queue_depth"] == 20, 60, "twenty queued for Op")
        assert completed(h, "Op") == 10
        assert hie(h, "enable", "Op", str(h.path)).returncode == 0
        wait_for(lambda: completed(h, "Op") == 30, 60, "the twenty queued delivered")

        # restart ITEM restarts only that item.
        s1 = status(h)
        assert hie(h, "restart", "Router").returncode == 0
        s2 = status(h)
        assert s2["Router"]["pid"] != s1["Router"]["pid"] and s2["Router"]["state"] == "running"
        assert s2["Op"]["pid"] == s1["Op"]["pid"] and s2["In"]["pid"] == s1["In"]["pid"]

        # update FILE with one item changed restarts only that item.
        assert h.path is not None
        h.path.write_text(yaml.safe_dump({"name": h.name, "items": items(port, op_size=3)}))
        out = hie(h, "update", str(h.path), "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["changed"] == ["Op"]
        s3 = status(h)
        assert s3["Op"]["pid"] != s2["Op"]["pid"] and s3["Op"]["pool_size"] == 3
        assert s3["Router"]["pid"] == s2["Router"]["pid"] and s3["In"]["pid"] == s2["In"]["pid"]

        # The metrics endpoint counts what was sent; the gateway is ready.
        body = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10).read()
        text = body.decode()
        assert f'hie_item_received_total{{item="In",production="{h.name}"}} 30.0' in text
        assert f'hie_item_completed_total{{item="Op",production="{h.name}"}} 30.0' in text
        assert f'hie_ack_seconds_count{{item="In",production="{h.name}"}} 30.0' in text
        assert f'hie_end_to_end_seconds_count{{item="Op",production="{h.name}"}} 30.0' in text
        assert f'hie_queue_depth{{item="Op",production="{h.name}"}} 0.0' in text
        ready = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/health/ready", timeout=10)
        assert json.loads(ready.read())["ready"] is True


def test_stop_during_a_run_loses_nothing_and_the_rest_runs_at_next_start(harness: Harness) -> None:
    h = harness
    # The operation takes 50 ms a message on one thread (20/s): a stop lands mid-run.
    h.write(items(free_port(), op_size=1, delay=0.05))
    with running(h):
        # Given 500 messages queued for the router while the production runs.
        for n in range(500):
            h.send("Router", f"m{n}")
        wait_for(lambda: completed(h, "Op") >= 20, 60, "some delivered")
        # When it is stopped without draining, part of the run is still queued.
        started = time.monotonic()
        out = hie(h, "stop", "--drain-timeout", "0")
        assert out.returncode == 0, out.stdout + out.stderr
        print(f"stop took {time.monotonic() - started:.1f}s")
        done_at_stop = completed(h, "Op")
        print(f"delivered before stop: {done_at_stop}")
    # Then after the next start every one of the 500 is delivered, none twice.
    with running(h):
        wait_for(lambda: completed(h, "Op") == 500, 120, "all 500 delivered")
    ops = h.store.find(target="Op", limit=100_000)
    assert len(ops) == 500 and all(o.status == Status.COMPLETED for o in ops)
    assert done_at_stop < 500, "the test should stop mid-run"


def keyed_items(port: int, partitions: int, delay: float) -> list[dict[str, Any]]:
    """In -> Op, Op ordered by patient (PID-3.1) over ``partitions`` sub-queues."""
    return [
        {"name": "In", "class": "HL7TCPService", "targets": ["Op"], "settings": {"port": port}},
        {"name": "Op", "class": "tests.hosts:RecordingOperation", "ordering_key": "PID-3.1",
         "partitions": partitions, "settings": {"delay": delay, "batch_size": 1}},
    ]  # fmt: skip


def patient_adt(n: int, patient: int) -> bytes:
    return (
        f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A08^ADT_A01|K{n:05d}|P|2.5.1\r"
        f"PID|1||P{patient}^^^HOSP^MR||DOE^JANE\r"
    ).encode()


def test_an_item_ordered_over_partitions_runs_restarts_and_drains_under_the_manager(
    harness: Harness,
) -> None:
    h = harness
    port = free_port()
    h.write(keyed_items(port, partitions=3, delay=0.2))
    started = time.monotonic()
    with running(h):
        # Given: start --detach returned once the three sub-queue workers were ready
        print(f"start --detach took {time.monotonic() - started:.1f}s")
        before = status(h)["Op"]
        assert before["state"] == "running"
        ready = list((h.settings.home / "run" / h.name / "Op").glob("worker.*.ready"))
        assert len(ready) == 4, "one ready file per sub-queue worker, one for the item's unit"

        # When one sub-queue's worker is killed, the item restarts as a whole
        subqueue_workers = [
            int(c) for c in Path(f"/proc/{before['pid']}/task/{before['pid']}/children")
            .read_text().split()
        ]  # fmt: skip
        assert len(subqueue_workers) == 3
        os.kill(subqueue_workers[1], signal.SIGKILL)
        wait_for(
            lambda: (s := status(h)["Op"])["state"] == "running" and s["pid"] != before["pid"],
            90,
            "Op restarted with all its sub-queues",
        )

        # ... and messages for every sub-queue flow: 30 over 10 patients, one per task
        with BlockingMLLPClient("127.0.0.1", port) as client:
            acks = [HL7Message(client.send(patient_adt(n, n % 10))) for n in range(30)]
        assert [ack_code(a) for a in acks] == ["AA"] * 30

        # When it is stopped with a drain timeout while most of them still wait in sub-queues
        assert completed(h, "Op") < 30, "the test should stop with messages queued"
        out = hie(h, "stop", "--drain-timeout", "60", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        assert json.loads(out.stdout)["stopped"] is True

    # Then the stop waited for the sub-queues: every message was delivered before it stopped
    assert completed(h, "Op") == 30


def routing_rules(target: str) -> str:
    return yaml.safe_dump({"kind": "rules", "name": "Routes", "rule_sets": [{"rules": [
        {"name": "adt", "when": [{"condition": 'HL7.{MSH:9.1}="ADT"',
                                  "actions": [{"type": "send", "target": target}]}]},
    ]}]})  # fmt: skip


def test_an_edited_rule_file_takes_effect_on_reload_and_a_broken_one_is_refused(
    harness: Harness,
) -> None:
    h = harness
    port = free_port()
    rules = h.tmp / "routes.yaml"
    rules.write_text(routing_rules("OpA"))
    h.write([
        {"name": "In", "class": "HL7TCPService", "targets": ["Router"], "settings": {"port": port}},
        {"name": "Router", "class": "HL7RoutingEngine", "pool": "threads",
         "targets": ["OpA", "OpB"], "settings": {"rules": "routes.yaml"}},
        {"name": "OpA", "class": "tests.hosts:RecordingOperation", "pool": "threads"},
        {"name": "OpB", "class": "tests.hosts:RecordingOperation", "pool": "threads"},
    ])  # fmt: skip
    with running(h), BlockingMLLPClient("127.0.0.1", port) as client:
        # Given a router whose rule file sends ADTs to OpA
        client.send(adt(1))
        wait_for(lambda: completed(h, "OpA") == 1, 60, "the first ADT at OpA")
        before = status(h)

        # When the rule file is edited (the production file is not) and reloaded
        rules.write_text(routing_rules("OpB"))
        out = hie(h, "reload", "Router", "--json")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["changed"] == ["Router"]

        # Then only the router restarted, and the next ADT goes where the new rule says
        after = status(h)
        assert after["Router"]["pid"] != before["Router"]["pid"]
        assert all(after[n]["pid"] == before[n]["pid"] for n in ("In", "OpA", "OpB"))
        client.send(adt(2))
        wait_for(lambda: completed(h, "OpB") == 1, 60, "the second ADT at OpB")

        # When the rule file is broken and `update` is asked to apply it
        rules.write_text(routing_rules("OpB").replace('="ADT"', "= ="))
        out = hie(h, "update", str(h.path))

        # Then it is refused, naming the file and line, and the running router keeps its rules
        broken = next(n for n, t in enumerate(rules.read_text().splitlines(), 1) if "= =" in t)
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"routes.yaml, line {broken}:" in out.stdout + out.stderr, out.stderr
        assert status(h)["Router"]["pid"] == after["Router"]["pid"]
        client.send(adt(3))
        wait_for(lambda: completed(h, "OpB") == 2, 60, "the third ADT at OpB")
    assert completed(h, "OpA") == 1


def test_start_refuses_a_second_manager_and_status_works_when_stopped(harness: Harness) -> None:
    h = harness
    h.write(items(free_port()))
    out = hie(h, "status", str(h.path), "--json")
    assert out.returncode == 0
    assert {i["state"] for i in json.loads(out.stdout)["items"]} == {"stopped"}
    with running(h):
        again = hie(h, "start", str(h.path), "--detach")
        assert again.returncode == 1 and "already running" in again.stdout
    assert not (h.settings.home / "run" / h.name / "manager.sock").exists()


def test_flower_lists_item_workers_and_tasks_by_item_name(harness: Harness, tmp_path: Path) -> None:
    h = harness
    h.write(items(free_port()))
    web = free_port()
    with running(h):
        log = (tmp_path / "flower.log").open("wb")
        flower = subprocess.Popen(
            [sys.executable, "-m", "hie.cli", "flower", str(h.path), "--port", str(web),
             "--basic-auth", "ops:s3cret-pw"],
            env=h.env(), cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        credentials = base64.b64encode(b"ops:s3cret-pw").decode()
        try:

            def api(path: str, auth: bool = True) -> Any:
                request = urllib.request.Request(f"http://127.0.0.1:{web}{path}")
                if auth:
                    request.add_header("Authorization", f"Basic {credentials}")
                try:
                    with urllib.request.urlopen(request, timeout=10) as r:
                        return json.loads(r.read())
                except urllib.error.HTTPError as exc:
                    return exc.code
                except OSError:
                    return None

            workers = wait_for(
                lambda: (w := api("/api/workers?refresh=1")) and isinstance(w, dict) and len(w) >= 2
                and w, 90, "workers",
            )  # fmt: skip
            # Without the credentials the API answers nothing (no CORS-open API on loopback).
            assert api("/api/workers", auth=False) == 401
            # Neither the password nor the broker URL shows in the process list.
            cmdline = Path(f"/proc/{flower.pid}/cmdline").read_bytes().replace(b"\0", b" ")
            assert b"flower" in cmdline and b"s3cret-pw" not in cmdline
            assert h.env()["HIE_BROKER_URL"].encode() not in cmdline
            assert any(name.startswith(f"Router@{h.name}.") for name in workers)
            assert any(name.startswith(f"Op@{h.name}.") for name in workers)
            # Flower sees every production on the broker; ours are the ones named after it.
            wanted = {f"hie.{h.name}.Router", f"hie.{h.name}.Op"}
            sent: list[str] = []

            def ours() -> dict[str, Any]:
                # Workers send task events only once Flower asked for them (every few seconds):
                # keep a message going until its tasks show.
                sent.append(str(h.send("Router", f"PID|1||SECRET-{len(sent)}").message_id))
                tasks = api("/api/tasks?limit=1000") or {}
                found = {t["name"]: t for t in tasks.values() if t["name"] in wanted}
                return found if set(found) == wanted else {}

            tasks = wait_for(ours, 60, "the router's and the operation's tasks")
            # Task arguments carry message ids, never bodies (patient data stays out of events).
            router_args = tasks[f"hie.{h.name}.Router"]["args"]
            assert any(mid in router_args for mid in sent) and "SECRET" not in router_args
            # `hie flower` is Flower: a SIGTERM to it (not to its group) stops Flower.
            flower.send_signal(signal.SIGTERM)
            assert flower.wait(30) is not None
            assert api("/api/workers") is None  # nothing listens any more
        finally:
            if flower.poll() is None:
                os.killpg(flower.pid, signal.SIGTERM)
                flower.wait(30)
            log.close()


def test_flower_refuses_a_public_address_without_basic_auth(harness: Harness) -> None:
    h = harness
    h.write(items(free_port()))
    out = hie(h, "flower", str(h.path), "--address", "0.0.0.0")
    assert out.returncode == 2 and "--basic-auth" in out.stderr


def test_an_hl7_service_with_two_processes_runs_two_gateways_on_one_port(
    harness: Harness,
) -> None:
    h = harness
    # Given an inbound item with processes: 2, started as the README says
    port = free_port()
    spec = items(port)
    spec[0]["settings"]["processes"] = 2
    h.write(spec)
    with running(h):
        out = json.loads(hie(h, "status", str(h.path), "--json").stdout)
        gateways = {u["name"]: u["pid"] for u in out["processes"] if u["kind"] == "gateway"}
        assert set(gateways) == {"gateway", "gateway.1"} and all(gateways.values()), out

        # When senders connect one after another, each with a message of its own
        for n in range(24):
            with BlockingMLLPClient("127.0.0.1", port) as client:
                assert ack_code(client.send(adt(n))) == "AA"
        wait_for(lambda: completed(h, "Op") == 24, 60, "all 24 delivered")

    # Then both gateway processes took connections and stored what they received
    received = [
        e.pid
        for m in h.store.find(target="Router", limit=1000)
        for e in h.store.events(m.message_id)
        if e.event == "received"
    ]
    assert len(received) == 24
    assert set(received) == set(gateways.values()), "the kernel spread connections over both"
