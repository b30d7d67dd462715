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
    ("bad", "column"),
    [("1 +", 4), ('"open', 1), ("Foo.Nope(1)", 1), ("(1", 3), ("{PID:NoField}", 1)],
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


# The function set (Ens.Util.FunctionSet): "Utility Functions for Use in Productions" in
# Developing Business Rules (EBUS_utility_functions) documents each one; Piece() takes "*" and
# "*-1" as text, In() names a custom separator or brackets after ",,", Like() an escape after
# "%%", Pad() pads right for a positive width and left for a negative one.
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('In("a","a|b|c,,|")', True),
        ('In("a","<a><b><c>,,<>")', True),
        ('In("d","<a><b><c>,,<>")', False),
        ('Like("%SYSVAR1_and more","#%SYSVAR_#_%%%#")', True),
        ('Like("%SYSVAR12and more","#%SYSVAR_#_%%%#")', False),
        ('Piece("A,B,C,D,E,F")', "A"),
        ('Piece("A,B,C,D,E,F",",",3)', "C"),
        ('Piece("A,B,C,D,E,F",",","*")', "F"),
        ('Piece("A,B,C,D,E,F",",","*-1","*")', "E,F"),
        ('Piece("a^b^c","^",2,3)', "b^c"),
        ('Piece("a^b","^",0)', ""),
        ('Pad("abc",5,"x")', "abcxx"),
        ('Pad("abc",-5,"x")', "xxabc"),
        ('Pad("abc",5) _ "|"', "abc  |"),
        ('Pad("abcdef",3)', "abcdef"),
        ('Strip("abc123","*N")', "abc"),
        ('Strip("  abc  ","<>W")', "abc"),
        ('Strip("a-b-c","*","-")', "abc"),
        ('SubString("abcdefghij",1,5)', "abcde"),
        ('SubString("abcdefghij",4)', "defghij"),
        ('Length("a,b,c",",")', 3),
        ('Length("",",")', 1),
        ('ReplaceStr("xabcx","abc","ABC")', "xABCx"),
        ('Translate("abcabc","abc","ABC")', "ABCABC"),
        ('RegexMatch("abc123","[a-z]+\\d+")', True),
        ('RegexMatch("abc123x","[a-z]+\\d+")', False),
        ('If(1,"yes","no") _ If(0,"yes","no")', "yesno"),
        ("Not(0)", True),
        ('DoesNotStartWith("ABCD","AB")', False),
        ('DoesNotIntersectList("<a><b>","<c><d>")', True),
        ("Round(2.456)", 2),
        ('ConvertDateTime("2024-01-02 10:30:00")', "2024-01-02 10:30:00"),
        ('ConvertDateTime("20240102103000","%Y%m%d%H%M%S")', "2024-01-02 10:30:00"),
        ('ConvertDateTime("20240102","%Y%m%d","%#m/%#d/%Y")', "1/2/2024"),
        (
            'ConvertDateTime("02 Jan 2024 1:05PM","%d %b %Y %#I:%M%p","%A %B %d %H:%M")',
            "Tuesday January 02 13:05",
        ),
        ('ConvertDateTime("20240102","%Y%m%d","%f_%Y.txt","in")', "in_2024.txt"),
        ('ConvertDateTime("2024-13-45","%Y-%m-%d","%Y")', "2024-13-45"),
        ("CurrentDateTime()", "2024-05-06 07:08:09"),
        ('CurrentDateTime("%H")', "07"),
        ('CurrentDateTime("%Y%m%d%H%M%S")', "20240506070809"),
    ],
)
def test_function_set_follows_the_utility_function_reference(expr: str, expected: object) -> None:
    assert ev(expr) == expected


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        # defaultOnEmptyInput, per the Lookup() table: 0 "" for any empty input; 1 the default
        # when only the table is empty; 2 when only the key is empty; 3 for either.
        ('Lookup("Sex","F","D")', "Female"),
        ('Lookup("Sex","X","D")', "D"),
        ('Lookup("Sex","","D")', ""),
        ('Lookup("","F","D")', ""),
        ('Lookup("Sex","","D",1)', ""),
        ('Lookup("","F","D",1)', "D"),
        ('Lookup("","F","D",2)', ""),
        ('Lookup("Sex","","D",2)', "D"),
        ('Lookup("","","D",3)', "D"),
        ('Lookup("Sex","","D",3)', "D"),
    ],
)
def test_lookup_default_on_empty_input(call: str, expected: str) -> None:
    assert ev(call, tables=LookupTables({"Sex": {"F": "Female"}})) == expected


def test_dtl_and_rule_spellings_reach_the_same_function() -> None:
    tables = LookupTables({"Sex": {"F": "Female"}})
    spellings = [
        'Lookup("Sex", {PID:8})',
        '..Lookup("Sex", {PID:8})',
        '##class(Ens.Util.FunctionSet).Lookup("Sex", {PID:8})',
        '##class(Ens.Rule.FunctionSet).Lookup("Sex", {PID:8})',
    ]
    for text in spellings:
        assert ev(text, tables=tables) == "Female", text
        assert compile_expression(text).class_calls == []


def test_class_method_calls_run_what_the_mapping_supplies() -> None:
    expr = compile_expression(
        '##class(Demo.Util.Helper).HL7CurrentDateTime() _ "/" _ ##CLASS(Some.Util).X({PID:8}, 2)'
    )
    assert expr.class_calls == ["Demo.Util.Helper.HL7CurrentDateTime", "Some.Util.X"]
    functions = {
        "Demo.Util.Helper.HL7CurrentDateTime": lambda: "20240506070809",
        "Some.Util.X": lambda a, b: a * b,  # receives the values, not the context
    }
    context = Context(source=HL7Message(ADT), functions=functions)
    assert expr.evaluate(context) == "20240506070809/FF"


def test_an_unmapped_class_method_names_the_mapping_file_section() -> None:
    expr = compile_expression('"x" _ ##class(Demo.Util.Helper).HL7CurrentDateTime()')
    message = (
        "##class(Demo.Util.Helper).HL7CurrentDateTime() is not mapped to Python: add it to the "
        "functions: section of the IRIS mapping file"
    )
    with pytest.raises(ConfigError) as raised:
        expr.evaluate(Context())
    assert str(raised.value) == message


def test_a_dtl_class_method_outside_the_function_set_is_looked_up_by_name() -> None:
    expr = compile_expression("..FormatName({PID:5.1}, {PID:5.2}) _ ..Pad(1, 3)")
    assert expr.class_calls == ["..FormatName"]
    functions = {"..FormatName": lambda last, first: f"{first} {last}"}
    context = Context(source=HL7Message(ADT), functions=functions)
    assert expr.evaluate(context) == "Mary O&Brien1  "
    with pytest.raises(ConfigError, match=r"^\.\.FormatName\(\) is not mapped to Python"):
        expr.evaluate(Context(source=HL7Message(ADT)))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('$P(HL7.{MSH:9},"^",2)', "A08"),
        ("$E({PID:7},1,4) = 1980", True),
        ('$CASE({PID:8}, "M":"Male", "F":"Female", :"Unknown")', "Female"),
        ("$G(source.{PID:5.1})", "O&Brien"),
        ('$G({PID:99},"none")', "none"),
        ("$D(HL7.{PID:8})", 1),
        ("$D(HL7.{PID:99})", 0),
        ("$LL(HL7.{PID:3().4})", 2),
        ('$LF(HL7.{PID:3().4},"NHS")', 2),
        ('$ZCVT(HL7.{PID:5(2).1},"U") _ $ZDATE($ZDATEH({PID:7},8),3)', "SMITH1980-01-01"),
        ('$S({PID:8}="M":1,{PID:8}="F":2,1:0) + 1', 3),
    ],
)
def test_dollar_functions_read_message_paths(expr: str, expected: object) -> None:
    assert ev(expr) == expected


def test_dollar_functions_with_dtl_variables() -> None:
    variables = {"tValue": "x^y", "k1": 2}
    assert ev('$P(tValue,"^",k1) _ $G(tOther,"-")', variables=variables) == "y-"


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ("Round()", r"Round\(\) takes 1 to 2 arguments, not 0 at column 1"),
        ('1 + ..SubString("a",1,2,3)', r"SubString\(\) takes 1 to 3 arguments, not 4 at column 5"),
        ("##class(Ens.Util.FunctionSet).Pad()", r"Pad\(\) takes 1 to 3 arguments, not 0"),
    ],
)
def test_function_set_calls_with_the_wrong_number_of_arguments_fail_to_compile(
    bad: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        compile_expression(bad)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ObjectScript's contains, follows and sorts-after, and their negations
        ('x["WORLD"', True),
        ('x["world"', False),
        ('x\'["WORLD"', False),
        ('"B"]"A"', True),
        ('"A"]"B"', False),
        ('"10"]"9"', False),  # follows compares character codes: "1" < "9"
        ("10]]9", True),  # sorts after puts numbers in numeric order
        ('"A"]]10', True),  # and strings after every number
        ("9]]10", False),
        ('"b"\']"c"', True),
    ],
)
def test_objectscript_string_operators(text: str, expected: bool) -> None:
    ctx = Context(variables={"x": "HELLO WORLD"})
    assert compile_expression(text).is_true(ctx) is expected


def test_a_bare_unknown_function_is_a_user_function_set_method_mapped_at_run_time() -> None:
    # IRIS rules call the methods of a user's Ens.Rule.FunctionSet subclass by their bare name.
    expr = compile_expression("WeekEnd()=1 || IsHoliday(HL7.{MSH:7})")
    assert expr.class_calls == ["..WeekEnd", "..IsHoliday"]
    ctx = Context(functions={"..WeekEnd": lambda: 0, "..IsHoliday": lambda day: day == "20250101"})
    ctx.source = HL7Message("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5\r")
    assert expr.is_true(ctx)
    with pytest.raises(ConfigError, match=r"WeekEnd\(\) is not mapped to Python"):
        compile_expression("WeekEnd()").evaluate(Context())


def test_iris_shortened_schema_names_resolve_by_a_unique_prefix() -> None:
    # IRIS's 2.5 schema names XPN.3 "SecondandFurtherGivenNamesor" (cut short).
    assert field_number("PID", "PatientName", "SecondandFurtherGivenNamesor", None, "2.5") == (
        5,
        3,
        None,
    )
    with pytest.raises(ConfigError):  # too short to be taken for a cut-off name
        field_number("PID", "PatientName", "Se", None, "2.5")


def test_message_properties_still_read_and_deeper_properties_of_text_are_empty() -> None:
    assert ev('HL7.DocType _ "|" _ Document.Name') == "ADT_A01|ADT_A08"
    assert ev("HL7.DocType.Anything") == ""


def test_a_dotted_name_that_is_not_a_message_reads_a_variable_not_an_error() -> None:
    # Rules of business processes name their context's properties (CCRewardResp.Count).
    assert ev("Resp.Count + 1", variables={"Resp": {"Count": 2}}) == 3
    assert ev('Unknown.Property = ""') is True


def test_get_value_at_and_output_to_string_on_the_routed_message() -> None:
    assert ev('Document.GetValueAt("PID:PatientName(2).FamilyName")') == "Smith"
    assert ev("$L(HL7.OutputToString(),$C(13))") == 5  # four segments, each ended by CR
