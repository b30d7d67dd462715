"""Just enough HL7 v2 reading for the store: MSH-9 / MSH-10 on save, one field for ``find``.

Saving runs on every hop, even for bytes a gateway could not parse, so the header is read with a
tolerant split of the first segment. ``field_matches`` is the exact check behind
``find(field=...)`` and follows ``HL7Message``'s reading rules.
"""

from __future__ import annotations

import re

from hie.errors import HIEError
from hie.hl7 import HL7Message
from hie.hl7.path import parse_path

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")


def msh_type_and_control_id(raw: str) -> tuple[str | None, str | None]:
    """MSH-9 as ``CODE^EVENT`` (structure dropped) and MSH-10, or ``None`` where absent."""
    if not raw.startswith("MSH") or len(raw) < 8:
        return None, None
    first = _SEGMENT_SPLIT.split(raw, maxsplit=1)[0]
    fields = first.split(raw[3])
    component = (fields[1][:1] or "^") if len(fields) > 1 else "^"
    msh9 = fields[8] if len(fields) > 8 else ""
    parts = [p for p in msh9.split(component)[:2] if p]
    control_id = fields[9] if len(fields) > 9 and fields[9] else None
    return ("^".join(parts) or None), control_id


def check_path(path: str) -> None:
    """Raise ``ValueError`` unless ``path`` is an HL7 path (``PID-3``, ``PID-3(2).1``, ...)."""
    parse_path(path)


def field_matches(raw: str, path: str, value: str) -> bool:
    """True if any value at ``path`` (every repetition, every such segment) equals ``value``.

    Without a component in the path the first component counts too, so ``PID-3`` finds
    ``12345`` in ``12345^^^HOSP^MR~999^^^NHS``, as an integration engineer searching for an MRN
    expects. Text that is not HL7 matches nothing.
    """
    try:
        message = HL7Message(raw)
        if value in message.get_all(path):
            return True
        return parse_path(path).component is None and value in message.get_all(f"{path}.1")
    except HIEError:
        return False
