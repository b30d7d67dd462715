"""IRIS lookup-table exports: ``<lookupTable><entry table="T" key="K">V</entry></lookupTable>``."""

from __future__ import annotations

from pathlib import Path

from hie.errors import ConfigError
from hie.iris.safe_xml import parse_xml

__all__ = ["load_lookup_export"]


def load_lookup_export(path: str | Path) -> dict[str, dict[str, str]]:
    """Every table of an IRIS lookup-table export, ``{table: {key: value}}``.

    Raises:
        ConfigError: the file cannot be read, is not safe, well-formed XML, or has an ``<entry>``
            without ``table`` or ``key`` (named with its line).
    """
    path = Path(path)
    try:
        root = parse_xml(path.read_bytes(), source=str(path))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    tables: dict[str, dict[str, str]] = {}
    for entry in root.iter("{*}entry", "entry"):
        table, key = entry.get("table"), entry.get("key")
        if table is None or key is None:
            raise ConfigError(f"{path}:{entry.sourceline}: <entry> needs table and key")
        tables.setdefault(table, {})[key] = entry.text or ""
    return tables
