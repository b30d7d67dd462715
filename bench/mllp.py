"""Gateway ACK rate (immediate mode), MLLP and HTTP, against a bare asyncio MLLP server, measured
in the same run; and HL7ToFHIR conversions per second.

    .venv/bin/python bench/mllp.py [--seconds 10] [--rounds 3]

For 1 and 8 client connections, rounds alternate between:

- baseline: a bare asyncio MLLP server that answers every frame with a canned ACK;
- HIE: ``hie gateway`` with one HL7TCPService (ack_mode immediate) whose target item has no
  worker, so what is measured is the gateway's own path: frame, read MSH, store (group commit,
  SQLite), publish (Redis), ACK;
- HIE HTTP: the same gateway's HL7HTTPService (same target), POSTs on keep-alive connections,
  the ACK in each answer: the same path with HTTP in place of MLLP framing.

Then, in this process, ``HL7ToFHIR`` on an ADT^A01 and an ORU^R01 (a Bundle built and validated
with fhir.resources per message) against parsing the same message and reading its PID (HIE's
own HL7 access), for ``--seconds`` each.

Each server and the load generator are separate OS processes. The script prints the median
ACKs/s of each, the ratio HIE / baseline, and the gateway's event-loop lag (how late its loop woke
while it worked: publishing and storing run in threads, never on the loop). This machine is
shared and noisy: compare the ratio, not the absolute figures. Not a test; run by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from parts import free_port, wait_port  # noqa: E402  (bench/parts.py, shared by the benches)

ADT = (
    "MSH|^~\\&|BENCH|HOSP|HIE|HOSP|20260101120000||ADT^A01^ADT_A01|{n}|P|2.5.1\r"
    "EVN|A01|20260101120000\r"
    "PID|1||{n}^^^HOSP^MR||DOE^JANE^Q||19800101|F|||1 MAIN ST^^SPRINGFIELD^^12345\r"
    "PV1|1|I|WARD1^101^1|||||||MED\r"
)
CANNED_ACK = (
    b"\x0bMSH|^~\\&|HIE|HOSP|BENCH|HOSP|20260101120000||ACK^A01^ACK|1|P|2.5.1\rMSA|AA|1\r\x1c\r"
)


# -- roles run as their own processes -------------------------------------------------------------
def serve_bare(port: int) -> None:
    """The baseline: frame in, canned ACK out."""

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\x1c\r")
                writer.write(CANNED_ACK)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(connection, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def load(port: int, connections: int, seconds: float, protocol: str = "mllp") -> None:
    """Send as fast as ACKs come back on ``connections`` connections; print the count as JSON."""
    import http.client

    from hie.adapters.mllp import BlockingMLLPClient

    counts = [0] * connections
    deadline = time.monotonic() + seconds

    def mllp_sender(slot: int) -> None:
        with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
            n = slot * 10_000_000
            while time.monotonic() < deadline:
                client.send(ADT.format(n=n).encode())
                counts[slot] += 1
                n += 1

    def http_sender(slot: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Content-Type": "x-application/hl7-v2+er7"}
        n = slot * 10_000_000
        while time.monotonic() < deadline:
            conn.request("POST", "/hl7", body=ADT.format(n=n).encode(), headers=headers)
            response = conn.getresponse()
            if b"MSA|AA" not in response.read() or response.status != 200:
                raise SystemExit(f"HTTP answer {response.status} without AA")
            counts[slot] += 1
            n += 1
        conn.close()

    sender = http_sender if protocol == "http" else mllp_sender

    threads = [threading.Thread(target=sender, args=(s,)) for s in range(connections)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(json.dumps({"acks": sum(counts), "seconds": time.monotonic() - started}))


# -- orchestration --------------------------------------------------------------------------------
def run_load(port: int, connections: int, seconds: float, protocol: str = "mllp") -> float:
    out = subprocess.run(
        [sys.executable, __file__, "load", str(port), str(connections), str(seconds), protocol],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return float(result["acks"]) / float(result["seconds"])


def start_gateway(
    folder: Path, port: int, http_port: int
) -> tuple[subprocess.Popen[bytes], Path, str]:
    name = f"benchmllp{os.getpid()}"
    production = folder / "production.yaml"
    production.write_text(
        f"name: {name}\nitems:\n"
        f"  - {{name: In, class: HL7TCPService, targets: [Sink], settings: {{port: {port}}}}}\n"
        f"  - {{name: HTTPIn, class: HL7HTTPService, targets: [Sink], "
        f"settings: {{port: {http_port}, path: /hl7}}}}\n"
        "  - {name: Sink, class: FileOperation, settings: {file_path: "
        + str(folder / "out")
        + "}}\n"
    )
    env = dict(os.environ, HIE_HOME=str(folder), HIE_DATABASE_URL=f"sqlite:///{folder / 'hie.db'}")
    log = folder / "gateway.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hie.cli", "gateway", str(production)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    wait_port(port)
    wait_port(http_port)
    return proc, log, name


FHIR_SAMPLES = {
    "ADT^A01": ADT.format(n=1),
    "ORU^R01": (
        "MSH|^~\\&|LAB|HOSP|HIE|HOSP|20260101120000||ORU^R01^ORU_R01|7|P|2.5.1\r"
        "PID|1||7^^^HOSP^MR||DOE^JANE^Q||19800101|F\r"
        "OBR|1|PL7|FL7|24331-1^Lipid panel^LN|||20260101110000|||||||||||||||20260101115000||CH|F\r"
        "OBX|1|NM|2093-3^Cholesterol^LN||196|mg/dL^mg/dL^UCUM|<200|N|||F|||20260101113000\r"
        "OBX|2|NM|2571-8^Triglyceride^LN||250|mg/dL^mg/dL^UCUM|<150|H|||F|||20260101113000\r"
        "OBX|3|ST|8251-1^Comment^LN||fasting sample||||||F\r"
    ),
}


def fhir_rates(seconds: float) -> None:
    """HL7ToFHIR messages/s per sample, against parsing the message and reading its PID."""
    from hie.fhir import to_fhir_bundle
    from hie.hl7 import HL7Message

    def rate(work: Any) -> float:
        count, deadline = 0, time.monotonic() + seconds
        started = time.monotonic()
        while time.monotonic() < deadline:
            work()
            count += 1
        return count / (time.monotonic() - started)

    for kind, text in FHIR_SAMPLES.items():
        parse = rate(lambda t=text: HL7Message(t).get("PID-5.1"))
        convert = rate(lambda t=text: to_fhir_bundle(HL7Message(t)))
        print(
            f"HL7ToFHIR {kind}: {convert:8.0f} messages/s; parse + read PID {parse:8.0f}/s; "
            f"conversion costs {parse / convert:.0f}x a parse"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import redis

    from hie.settings import Settings

    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="hie-bench-mllp-") as tmp:
        folder = Path(tmp)
        bare_port, hie_port, http_port = free_port(), free_port(), free_port()
        bare = subprocess.Popen([sys.executable, __file__, "serve-bare", str(bare_port)])
        wait_port(bare_port)
        gateway, log, name = start_gateway(folder, hie_port, http_port)
        results: dict[tuple[str, int], list[float]] = {}
        try:
            for round_no in range(args.rounds):
                for connections in (1, 8):
                    runs = (
                        ("baseline", bare_port, "mllp"),
                        ("hie", hie_port, "mllp"),
                        ("hie http", http_port, "http"),
                    )
                    for label, port, protocol in runs:
                        rate = run_load(port, connections, args.seconds, protocol)
                        results.setdefault((label, connections), []).append(rate)
                        print(
                            f"round {round_no + 1}: {label:8} x{connections}: {rate:8.0f} ACKs/s",
                            flush=True,
                        )
        finally:
            bare.terminate()
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(60)
            client = redis.Redis.from_url(settings.broker_url)
            keys = list(client.scan_iter(match=f"hie.{name}.*"))
            if keys:
                client.delete(*keys)
        print()
        print(f"machine: {os.cpu_count()} CPUs; {args.rounds} rounds of {args.seconds:g} s each")
        for connections in (1, 8):
            base = statistics.median(results[("baseline", connections)])
            hie = statistics.median(results[("hie", connections)])
            http = statistics.median(results[("hie http", connections)])
            print(
                f"{connections} connection(s): baseline {base:8.0f} ACKs/s, HIE {hie:8.0f} ACKs/s, "
                f"HIE / baseline {hie / base:.2f}; HIE over HTTP {http:8.0f} ACKs/s, "
                f"HTTP / MLLP {http / hie:.2f}"
            )
        lag = [line for line in log.read_text().splitlines() if "event loop lag" in line]
        print(lag[-1] if lag else "gateway printed no event-loop lag summary")
    fhir_rates(args.seconds)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve-bare":
        serve_bare(int(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        load(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
