"""HL7 paths like ``PID-3(2).1.2`` and ``OBX(*)-5``: parsed once, cached."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final, NamedTuple

#: Stands for ``(*)``: every segment of a name, or every repetition of a field.
ALL: Final = -1

_PATH = re.compile(
    r"^([A-Z][A-Z0-9]{2})(?:\((\d+|\*)\))?-(\d+)(?:\((\d+|\*)\))?(?:\.(\d+)(?:\.(\d+))?)?$",
    re.IGNORECASE,
)


class HL7Path(NamedTuple):
    """One parsed path; indexes are 1-based, None when not given, ``ALL`` for ``(*)``."""

    segment: str
    segment_index: int | None
    field: int
    repetition: int | None
    component: int | None
    subcomponent: int | None

    @property
    def has_all(self) -> bool:
        """True when the path contains ``(*)``."""
        return ALL in (self.segment_index, self.repetition)


def _index(text: str | None) -> int | None:
    if text is None:
        return None
    return ALL if text == "*" else int(text)


@lru_cache(maxsize=2048)
def parse_path(path: str) -> HL7Path:
    """Parse ``SEG(n)-field(rep).component.subcomponent``; raises ``ValueError`` when malformed.

    Use it to check paths from configuration at load time rather than on the first message.
    """
    match = _PATH.match(path.strip())
    if match is None:
        raise ValueError(
            f"{path!r} is not an HL7 path; expected SEG(n)-field(rep).component.subcomponent, "
            "for example PID-3(2).1 or OBX(*)-5"
        )
    seg, seg_idx, field, rep, comp, sub = match.groups()
    parsed = HL7Path(
        seg.upper(),
        _index(seg_idx),
        int(field),
        _index(rep),
        None if comp is None else int(comp),
        None if sub is None else int(sub),
    )
    if 0 in (parsed.segment_index, parsed.field, parsed.repetition, parsed.component):
        raise ValueError(f"{path!r}: HL7 positions start at 1")
    if parsed.subcomponent == 0:
        raise ValueError(f"{path!r}: HL7 positions start at 1")
    return parsed
