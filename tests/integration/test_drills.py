"""Failure drills on real parts: gateway -> routing process -> MLLP operation -> MLLP peer.

Each drill sends HL7 through a real ``hie gateway`` into real ``hie worker`` processes, breaks
something on purpose (SIGKILL the operation's workers, flush the broker, take the peer down),
and checks at the peer that every message the gateway ACKed was delivered. The recovery
sweeper (``hie recover``, with a short ``stale_after``) runs as its own process, as in
production; it is what brings back what the broker lost.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from hie.adapters.mllp import BlockingMLLPClient
from hie.broker import start_embedded_redis, stop_embedded_redis
from hie.commands.messages import format_trace
from hie.operator import resend
from hie.errors import DeliveryError
from hie.hl7 import HL7Message, ack_code
from hie.settings import Settings
from hie.store import Status
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration

OP = {"retry_interval": 0.3, "failure_timeout": -1, "connect_timeout": 1, "response_timeout": 5}


def adt(n: int, prefix: str = "D") -> bytes:
    """A small ADT^A01 with control id ``<prefix><n>``."""
    return (
        "\r".join(
            [
                f"MSH|^~\\&|SEND|FAC|RECV|FAC|20260101120000||ADT^A01^ADT_A01|{prefix}{n:05d}|P|2.5",
                "EVN|A01|20260101120000",
                f"PID|1||{n}^^^HOSP^MR||DOE^JANE||19800101|F",
            ]
        )
        + "\r"
    ).encode()


def pipeline(
    h: Harness, peer_port: int, *, op_pool: str = "prefork", op_size: int = 2, fifo: bool = False
) -> int:
    """Write and start In (gateway) -> Router -> Out (MLLP to the peer); return the MLLP port.

    ``fifo``: both Router and Out handle one message at a time, in order, even across retries.
    """
    port = free_port()
    ordered = {"pool": "solo", "pool_size": 1, "fifo": True} if fifo else {}
    h.write(
        [
            {"name": "In", "class": "HL7TCPService", "targets": ["Router"],
             "settings": {"port": port}},
            {"name": "Router", "class": "HL7RoutingEngine", "pool": "prefork", "pool_size": 2,
             "targets": ["Out"], **ordered},
            {"name": "Out", "class": "HL7TCPOperation", "pool": op_pool, "pool_size": op_size,
             "settings": {"host": "127.0.0.1", "port": peer_port, **OP}, **ordered},
        ]
    )  # fmt: skip
    h.start_worker("Router")
    h.start_worker("Out")
    h.start_gateway(port)
    return port


def start_sweeper(h: Harness, stale_after: float = 3.0) -> subprocess.Popen[bytes]:
    """``hie recover FILE`` as its own process, with a short stale_after for the drill."""
    log = (h.tmp / "recover.log").open("ab")
    cmd = [sys.executable, "-m", "hie.cli", "recover", str(h.path)]
    cmd += ["--stale-after", str(stale_after), "--interval", "0.5"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=h.env(), cwd=h.tmp)
    log.close()
    h.workers.append(proc)
    return proc


class Sender:
    """Sends numbered messages over a few connections; a message counts once it is ACKed AA.

    A NAK or a lost connection means "not accepted": the message is sent again, as a real
    sender would.
    """

    def __init__(self, port: int, count: int, *, connections: int = 4, prefix: str = "D") -> None:
        self.port, self.count, self.prefix = port, count, prefix
        self.acked: list[str] = []
        self.naks = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(range(k, count, connections),), daemon=True)
            for k in range(connections)
        ]

    def start(self) -> Sender:
        for t in self._threads:
            t.start()
        return self

    def join(self, timeout: float = 240) -> None:
        for t in self._threads:
            t.join(timeout)

    def _run(self, numbers: range) -> None:
        client = BlockingMLLPClient("127.0.0.1", self.port, response_timeout=30)
        for n in numbers:
            while True:
                try:
                    if not client.connected:
                        client.connect()
                    code = ack_code(HL7Message(client.send(adt(n, self.prefix))))
                except DeliveryError:
                    client.close()
                    code = "lost"
                if code == "AA":
                    with self._lock:
                        self.acked.append(f"{self.prefix}{n:05d}")
                    break
                with self._lock:
                    self.naks += 1
                time.sleep(0.2)
        client.close()


def delivered(peer: MLLPPeer) -> Counter[str]:
    return Counter(m.control_id for m in peer.messages())


def report(name: str, sender: Sender, got: Counter[str], h: Harness, started: float) -> None:
    """Print the drill's numbers, from the delivery counts at the peer."""
    lost = set(sender.acked) - set(got)
    dups = {c: n for c, n in got.items() if n > 1}
    print(
        f"\n[{name}] sent={sender.count} acked={len(set(sender.acked))} naks={sender.naks} "
        f"delivered={len(got)} lost={len(lost)} duplicates={len(dups)} "
        f"requeued={count_events(h, 'requeued')} seconds={time.monotonic() - started:.1f}"
    )
    if dups:
        print(f"[{name}] duplicates at the peer: {dups}")


def wait_for_every_acked(
    name: str, sender: Sender, peer: MLLPPeer, h: Harness, started: float
) -> Counter[str]:
    """Wait for the sender, then for every message it got ACKed at the peer; report the drill."""
    sender.join()
    acked = set(sender.acked)
    wait_for(lambda: acked <= set(delivered(peer)), 150, "every ACKed message at the peer")
    got = delivered(peer)
    report(name, sender, got, h, started)
    return got


def count_events(h: Harness, event: str) -> int:
    from sqlalchemy import text

    with h.store.engine.connect() as conn:
        return int(conn.execute(text("select count(*) from events where event = :e"), {"e": event})
                   .scalar() or 0)  # fmt: skip


def explain_duplicates(h: Harness, got: Counter[str]) -> None:
    """Each duplicate at the peer must be flagged, or have had an attempt that died mid-way."""
    for control_id, n in got.items():
        if n < 2:
            continue
        outs = [m for m in h.store.find(control_id=control_id, target="Out")]
        assert outs, control_id
        for out in outs:
            starts = [e for e in h.store.events(out.message_id) if e.event == "started"]
            assert out.possible_duplicate or len(starts) >= 2, (
                f"{control_id} reached the peer {n} times but was neither flagged nor retried: "
                f"{[(e.event, e.pid) for e in h.store.events(out.message_id)]}"
            )


def kill_tree(pid: int) -> None:
    """SIGKILL a worker and its pool children at once (no chance to ack or requeue)."""
    pgrep = ["pgrep", "-P", str(pid)]
    children = subprocess.run(pgrep, capture_output=True, text=True, check=False).stdout
    for p in [pid, *map(int, children.split())]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_drill_operation_workers_killed_twice_nothing_acked_is_lost(
    store_harness: Harness,
) -> None:
    # Given the pipeline, a recording peer and the recovery sweeper
    with MLLPPeer("AA") as peer:
        port = pipeline(store_harness, peer.port)
        start_sweeper(store_harness)
        started = time.monotonic()
        # When 1,000 messages flow and the operation's workers are SIGKILLed twice mid-run
        sender = Sender(port, 1000).start()
        for at in (250, 600):
            wait_for(lambda at=at: len(peer.received) >= at, 120, f"{at} deliveries")
            out = next(w for w in store_harness.workers if "Out" in w.args and w.poll() is None)
            kill_tree(out.pid)
            out.wait()
            store_harness.start_worker("Out")
        # Then every ACKed message reaches the peer (the sweeper brings back what died unacked)
        got = wait_for_every_acked("kill -9", sender, peer, store_harness, started)
        acked = set(sender.acked)
        assert len(acked) == 1000 and not acked - set(got)
        explain_duplicates(store_harness, got)


@pytest.fixture
def private_redis(redis_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A redis-server of this test's own, so FLUSHALL touches no one else's queues."""
    port = free_port()
    home = tmp_path / "private"
    start_embedded_redis(home, "127.0.0.1", port)
    url = f"redis://127.0.0.1:{port}/0"
    yield redis_settings.model_copy(
        update={"broker_url": url, "result_backend": url,
                "database_url": f"sqlite:///{tmp_path / 'hie.db'}"}
    )  # fmt: skip
    stop_embedded_redis(home)


def test_broker_loss_drill_flushall_mid_run_every_message_delivered(
    private_redis: Settings, tmp_path: Path
) -> None:
    import redis

    h = Harness(private_redis, tmp_path)
    try:
        with MLLPPeer("AA") as peer:
            port = pipeline(h, peer.port)
            start_sweeper(h)
            started = time.monotonic()
            sender = Sender(port, 1000).start()
            # When the broker loses everything once, mid-run
            wait_for(lambda: len(sender.acked) >= 400, 120, "400 ACKs")
            redis.Redis.from_url(private_redis.broker_url).flushall()
            # Then the sweeper re-publishes what was stored but lost, and all 1,000 arrive
            got = wait_for_every_acked("broker flush", sender, peer, h, started)
            acked = set(sender.acked)
            assert len(acked) == 1000 and not acked - set(got)
    finally:
        h.cleanup()


def test_downstream_outage_retries_and_keeps_order_with_one_solo_worker(
    harness: Harness,
) -> None:
    peer_port = free_port()
    peer = MLLPPeer("AA", port=peer_port).start()
    port = pipeline(harness, peer_port, fifo=True)
    started = time.monotonic()
    # One connection, so send order is well defined
    sender = Sender(port, 300, connections=1).start()
    wait_for(lambda: len(peer.received) >= 100, 60, "100 deliveries")
    # When the peer is down for 10 s mid-run
    peer.stop()
    before = len(peer.received)
    time.sleep(10)  # the outage itself is the point of this drill
    peer2 = MLLPPeer("AA", port=peer_port).start()
    try:
        sender.join()
        acked = set(sender.acked)
        wait_for(lambda: acked <= set(delivered(peer)) | set(delivered(peer2)), 120, "all")
        got = delivered(peer) + delivered(peer2)
        print(f"\n[outage] before={before} after={len(peer2.received)}")
        report("outage", sender, got, harness, started)
        assert acked <= set(got)
        # Then arrival order equals send order (fifo items retry in place, one at a time)
        order = [m.control_id for m in peer.messages() + peer2.messages()]
        firsts = list(dict.fromkeys(order))
        assert firsts == sorted(firsts)
        assert count_events(harness, "retried") > 0
    finally:
        peer2.stop()


def test_trace_shows_every_hop_and_resend_delivers_again_in_the_session(
    store_harness: Harness,
) -> None:
    with MLLPPeer("AA") as peer:
        port = pipeline(store_harness, peer.port, op_pool="threads", op_size=1)
        with BlockingMLLPClient("127.0.0.1", port) as client:
            assert ack_code(HL7Message(client.send(adt(1, "T")))) == "AA"
        wait_for(lambda: len(peer.received) == 1, 30, "delivery")
        inbound = wait_for(
            lambda: store_harness.store.find(control_id="T00001", source="In"), 10, "in"
        )
        out = wait_for(
            lambda: [
                m for m in store_harness.store.find(target="Out") if m.status == Status.COMPLETED
            ],
            30,
            "Out completed",
        )[0]
        text = format_trace(store_harness.store.trace(inbound[0].message_id))
        print("\n" + text)
        # Every hop: the gateway's message to the router, the router's copy to the operation
        assert "In -> Router  [completed]" in text and "Router -> Out  [completed]" in text
        assert "ack=AA" in text and "took=" in text and "ack_received" in text
        # When the operation's message is resent
        copy = resend(
            store_harness.store,
            store_harness.dispatcher,
            store_harness.production,
            str(out.message_id),
            target=None,
            user="test",
        )
        wait_for(lambda: len(peer.received) == 2, 30, "the resent message at the peer")
        new = wait_for(
            lambda: (
                (hd := store_harness.store.header(copy.message_id)).status == Status.COMPLETED
                and hd
            ),
            30,
            "resent completed",
        )
        assert new.session_id == out.session_id and new.parent_id == out.message_id
        assert "resent" in [e.event for e in store_harness.store.events(out.message_id)]


def test_five_megabyte_oru_goes_through_stored_once(store_harness: Harness) -> None:
    pdf = base64.b64encode(os.urandom(3_900_000)).decode()  # ~5.2 MB of base64
    oru = (
        "MSH|^~\\&|LAB|FAC|EMR|FAC|20260101120000||ORU^R01^ORU_R01|BIG00001|P|2.5\r"
        "PID|1||77^^^HOSP^MR||DOE^JOHN\rOBR|1||R1|PDF^Report\r"
        f"OBX|1|ED|PDF^Report||^AP^PDF^Base64^{pdf}||||||F\r"
    )
    with MLLPPeer("AA") as peer:
        port = pipeline(store_harness, peer.port, op_pool="threads", op_size=1)
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=60) as client:
            assert ack_code(HL7Message(client.send(oru.encode()))) == "AA"
        wait_for(lambda: len(peer.received) == 1, 60, "the big ORU at the peer")
        assert peer.received[0] == oru.encode()
        inbound = store_harness.store.find(control_id="BIG00001", source="In")[0]
        session = store_harness.store.session(inbound.session_id)
        bodies = {m.body_id for m in session if m.msg_type and m.msg_type.startswith("ORU")}
        assert len(session) >= 2 and len(bodies) == 1, "one body row for the whole session"
