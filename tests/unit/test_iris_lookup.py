"""IRIS lookup-table exports load as HIE lookup tables; a broken entry names its line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hie.errors import ConfigError
from hie.rules.loader import LookupTables, load_lookup_tables

EXPORT = """<?xml version="1.0" encoding="UTF-8"?>
<lookupTable>
<entry table="Sex" key="F">Female</entry>
<entry table="Sex" key="M">Male</entry>
<entry table="Ward" key="4B">Cardiology</entry>
<entry table="Sex" key="U"></entry>
</lookupTable>
"""


def test_a_lookup_export_extends_the_yaml_tables(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("Sex: {F: F, O: Other}\n", encoding="utf-8")
    (tmp_path / "tables.xml").write_text(EXPORT, encoding="utf-8")
    tables = load_lookup_tables([tmp_path / "base.yaml", tmp_path / "tables.xml"])
    assert tables.tables == {
        "Sex": {"F": "Female", "O": "Other", "M": "Male", "U": ""},
        "Ward": {"4B": "Cardiology"},
    }


def test_an_entry_without_a_key_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "tables.xml"
    path.write_text(EXPORT.replace('key="4B"', ""), encoding="utf-8")
    where = re.escape(f"{path}:5:")
    with pytest.raises(ConfigError, match=rf"^{where} <entry> needs table and key"):
        LookupTables().load(path)
