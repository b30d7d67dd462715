"""Just enough HL7 v2 reading for the store: MSH-9 / MSH-10 on save, one field for ``find``.

The store runs on every hop, so it splits text on separators (tens of microseconds) instead of
building a full parse tree. ``field_matches`` is the exact check behind ``find(field=...)``.
"""

from __future__ import annotations

import re

_SEGMENT_SPLIT = re.compile(r"\r\n|\r|\n")
_PATH = re.compile(r"^([A-Z][A-Z0-9]{2})-(\d+)(?:\.(\d+))?$")


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


def parse_path(path: str) -> tuple[str, int, int | None]:
    """``"PID-3"`` -> ``("PID", 3, None)``; ``"PID-3.1"`` -> ``("PID", 3, 1)``.

    Raises:
        ValueError: the path is not ``SEG-field`` or ``SEG-field.component``.
    """
    match = _PATH.match(path.strip().upper())
    if match is None:
        raise ValueError(f"field path {path!r} is not SEG-n or SEG-n.m (e.g. 'PID-3', 'PID-3.1')")
    seg, fld, comp = match.groups()
    return seg, int(fld), int(comp) if comp else None


def field_matches(raw: str, path: str, value: str) -> bool:
    """True if any occurrence of the field at ``path`` in ``raw`` equals ``value``.

    A field matches when its whole text, one of its repetitions (``~``), or, without a component
    in the path, the first component of a repetition equals ``value``: ``PID-3`` finds ``12345``
    in ``12345^^^HOSP^MR~999^^^NHS``.
    """
    seg, fld, comp = parse_path(path)
    if not raw.startswith("MSH") or len(raw) < 8:
        return False
    sep = raw[3]
    encoding = _SEGMENT_SPLIT.split(raw, maxsplit=1)[0].split(sep)[1] if sep in raw[4:] else ""
    comp_sep = encoding[0] if len(encoding) > 0 else "^"
    rep_sep = encoding[1] if len(encoding) > 1 else "~"
    # MSH-1 is the field separator itself, so MSH fields sit one to the left of other segments'.
    index = fld - 1 if seg == "MSH" else fld
    for segment in _SEGMENT_SPLIT.split(raw):
        if not segment.startswith(seg + sep):
            continue
        fields = segment.split(sep)
        if index >= len(fields):
            continue
        text = fields[index]
        if comp is None and text == value:
            return True
        for repetition in text.split(rep_sep):
            components = repetition.split(comp_sep)
            if comp is None and (repetition == value or components[0] == value):
                return True
            if comp is not None and comp <= len(components) and components[comp - 1] == value:
                return True
    return False
