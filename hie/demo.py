"""The demo production behind ``make demo``: an ADT/ORU feed over MLLP, routed by rules.

    sender --MLLP :2575--> ADT.In (HL7TCPService) --> Router (HL7RoutingEngine, rules YAML)
        ADT^* --> ADT.Out (HL7TCPOperation) --MLLP :6661--> the bundled sink (files in sink/)
        ORU^* --> ORU.Out (HL7FileOperation) --> files in out/
    files *.hl7 dropped in in/ --> ADT.FileIn (HL7FileService) --> Router

Everything it writes lives under ``HIE_HOME/demo`` (default ``var/demo``); the messages are
synthetic, made up here, with no real patient in them.
"""

from __future__ import annotations

from datetime import UTC, datetime
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from hie.settings import Settings
from hie.supervisor.rundir import log_dir
from kombu.utils.url import maybe_sanitize_url


def synthetic_adt(n: int, *, event: str = "A01") -> str:
    """A small made-up ADT message; ``n`` varies the ids and the name."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    names = ["DOE^JANE", "ROE^RICHARD", "MÜLLER^JÜRGEN", "NGUYEN^AN", "SILVA^MARIA"]
    segments = [
        f"MSH|^~\\&|DEMO_ADT|DEMO_HOSP|HIE|HIE|{now}||ADT^{event}^ADT_{event}|DEMO{n:06d}|P|2.5.1"
        "|||AL|NE||UNICODE UTF-8",
        f"EVN|{event}|{now}",
        f"PID|1||{100000 + n}^^^DEMO^MR||{names[n % len(names)]}||19700101|F"
        "|||1 MAIN ST^^SPRINGFIELD^^12345",
        f"PV1|1|I|WARD1^{n % 20:03d}^1|||||||MED",
    ]
    return "\r".join(segments) + "\r"


@dataclass(frozen=True)
class DemoPorts:
    """Where the demo listens; tests pick free ports."""

    mllp: int = 2575
    sink: int = 6661
    metrics: int = 9464
    flower: int = 5555


RULES = {
    "kind": "rules",
    "name": "Demo.Router",
    "rule_sets": [
        {
            "rules": [
                {
                    "name": "adt",
                    "when": [
                        {
                            "condition": 'HL7.{MSH:9.1}="ADT"',
                            "actions": [{"type": "send", "target": "ADT.Out"}],
                        }
                    ],
                },
                {
                    "name": "oru",
                    "when": [
                        {
                            "condition": 'HL7.{MSH:9.1}="ORU"',
                            "actions": [{"type": "send", "target": "ORU.Out"}],
                        }
                    ],
                },
            ]
        }
    ],
}


def demo_production(home: Path, ports: DemoPorts = DemoPorts()) -> Path:
    """Write the demo production (and its rules) under ``home/demo``; return its path."""
    root = (home / "demo").resolve()
    for folder in ("in", "out", "sink"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    rules = root / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES, sort_keys=False))
    items = [
        {
            "name": "ADT.In",
            "class": "HL7TCPService",
            "targets": ["Router"],
            "settings": {"port": ports.mllp, "ack_mode": "immediate"},
        },
        {
            "name": "ADT.FileIn",
            "class": "HL7FileService",
            "targets": ["Router"],
            "settings": {"file_path": str(root / "in"), "file_spec": "*.hl7", "poll_interval": 0.5},
        },
        {
            "name": "Router",
            "class": "HL7RoutingEngine",
            "pool": "prefork",
            "pool_size": 2,
            "targets": ["ADT.Out", "ORU.Out"],
            "settings": {"rules": str(rules)},
        },
        {
            "name": "ADT.Out",
            "class": "HL7TCPOperation",
            "pool": "threads",
            "pool_size": 2,
            "settings": {"host": "127.0.0.1", "port": ports.sink, "retry_interval": 2},
        },
        {
            "name": "ORU.Out",
            "class": "HL7FileOperation",
            "pool": "threads",
            "pool_size": 2,
            "settings": {"file_path": str(root / "out")},
        },
    ]
    production = {
        "name": "Demo",
        "description": "ADT/ORU over MLLP, routed by rules",
        "items": items,
    }
    path = root / "production.yaml"
    path.write_text(yaml.safe_dump(production, sort_keys=False, allow_unicode=True))
    return path


def _print_banner(path: Path, settings: Settings, how: str, ports: DemoPorts) -> None:
    root = path.parent
    samples = Path(__file__).resolve().parents[2] / "shared" / "samples" / "hl7" / "hapi-hl7v2"
    sample = samples / "ADT_A01.txt" if samples.is_dir() else root / "in" / "<file>.hl7"
    lines = [
        f"HIE demo production 'Demo' ({path})",
        f"  broker:   {maybe_sanitize_url(settings.broker_url)} ({how})",
        f"  send:     python manage.py send --port {ports.mllp} {sample}",
        f"  or drop HL7 files (*.hl7) into {root / 'in'}",
        f"  ADT goes over MLLP to the sink on port {ports.sink}, written to {root / 'sink'}",
        f"  ORU is written to {root / 'out'}",
        "  watch:    python manage.py status        (another terminal)",
        "            python manage.py messages      then  python manage.py trace <message id>",
        f"  flower:   python manage.py flower {path} --port {ports.flower}"
        f"   ->  http://127.0.0.1:{ports.flower}/",
    ]
    if ports.metrics:
        lines.append(f"  metrics:  http://127.0.0.1:{ports.metrics}/metrics  (and /health/ready)")
    lines += [f"  logs:     {log_dir(settings, 'Demo')}", "  Ctrl-C stops it."]
    print("\n".join(lines), flush=True)


def run_demo(settings: Settings, args: argparse.Namespace | None = None) -> int:
    """Ensure a broker, write the demo production and run it with its sink until Ctrl-C."""
    from hie.broker import ensure_broker
    from hie.commands.manage import LiveTable
    from hie.config.loader import load_production
    from hie.supervisor.supervisor import Supervisor

    ports = DemoPorts()
    if args is not None:
        ports = DemoPorts(args.port, args.sink_port, args.metrics_port, args.flower_port)
    how = ensure_broker(settings)
    path = demo_production(settings.home, ports)
    production = load_production(path)
    for n in range(1, 4):
        (path.parent / "in" / f"demo-{n}.hl7").write_text(synthetic_adt(n), encoding="utf-8")
    _print_banner(path, settings, how, ports)
    sink = [sys.executable, "-m", "hie.cli", "sink", "--port", str(ports.sink)]
    sink += ["--out", str(path.parent / "sink")]
    gateway_env = {"HIE_METRICS_PORT": str(ports.metrics)} if ports.metrics else {}
    supervisor = Supervisor(
        production, path, settings, extras={"sink": sink}, gateway_env=gateway_env
    )
    supervisor.install_signal_handlers()
    supervisor.run(on_tick=LiveTable(supervisor, every=10.0))
    return 0
