"""``hie send``: send HL7 files over MLLP (batch files too) and print each message's ACK.

Every message of every file goes over one connection, in file order. Exit status: 0 when every
message was accepted (AA/CA), 1 on any AE/AR/CE/CR, missing ACK or timeout (the rest are still
sent) or a file that is not HL7 (nothing is sent), 2 on bad usage or a file that cannot be opened.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hie.adapters.mllp import BlockingMLLPClient
from hie.errors import DeliveryError, HIEError
from hie.hl7 import HL7Message, split_batch
from hie.settings import Settings

#: MSA-1 values that mean the peer did not take the message.
REFUSED = frozenset({"AE", "AR", "CE", "CR"})


def add_commands(subparsers: Any) -> None:
    """Add ``send`` to the CLI."""
    p = subparsers.add_parser(
        "send",
        help="send HL7 files over MLLP (batch files too); print each MSH-10 and its MSA-1",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="HL7 file: one message, many, or a batch"
    )
    p.add_argument("--host", default="127.0.0.1", help="receiver host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=2575, help="receiver port (default 2575)")
    p.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for each ACK (default 30)"
    )
    p.add_argument("--json", action="store_true", help="print one JSON record per message")
    p.set_defaults(func=cmd_send)


def _load(files: list[str]) -> list[tuple[str, HL7Message]]:
    messages: list[tuple[str, HL7Message]] = []
    for name in files:
        # Bytes, so each message keeps the charset its MSH-18 names.
        for msg in split_batch(Path(name).read_bytes()):
            messages.append((name, msg))
    return messages


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    """Send every message of ``args.files`` over one connection; print what came back."""
    try:
        messages = _load(args.files)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (HIEError, UnicodeDecodeError) as exc:
        print(f"error: not sent, a file is not valid HL7: {exc}", file=sys.stderr)
        return 1
    if not messages:
        print("error: no HL7 message (no MSH segment) in the given file(s)", file=sys.stderr)
        return 1
    failed = False
    with BlockingMLLPClient(
        args.host, args.port, connect_timeout=min(args.timeout, 10.0), response_timeout=args.timeout
    ) as client:
        for name, msg in messages:
            record = _send_one(client, msg)
            record["file"] = name
            failed |= not record["ok"]
            _print(record, args.json)
    return 1 if failed else 0


def _send_one(client: BlockingMLLPClient, msg: HL7Message) -> dict[str, Any]:
    record: dict[str, Any] = {"control_id": msg.control_id, "ack": None, "text": None}
    try:
        raw = client.send(msg.encode())
    except DeliveryError as exc:
        return {**record, "ok": False, "error": str(exc)}
    try:
        ack = HL7Message(raw)
    except HIEError as exc:
        return {**record, "ok": False, "error": f"reply is not an HL7 ACK: {exc}"}
    code, acked = ack.get("MSA-1"), ack.get_raw("MSA-2")
    record.update(ack=code, text=ack.get("MSA-3") or None)
    if acked != msg.control_id:
        return {**record, "ok": False, "error": f"ACK is for control id {acked!r}"}
    if not code or code in REFUSED:
        return {**record, "ok": False, "error": None}
    return {**record, "ok": True, "error": None}


def _print(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(record), flush=True)
        return
    line = f"{record['control_id']} {record['ack'] or '-'}"
    if record["text"]:
        line += f" {record['text']}"
    if record["error"]:
        line += f" ({record['error']})"
    print(line, flush=True)
