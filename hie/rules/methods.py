"""The IRIS methods HIE runs itself inside rule and DTL expressions.

Two kinds. Methods of values (``METHODS``), called on whatever an expression reads:
``source.GetValueAt("PID:5.1")`` and ``source.OutputToString()`` on HL7 messages,
``json.%Get("key")`` on dynamic objects, ``source.Stream.ReadLine()`` on streams (text in HIE),
``list.Count()``. And class methods of IRIS system classes (``SYSTEM_METHODS``), written
``$SYSTEM.Encryption.Base64Decode(x)``, ``##class(%SYSTEM.Util).CreateGUID()`` or
``{}.%FromJSON(text)``, keyed by their lower-case ``class.method``.

Every method takes the evaluation context first; value methods take their object next.
Methods that change their object (``SetAt``, ``Insert``) are not here: DTL changes the target
with ``<assign>``. A system method not listed is a helper-class call, mapped to Python in the
production's mapping file like any other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hie.errors import ConfigError, MessageError
from hie.hl7 import HL7Message
from hie.rules.access import property_of, read_path, read_properties
from hie.rules.functions import to_number, to_str
from hie.rules.paths import parse_virtual_path

__all__ = ["METHODS", "SYSTEM_METHODS", "Method", "find_method"]


@dataclass(frozen=True)
class Method:
    """A method HIE runs on a value: its IRIS name, implementation and argument counts."""

    name: str
    run: Callable[..., Any]  # (ctx, the object, *arguments) -> value
    min_args: int
    max_args: int
    #: The first argument is a virtual path of an HL7 message (checked at load when literal).
    path_arg: bool = False


# -- messages ------------------------------------------------------------------------------

_STEP = re.compile(r"([^.\[\]()]+)(?:[\[(]\s*(\d+)\s*[\])])?")


def _object_path(text: str) -> list[str | int]:
    """``Sequence[1].Modality`` (DICOM) or ``Items(2).Code`` as property names and positions."""
    keys: list[str | int] = []
    for step in text.split("."):
        m = _STEP.fullmatch(step.strip())
        if m is None:
            return [text]  # not a path: a property named by the whole text (reads "")
        keys.append(m.group(1))
        if m.group(2):
            keys.append(int(m.group(2)))
    return keys


def _get_value_at(ctx: Any, obj: Any, path: Any, *_options: Any) -> Any:
    # The options (HL7 separators, a DICOM "what", a status output) do not change the value.
    text = to_str(path)
    if isinstance(obj, HL7Message):
        return read_path(obj, parse_virtual_path(text), ctx.variables)
    return read_properties(obj, _object_path(text))


def _output_to_string(ctx: Any, obj: Any) -> str:
    if isinstance(obj, HL7Message):
        text = obj.to_er7()
        return text if text.endswith("\r") else text + "\r"  # IRIS ends every segment
    if obj is None or isinstance(obj, str):
        return obj or ""
    kind = type(obj).__name__
    raise MessageError(f"OutputToString() writes out an HL7 message; this value is a {kind}")


# -- dynamic objects and collections ----------------------------------------------------------


def _dynamic_get(ctx: Any, obj: Any, key: Any, default: Any = "", *_type: Any) -> Any:
    if not isinstance(obj, dict | list):
        return property_of(obj, to_str(key))  # a registered class's object: its property
    if not _dynamic_defined(ctx, obj, key):
        return default  # the default stands in for a missing key only
    found = obj[int(to_number(key) or 0)] if isinstance(obj, list) else obj[to_str(key)]
    return "" if found is None else found  # a JSON null reads as ""


def _dynamic_defined(ctx: Any, obj: Any, key: Any) -> int:
    # A JSON null is a value (%GetTypeOf says "null"); only a missing key is undefined.
    if isinstance(obj, dict):
        return int(to_str(key) in obj)
    if isinstance(obj, list):
        at = to_number(key, strict=True)
        return int(isinstance(at, int) and 0 <= at < len(obj))
    return 0


def _size(ctx: Any, obj: Any) -> int:
    return len(obj) if isinstance(obj, dict | list) else 0


def _get_at(ctx: Any, obj: Any, key: Any) -> Any:
    at = to_number(key, strict=True)
    return property_of(obj, int(at) if isinstance(at, int) else to_str(key))


# -- streams ---------------------------------------------------------------------------------

_LINE_END = re.compile(r"\r\n|\n|\r")


def _read_line(ctx: Any, stream: Any, length: Any = None, *_status: Any) -> str:
    """The next line of a stream, without its terminator; ``""`` at the end.

    HIE carries streams as text; where each has been read to is kept on the context, so a
    second ``ReadLine()`` of the same stream in the same run reads its second line, as in IRIS.
    """
    if not isinstance(stream, str | bytes | None):
        raise ConfigError(
            f"ReadLine() reads a stream (text); this value is a {type(stream).__name__}"
        )
    text = stream.decode("utf-8") if isinstance(stream, bytes) else stream or ""
    held, start = ctx.streams.get(id(stream), (stream, 0))
    if held is not stream:
        start = 0
    m = _LINE_END.search(text, start)
    end, after = (m.start(), m.end()) if m else (len(text), len(text))
    limit = int(to_number(length) or 0) if length not in (None, "") else 0
    if 0 < limit < end - start:  # a line longer than len: the rest comes next time
        end = after = start + limit
    ctx.streams[id(stream)] = (stream, after)  # the stream is held so its id stays its own
    return text[start:end]


#: Methods of values, by lower-case name.
METHODS: dict[str, Method] = {
    m.name.lower(): m
    for m in (
        Method("GetValueAt", _get_value_at, 1, 4, path_arg=True),
        Method("OutputToString", _output_to_string, 0, 0),
        Method("%Get", _dynamic_get, 1, 3),
        Method("%IsDefined", _dynamic_defined, 1, 1),
        Method("%Size", _size, 0, 0),
        Method("Count", _size, 0, 0),
        Method("GetAt", _get_at, 1, 1),
        Method("ReadLine", _read_line, 0, 3),
    )
}


def find_method(name: str) -> Method | None:
    """The value method ``name`` (any case), or None when HIE does not run it."""
    return METHODS.get(name.lower())


# -- system classes --------------------------------------------------------------------------


def _bytes(text: Any, method: str) -> bytes:
    try:
        return to_str(text).encode("latin-1")
    except UnicodeEncodeError:
        raise ConfigError(
            f"{method}: the text has characters above 255, which IRIS refuses; convert it "
            'first with $ZCONVERT(text, "O", "UTF8")'
        ) from None


def _base64_encode(ctx: Any, text: Any, flags: Any = 0) -> str:
    encoded = base64.b64encode(_bytes(text, "Base64Encode")).decode("ascii")
    if int(to_number(flags) or 0) & 1:  # flag 1: one line
        return encoded
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def _base64_decode(ctx: Any, text: Any) -> str:
    data = re.sub(r"\s+", "", to_str(text))  # Base64Encode's line breaks
    try:
        return base64.b64decode(data, validate=True).decode("latin-1")
    except (binascii.Error, ValueError):
        raise MessageError(f"Base64Decode: {data[:40]!r} is not Base64") from None


def _hash(algorithm: str, method: str) -> Callable[..., str]:
    # IRIS returns the digest itself, one character per byte (Base64Encode it to print it).
    def run(ctx: Any, text: Any) -> str:
        return hashlib.new(algorithm, _bytes(text, method)).digest().decode("latin-1")

    return run


def _sha_hash(ctx: Any, bits: Any, text: Any) -> str:
    size = int(to_number(bits) or 0)
    if size not in (160, 224, 256, 384, 512):
        raise ConfigError(f"SHAHash: bit length {size} is not one of 160, 224, 256, 384, 512")
    name = "sha1" if size == 160 else f"sha{size}"
    return hashlib.new(name, _bytes(text, "SHAHash")).digest().decode("latin-1")


def _from_json(ctx: Any, source: Any) -> Any:
    text = source.decode("utf-8") if isinstance(source, bytes) else to_str(source)
    try:
        found = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MessageError(f"%FromJSON: the text is not JSON: {exc}") from None
    if not isinstance(found, dict | list):
        raise MessageError("%FromJSON: the JSON is not an object or an array")
    return found


_DYNAMIC = ("DynamicAbstractObject", "DynamicObject", "DynamicArray")

#: Class methods of IRIS system classes, by lower-case ``class.method``.
SYSTEM_METHODS: dict[str, Callable[..., Any]] = {
    "%system.encryption.base64encode": _base64_encode,
    "%system.encryption.base64decode": _base64_decode,
    "%system.encryption.md5hash": _hash("md5", "MD5Hash"),
    "%system.encryption.sha1hash": _hash("sha1", "SHA1Hash"),
    "%system.encryption.shahash": _sha_hash,
    "%system.util.createguid": lambda ctx: str(uuid.uuid4()).upper(),
}
SYSTEM_METHODS |= {
    f"{prefix}{name}.%fromjson".lower(): _from_json
    for name in _DYNAMIC
    for prefix in ("%", "%Library.")
}
