"""HL7 character sets (MSH-18) and the Python codecs that read and write them."""

from __future__ import annotations

import codecs
import re

# HL7 table 0211 (and the DICOM-style spellings senders use for it) -> Python codec.
_HL7_CHARSETS: dict[str, str | None] = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "ISO IR100": "iso8859-1",
    "ISO IR101": "iso8859-2",
    "ISO IR109": "iso8859-3",
    "ISO IR110": "iso8859-4",
    "ISO IR144": "iso8859-5",
    "ISO IR127": "iso8859-6",
    "ISO IR126": "iso8859-7",
    "ISO IR138": "iso8859-8",
    "ISO IR148": "iso8859-9",
    "ISO IR192": "utf-8",
    # JIS X 0201 is the single-byte part of Shift JIS; JIS X 0208 / 0212 travel as ISO 2022.
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_1",
    # Table 0211 defines plain UNICODE as ISO 10646 without naming an encoding form. Senders that
    # write it send UTF-8 in practice, and UTF-16 would make MSH unreadable as ASCII anyway.
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "BIG-5": "big5",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "CNS 11643-1992": None,  # no Python codec: falls back to the default
}

_IR = re.compile(r"^ISO[\s_-]*IR[\s_-]*(\d+)$")


def _normalise(name: str) -> str:
    key = re.sub(r"[\s_]+", " ", name.strip().upper())
    match = _IR.match(key)
    return f"ISO IR{match.group(1)}" if match else key


def python_codec(msh18: str | None, default: str = "utf-8") -> str:
    """The Python codec name for an HL7 character set (the first repetition of MSH-18).

    The rule: an empty value gives ``default``; a name from HL7 table 0211 (``UNICODE UTF-8``,
    ``8859/1``, ``ISO IR192`` ...; case, spaces and underscores do not matter) gives its codec; any
    other name Python itself knows (``UTF-8``, ``windows-1252``, ``latin1``) is taken as a codec
    name, because senders often put one there; anything else gives ``default``. The result is
    Python's canonical spelling (``iso8859-1``, ``utf-8``).
    """
    if not msh18 or not msh18.strip():
        return codecs.lookup(default).name
    key = _normalise(msh18)
    if key in _HL7_CHARSETS:
        codec = _HL7_CHARSETS[key]
        return codecs.lookup(codec or default).name
    name = msh18.strip()
    if is_text_codec(name):
        return codecs.lookup(name).name
    return codecs.lookup(default).name


def is_text_codec(name: str) -> bool:
    """True if Python knows ``name`` as a codec between bytes and text.

    Python also registers codecs that are not character sets (``base64``, ``zlib_codec``,
    ``hex``, ``rot13``): ``str.encode`` refuses those, and so does HIE.
    """
    try:
        "".encode(name)
        b"".decode(name)
    except LookupError:
        return False
    return True


def unreadable_charset(msh18: str | None) -> str | None:
    """Why MSH-18 cannot be honoured, when it names a codec that is not a character set.

    None for every other value: table 0211 names, text codecs, and names Python does not know
    at all (those fall back to the default character set, see ``python_codec``).
    """
    if not msh18 or not msh18.strip() or _normalise(msh18) in _HL7_CHARSETS:
        return None
    name = msh18.strip()
    try:
        codecs.lookup(name)
    except LookupError:
        return None
    if is_text_codec(name):
        return None
    return (
        f"MSH-18 names {name!r}, which is not a character set; "
        "send text in one (e.g. UNICODE UTF-8)"
    )


def sniff_charset(raw: bytes) -> str | None:
    """MSH-18 (first repetition) read straight from raw bytes, or None when it is absent.

    Only the MSH segment is looked at, and it is ASCII whatever the message's character set, so
    this is safe to call before knowing how to decode the rest.
    """
    start = raw.find(b"MSH")
    if start < 0 or len(raw) < start + 8:
        return None
    fs = raw[start + 3 : start + 4]
    ends = [i for i in (raw.find(b"\r", start), raw.find(b"\n", start)) if i >= 0]
    line = raw[start : min(ends)] if ends else raw[start:]
    parts = line.split(fs)
    # parts[0] is "MSH" and parts[1] MSH-2, so MSH-n is parts[n - 1].
    if len(parts) < 18 or len(parts[1]) < 2:
        return None
    value = parts[17].split(parts[1][1:2])[0].strip()
    return value.decode("ascii", "replace") or None
