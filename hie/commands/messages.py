"""Message commands: ``messages``, ``trace``, ``resend``, ``suspend``, ``discard``, ``purge``,
and ``recover`` (the recovery sweeper of a production).

Times (``--since``, ``--until``) are ISO 8601 (``2026-01-31T08:00``, UTC unless it says) or
relative to now: ``90s``, ``15m``, ``2h``, ``7d``. A message ID is a message id (UUID) or a
control id (MSH-10). Exit status: 0 ok, 1 a failure the output explains (no such message...),
2 bad usage.

``resend`` publishes, so it needs the production: ``--production FILE`` (or a FILE after the ID);
without one, the single ``HIE_HOME/run/*/production.path`` a running manager left, if exactly one.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hie.errors import StoreError
from hie.settings import Settings
from hie.store import MessageHeader, MessageStore, Status, TraceNode
from hie.supervisor.rundir import RunDir

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_UUID = re.compile(r"^[0-9a-fA-F-]{36}$")


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``1h`` (an hour ago) or an ISO 8601 time (UTC when it names no zone)."""
    match = _RELATIVE.match(text.strip())
    if match:
        amount, unit = float(match.group(1)), _UNITS[match.group(2)]
        return (now or datetime.now(UTC)) - timedelta(**{unit: amount})
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: use ISO 8601 (2026-01-31T08:00) or 90s, 15m, 2h, 7d"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _field(text: str) -> tuple[str, str]:
    path, sep, value = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"{text!r} is not PATH=VALUE (e.g. PID-3=12345)")
    return path.strip(), value


#: The filters of ``messages``, and of a bulk ``resend`` (the same query): ``_query`` reads them.
FILTERS = ("status", "msg_type", "since", "until", "source", "target", "field")


def _add_filters(p: Any) -> None:
    """The message filters (``FILTERS``) on a parser or argument group."""
    p.add_argument("--status", choices=[str(s) for s in Status])
    p.add_argument("--type", dest="msg_type", help="message type, e.g. ADT^A01")
    p.add_argument("--since", type=parse_time, help="created at or after (ISO or 1h, 2d ...)")
    p.add_argument("--until", type=parse_time, help="created before (ISO or 1h, 2d ...)")
    p.add_argument("--source", help="item that sent it")
    p.add_argument("--target", help="item it was sent to")
    p.add_argument("--field", type=_field, help="HL7 field match, e.g. PID-3=12345")


def add_commands(subparsers: Any) -> None:
    """Add the message commands to the CLI."""
    p = subparsers.add_parser("messages", help="list stored messages, newest first")
    _add_filters(p)
    p.add_argument(
        "--production", metavar="NAME", help="only this production's (when several share a store)"
    )
    p.add_argument("--limit", type=int, default=50, help="at most N messages (default 50)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_messages)

    p = subparsers.add_parser("trace", help="the whole session of a message: hops, timing, ACKs")
    p.add_argument("id", help="message id or control id (MSH-10)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_trace)

    p = subparsers.add_parser(
        "resend",
        help="send stored messages again, in their sessions: one by id, or every one a query finds",
    )
    p.add_argument("id", nargs="?", help="message id or control id (MSH-10)")
    p.add_argument("file", nargs="?", help="the production file (or --production)")
    p.add_argument("--to", dest="to", metavar="ITEM", help="send to ITEM instead of its target")
    p.add_argument("--production", metavar="FILE", help="the production file")
    q = p.add_argument_group("bulk resend (instead of an id): the messages `messages` would list")
    _add_filters(q)
    q.add_argument("--limit", type=int, default=1000, help="at most N messages (default 1000)")
    q.add_argument("--dry-run", action="store_true", help="list what would be resent, send nothing")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_resend)

    for name, what in (
        ("suspend", "mark a message suspended (kept, not processed further)"),
        ("discard", "mark a message discarded (given up on purpose)"),
    ):
        p = subparsers.add_parser(name, help=what)
        p.add_argument("id", help="message id or control id (MSH-10)")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=cmd_set_aside, action=name)

    p = subparsers.add_parser("purge", help="delete messages older than N days (finished sessions)")
    p.add_argument(
        "--days", type=_age_in_days, required=True, help="age in days, more than 0 (e.g. 30, 0.5)"
    )
    p.add_argument("--batch", type=int, default=1000, help="messages per transaction")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_purge)

    p = subparsers.add_parser("recover", help="re-publish lost messages; raise alerts")
    p.add_argument("file", help="the production file")
    p.add_argument("--once", action="store_true", help="one sweep, then exit")
    p.add_argument("--stale-after", type=float, default=60.0, help="seconds (default 60)")
    p.add_argument("--interval", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("--alert-depth", type=int, help="alert when a queue holds N messages")
    p.add_argument("--alert-wait", type=float, help="alert when a message waits S seconds")
    p.add_argument("--json", action="store_true", help="with --once: print what it did as JSON")
    p.set_defaults(func=cmd_recover)


def _store(settings: Settings, production: str | None = None) -> MessageStore:
    # hie.startup imports Celery, which only resend needs: keep the read-only commands quick.
    from hie.startup import open_store

    return open_store(settings, upgrade=False, production=production)


def resolve(store: MessageStore, ident: str) -> MessageHeader:
    """The message an ID names: a message id, else the first message with that MSH-10.

    Raises:
        StoreError: nothing matches.
    """
    if _UUID.match(ident):
        return store.header(ident)
    found = store.find(control_id=ident, limit=1000)
    if not found:
        raise StoreError(f"no message with id or control id (MSH-10) {ident!r}")
    return min(found, key=lambda h: h.created_at)  # the one that came in, not its copies


def _header_dict(h: MessageHeader) -> dict[str, Any]:
    out = {name: getattr(h, name) for name in h.__slots__}
    out["status"] = str(h.status)
    out["created_at"] = h.created_at.isoformat()
    out["updated_at"] = h.updated_at.isoformat()
    return out


def cmd_messages(args: argparse.Namespace, settings: Settings) -> int:
    """List stored messages matching the filters, newest first."""
    found = _store(settings, args.production).find(**(_query(args) or {}), limit=args.limit)
    if args.json:
        print(json.dumps([_header_dict(h) for h in found], indent=2))
        return 0
    for h in found:
        dup = " possible-duplicate" if h.possible_duplicate else ""
        print(
            f"{h.created_at:%Y-%m-%d %H:%M:%S} {h.message_id} {h.status:<11} "
            f"{h.msg_type or '-':<12} {h.control_id or '-':<20} "
            f"{h.source or '-'} -> {h.target or '-'} {h.ack_code or ''}{dup}"
        )
    print(f"{len(found)} message(s)", file=sys.stderr)
    return 0


def _node_dict(node: TraceNode) -> dict[str, Any]:
    return {
        **_header_dict(node.header),
        "elapsed_ms": round(node.elapsed_ms, 1),
        "events": [
            {
                "at": e.at.isoformat(),
                "event": e.event,
                "item": e.item,
                "pid": e.pid,
                "duration_ms": e.duration_ms,
                "detail": e.detail,
            }
            for e in node.events
        ],
        "children": [_node_dict(c) for c in node.children],
    }


def format_trace(root: TraceNode) -> str:
    """The session as an indented tree: each hop, its status, time taken, ACK and events."""
    lines: list[str] = []
    start = root.header.created_at
    for depth, node in root.walk():
        h, pad = node.header, "  " * depth
        took = sum(e.duration_ms or 0 for e in node.events if e.event == "completed")
        flags = " POSSIBLE DUPLICATE" if h.possible_duplicate else ""
        lines.append(
            f"{pad}{h.source or '?'} -> {h.target or '-'}  [{h.status}] {h.msg_type or ''} "
            f"{h.control_id or ''}  ack={h.ack_code or '-'}  took={took:.1f}ms  "
            f"elapsed={node.elapsed_ms:.1f}ms{flags}  ({h.message_id})"
        )
        for e in node.events:
            offset = (e.at - start).total_seconds() * 1000
            dur = f" {e.duration_ms:.1f}ms" if e.duration_ms is not None else ""
            detail = f"  {e.detail}" if e.detail else ""
            lines.append(f"{pad}    +{offset:9.1f}ms {e.event:<18} {e.item or ''}{dur}{detail}")
    return "\n".join(lines)


def cmd_trace(args: argparse.Namespace, settings: Settings) -> int:
    """Print the session of a message as a tree."""
    store = _store(settings)
    root = store.trace(resolve(store, args.id).message_id)
    print(json.dumps(_node_dict(root), indent=2) if args.json else format_trace(root))
    return 0


def production_file(args: argparse.Namespace, settings: Settings) -> str | None:
    """The production file named on the command line, or the one a running manager left."""
    named = args.production or args.file
    if named:
        return str(named)
    found = [r.production_file for r in RunDir.every(settings) if r.production_file.exists()]
    if len(found) == 1:
        return found[0].read_text().strip()
    return None


def _query(args: argparse.Namespace) -> dict[str, Any] | None:
    """The filters of a bulk resend (None: none given)."""
    query = {n: getattr(args, n) for n in FILTERS if getattr(args, n) is not None}
    return query or None


def cmd_resend(args: argparse.Namespace, settings: Settings) -> int:
    """Send stored messages again: one by id, or every one a query finds; print the new ids."""
    from hie import operator
    from hie.config.loader import load_production
    from hie.startup import open_dispatcher

    query = _query(args)
    if (args.id is None) == (query is None):
        print(
            "error: resend needs a message id or a query (--status, --since ...)", file=sys.stderr
        )
        return 2
    path = production_file(args, settings)
    if path is None:
        print("error: resend needs the production: give FILE or --production FILE", file=sys.stderr)
        return 2
    production = load_production(path)
    # The production's own messages are queried, and the copies carry its name.
    store = _store(settings, production.name)
    if query is None:
        ids = [resolve(store, args.id).message_id]
    else:
        ids = [h.message_id for h in reversed(store.find(**query, limit=args.limit))]
    if query is not None and args.dry_run:
        for mid in ids:
            print(mid)
        print(f"{len(ids)} message(s) would be resent", file=sys.stderr)
        return 0
    dispatcher = open_dispatcher(production, settings, store)
    copies = operator.resend_many(
        store, dispatcher, production, ids, target=args.to, user=_operator_name()
    )
    if args.json:
        out = [{"message_id": str(c.message_id), "resent_from": str(c.parent_id),
                "target": c.target} for c in copies]  # fmt: skip
        print(json.dumps(out[0] if query is None else out))
    else:
        for copy in copies:
            print(copy.message_id)
        if query is not None:
            print(f"{len(copies)} message(s) resent", file=sys.stderr)
    return 0


def _operator_name() -> str:
    """Who acts from the command line, for the audit trail: the operating system's user."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        import os

        return f"uid {os.getuid()}"


def cmd_set_aside(args: argparse.Namespace, settings: Settings) -> int:
    """Mark a message suspended or discarded, by hand (audited)."""
    from hie import operator

    store = _store(settings)
    header = resolve(store, args.id)
    before = operator.set_aside(store, header.message_id, args.action, user=_operator_name())
    status = operator.SET_ASIDE[args.action]
    if args.json:
        print(json.dumps({"message_id": header.message_id, "status": str(status),
                          "was": str(before)}))  # fmt: skip
    else:
        print(f"{header.message_id} {status}")
    if before in (Status.QUEUED, Status.IN_PROGRESS):
        print(
            "note: a copy already on the broker is skipped by the worker that takes it",
            file=sys.stderr,
        )
    return 0


def _age_in_days(text: str) -> float:
    """``--days`` of ``purge``: a number above 0 (0 or less would delete today's messages)."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not days > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"{text!r} would purge messages received today; give an age above 0 days"
        )
    return days


def cmd_purge(args: argparse.Namespace, settings: Settings) -> int:
    """Delete messages older than ``--days`` whose sessions are finished."""
    deleted = _store(settings).purge(args.days, args.batch)
    if args.json:
        print(json.dumps({"purged": deleted, "days": args.days}))
    else:
        print(f"purged {deleted} message(s) older than {args.days:g} day(s)")
    return 0


def cmd_recover(args: argparse.Namespace, settings: Settings) -> int:
    """Run the recovery sweeper of a production (see ``hie.recovery``)."""
    from hie.broker import ensure_broker
    from hie.config.loader import load_production
    from hie.recovery import run_sweeper

    production = load_production(Path(args.file))
    ensure_broker(settings)
    report = run_sweeper(
        production,
        settings,
        once=args.once,
        stale_after=args.stale_after,
        interval=args.interval,
        alert_depth=args.alert_depth,
        alert_wait=args.alert_wait,
    )
    if report is not None and args.json:
        print(json.dumps({"requeued": report.requeued, "alerts": report.alerts}))
    elif report is not None:
        print(f"re-published {len(report.requeued)} message(s), raised {report.alerts} alert(s)")
    return 0
