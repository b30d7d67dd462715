"""The demo production behind ``make demo``: an ADT feed from a folder, routed, written out.

Everything it writes lives under ``HIE_HOME/demo`` (default ``var/demo``); the messages are
synthetic, made up here, with no real patient in them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from hie.settings import Settings


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


def demo_production(home: Path) -> Path:
    """Write the demo production file under ``home/demo`` and return its path."""
    root = (home / "demo").resolve()
    inbox, outbox = root / "in", root / "out"
    for folder in (inbox, outbox):
        folder.mkdir(parents=True, exist_ok=True)
    production = {
        "name": "Demo",
        "description": "ADT files in -> router -> files out",
        "items": [
            {
                "name": "ADT.FileIn",
                "class": "FileService",
                "targets": ["ADT.Router"],
                "settings": {"file_path": str(inbox), "file_spec": "*.hl7", "poll_interval": 0.5},
            },
            {
                "name": "ADT.Router",
                "class": "HL7RoutingEngine",
                "pool": "prefork",
                "pool_size": 2,
                "targets": ["ADT.FileOut"],
            },
            {
                "name": "ADT.FileOut",
                "class": "FileOperation",
                "pool": "threads",
                "pool_size": 4,
                "settings": {"file_path": str(outbox), "filename": "{timestamp}_{message_id}.hl7"},
            },
        ],
    }
    path = root / "production.yaml"
    path.write_text(yaml.safe_dump(production, sort_keys=False, allow_unicode=True))
    return path


def run_demo(settings: Settings) -> int:
    """Ensure a broker, write the demo production and a few messages, and run it until Ctrl-C."""
    from hie.broker import ensure_broker
    from hie.config.loader import load_production
    from hie.manager import Supervisor

    how = ensure_broker(settings)
    path = demo_production(settings.home)
    production = load_production(path)
    inbox = path.parent / "in"
    for n in range(1, 4):
        (inbox / f"demo-{n}.hl7").write_text(synthetic_adt(n), encoding="utf-8")
    print(f"HIE demo production {production.name!r} ({path})")
    print(f"  broker:   {settings.broker_url} ({how})")
    print(f"  drop HL7 files (*.hl7) into {inbox}")
    print(f"  they are routed and written to {path.parent / 'out'}")
    print(f"  logs:     {settings.home / 'log' / production.name}")
    print("  Ctrl-C stops it.", flush=True)
    Supervisor(production, path, settings).run_foreground()
    return 0
