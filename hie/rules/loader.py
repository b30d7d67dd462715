"""Load rules, transforms and lookup tables from files: IRIS classes/XML or HIE YAML/JSON.

Lookup tables are kept as files: YAML/JSON ``{table: {key: value}}`` or an IRIS lookup-table
export (``<lookupTable><entry table="T" key="K">V</entry></lookupTable>``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from hie.config.bounded_yaml import BoundedLoader
from hie.errors import ConfigError
from hie.iris.dtl import load_dtl
from hie.iris.lookup import load_lookup_export
from hie.iris.rules import load_iris_rules
from hie.rules.model import RuleDefinition, rules_from_data
from hie.rules.transform import Transform, transform_from_data

__all__ = ["LookupTables", "load_lookup_tables", "load_rules", "load_transform"]


def _read_data(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.load(text, Loader=BoundedLoader)  # a SafeLoader, bounded
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON: {exc}") from exc


def load_rules(path: str | Path) -> RuleDefinition:
    """Rules from an IRIS ``.cls``/``.xml`` file or HIE YAML/JSON (by suffix)."""
    path = Path(path)
    if path.suffix.lower() in (".cls", ".xml"):
        return load_iris_rules(path)
    try:
        return rules_from_data(_read_data(path), source=str(path))
    except ConfigError as exc:
        line = _line_of_expression(path, str(exc))
        if line is None:
            raise
        reason = str(exc).removeprefix(f"{path}: ")
        raise ConfigError(f"{path}, line {line}: {reason}") from exc


def _line_of_expression(path: Path, error: str) -> int | None:
    """The line of ``path`` holding the expression an error quotes (``expression '...'``):
    a rule that does not compile is refused with where it is, not only what it says."""
    found = re.search(r"expression '(.+?)': ", error)
    if found is None:
        return None
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except OSError:
        return None
    return next((n for n, text in enumerate(lines, 1) if found.group(1) in text), None)


def load_transform(path: str | Path, *, allow_partial: bool = False) -> Transform:
    """A transform from an IRIS DTL ``.cls``/``.xml`` file or HIE YAML/JSON (by suffix)."""
    path = Path(path)
    if path.suffix.lower() in (".cls", ".xml"):
        return load_dtl(path, allow_partial=allow_partial)
    return transform_from_data(_read_data(path), source=str(path), allow_partial=allow_partial)


class LookupTables:
    """Named lookup tables (IRIS ``Lookup()`` / ``Exists()``)."""

    def __init__(self, tables: dict[str, dict[str, str]] | None = None) -> None:
        self.tables: dict[str, dict[str, str]] = {}
        for name, entries in (tables or {}).items():
            self.add(name, entries)

    def add(self, table: str, entries: dict[str, Any]) -> None:
        """Add (or extend) a table; keys and values are kept as text."""
        self.tables.setdefault(table, {}).update({str(k): str(v) for k, v in entries.items()})

    def get(self, table: str, key: str) -> str | None:
        """The value for ``key`` in ``table``, or None when either is missing."""
        return self.tables.get(table, {}).get(key)

    def load(self, path: str | Path) -> None:
        """Add the tables of one file (YAML, JSON or IRIS lookup-table XML)."""
        path = Path(path)
        if path.suffix.lower() == ".xml":
            for name, entries in load_lookup_export(path).items():
                self.add(name, entries)
            return
        data = _read_data(path)
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            raise ConfigError(f"{path}: lookup tables must be {{table: {{key: value}}}}")
        for name, entries in data.items():
            self.add(str(name), entries)


def load_lookup_tables(paths: Iterable[str | Path]) -> LookupTables:
    """Every table of every file, later files extending earlier ones."""
    tables = LookupTables()
    for path in paths:
        tables.load(path)
    return tables
