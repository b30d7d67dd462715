"""``hie db upgrade``: bring the message store's schema to this HIE's version.

``hie start``, ``hie demo``, the manager and the processes it runs upgrade the store themselves;
commands that only look at it (``status``, ``messages``, ``trace``, the viewer) do not, and say to
run this when the store was made by an older HIE. Safe to run at any time, from several hosts at
once (the second waits for the first, then finds nothing to do).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from hie.settings import Settings


def add_commands(subparsers: Any) -> None:
    """Add ``db upgrade`` to the CLI."""
    p = subparsers.add_parser("db", help="the message store's schema (db upgrade)")
    sub = p.add_subparsers(dest="db_command", required=True)
    up = sub.add_parser(
        "upgrade",
        help="upgrade the message store's schema to this HIE's version",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    up.add_argument("--json", action="store_true", help="print a JSON record")
    up.set_defaults(func=cmd_db_upgrade)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    """Migrate the store at ``HIE_DATABASE_URL`` to the newest schema; say what changed."""
    from hie.store import MessageStore

    store = MessageStore(settings.database_url)
    try:
        before, after = store.migrate()
    finally:
        store.dispose()
    if args.json:
        record = {"store": store.where, "before": before, "after": after}
        print(json.dumps(record | {"upgraded": before != after}))
    elif before == after:
        print(f"message store {store.where}: already at schema revision {after}")
    else:
        print(f"message store {store.where}: schema {before or '(new)'} -> {after}")
    return 0
