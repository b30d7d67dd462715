"""The IRIS expression language: operators, functions and virtual paths on real and synthetic
messages."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.rules.expressions import Context, compile_expression
from hie.rules.functions import iris_pattern
from hie.rules.loader import LookupTables
from hie.rules.paths import field_number

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "hl7"

ADT = (
    "MSH|^~\\&|EPIC|HOSP|LAB|HOSP|20240102103000||ADT^A08^ADT_A01|42|P|2.5.1\r"
    "PID|1||123^^^MRN~456^^^NHS||O\\T\\Brien^Mary~Smith^M||19800101|F\r"
    "OBX|1|NM|HR||72\r"
    "OBX|2|ST|NOTE||ok\r"
)


def ev(text: str, msg: str = ADT, **ctx: object) -> object:
    context = Context(source=HL7Message(msg), now=datetime(2024, 5, 6, 7, 8, 9), **ctx)  # type: ignore[arg-type]
    return compile_expression(text).evaluate(context)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('HL7.{MSH:MessageType.MessageCode} = "ADT"', True),
        ('HL7.{MSH:9.2} != "A01"', True),
        ('{MSH:9.2} \'= "A08"', False),
        ("HL7.{OBX(1):5} > 70 && HL7.{OBX(1):5} < 80", True),
        ("HL7.{OBX(1):5} >= 72 AND HL7.{OBX(1):5} <= 72", True),
        ('Document.{PID:PatientName(1).FamilyName} = "O&Brien"', True),
        ('HL7.{PID:PatientName().FamilyName} = "Smith"', True),
        ('HL7.{PID:PatientIdentifierList(2).IDNumber} = "456"', True),
        ('{PID-3(*).4} Contains "NH"', True),
        ('{PID-3(*).4} DoesNotContain "XX"', True),
        ('StartsWith({PID:5(1).2}, "Ma")', True),
        ('{MSH:9.2} In "A01,A04,A08"', True),
        ('{MSH:9.2} NotIn "A01,A04"', True),
        ('{PID:7} Matches "8N"', True),
        ('Matches({PID:7}, "4N1""-""2N")', False),
        ('{PID:7} DoesNotMatch "1.3A"', True),
        ('{MSH:3} Like "E_I%"', True),
        ('IntersectsList({PID-3().4}, "NHS,X")', True),
        ('NOT ({PID:8} = "M")', True),
        ('!({PID:8} = "M")', True),
        ('0 ! {PID:8} = "F"', True),
        ('{PID:8} = "M" || {PID:8} = "F"', True),
        ('{PID:8} = "M" OR 0', False),
        ('{PID:8} = "F" & 1', True),
        ('"say ""hi""" _ "!"', 'say "hi"!'),
        ("1 + 2 * 3", 7),
        ('Piece("a^b^c", "^", 2)', "b"),
        ('Length("abcd")', 4),
        ('ToUpper("ab") _ ToLower("CD")', "ABcd"),
        ('Contains("abc", "b") && StartsWith("abc", "a")', True),
        ("Round(2.456, 2)", 2.46),
        ("Min(3, 1, 2) _ Max(3, 1, 2)", "13"),
        ("CurrentDate()", "2024-05-06"),
        ("CurrentTime()", "07:08:09"),
        ('..ConvertDateTime({MSH:7}, "%q", "%q(1)")', "2024-01-02 10:30:00"),
        ("HL7.DocType", "ADT_A01"),
        ('(HL7.ParentId) != ("")', False),
    ],
)
def test_operators_and_functions(expr: str, expected: object) -> None:
    assert ev(expr) == expected


def test_source_and_lookup_tables() -> None:
    tables = LookupTables({"Sex": {"F": "Female"}})
    assert ev('Lookup("Sex", {PID:8})', tables=tables) == "Female"
    assert ev('Exists("Sex", "M")', tables=tables) is False
    assert ev('Source = "EMR"', source_name="EMR") is True


def test_infile_reads_one_value_per_line(tmp_path: Path) -> None:
    codes = tmp_path / "codes.txt"
    codes.write_text("A01\nA08\n")
    assert ev(f'{{MSH:9.2}} InFile "{codes}"') is True


@pytest.mark.parametrize(
    ("pattern", "text", "ok"),
    [
        ('3N1"-"4N', "555-1234", True),
        ("1.3A", "abcd", False),
        (".E", "", True),
        ("1U.L", "Mary", True),
        ('1(1"Y",1"N")', "N", True),
        ("2P", ".,", True),
    ],
)
def test_iris_patterns(pattern: str, text: str, ok: bool) -> None:
    assert bool(iris_pattern(pattern).match(text)) is ok


@pytest.mark.parametrize(
    ("bad", "column"), [("1 +", 4), ('"open', 1), ("Nope(1)", 1), ("(1", 3), ("{PID:NoField}", 1)]
)
def test_syntax_errors_name_expression_and_column(bad: str, column: int) -> None:
    with pytest.raises(ConfigError, match=f"column {column}"):
        compile_expression(bad)


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_named_paths_resolve_in_every_version(version: str) -> None:
    assert field_number("MSH", "MessageType", "MessageCode", None, version) == (9, 1, None)
    assert field_number("PID", "PatientIdentifierList", "IDNumber", None, version) == (3, 1, None)
    assert field_number("PID", "PatientName", "FamilyName", None, version)[:2] == (5, 1)
    msg = ADT.replace("2.5.1\r", f"{version}\r")
    assert ev("HL7.{PID:PatientIdentifierList(2).IDNumber}", msg) == "456"


def test_version_specific_names() -> None:
    # PID-3 was "Patient ID (Internal ID)" in 2.3 and "Patient Identifier List" later.
    assert field_number("PID", "PatientIDInternalID", None, None, "2.3")[0] == 3
    assert field_number("PID", "PatientIdentifierList", None, None, "2.6")[0] == 3


def test_groups_select_segments_by_position() -> None:
    oru = "MSH|^~\\&|A|B|C|D|1||ORM^O01|1|P|2.5\rPID|1||9\rORC|NW|1\rOBR|1||A\rORC|NW|2\rOBR|1||B\r"
    assert ev("HL7.{ORCgrp(2).OBRgrp.OBR:FillerOrderNumber}", oru) == "B"
    assert ev("HL7.{PIDgrp.PID:3}", oru) == "9"


@pytest.mark.skipif(not SAMPLES.exists(), reason="shared/samples/hl7 is not present")
def test_real_samples() -> None:
    adt = (SAMPLES / "hapi-hl7v2" / "ADT_A01.txt").read_text()
    assert ev("HL7.{PID:PatientName(1).FamilyName}", adt) != ""
    assert ev('HL7.{MSH:MessageType.TriggerEvent} = "A01"', adt) is True
    oru = (SAMPLES / "linuxforhealth-hl7v2-fhir" / "ORU-multiline-short.hl7").read_text()
    assert ev('HL7.{MSH:9.1} = "ORU"', oru) is True
    assert isinstance(ev("HL7.{OBX():ObservationValue}", oru), list)
