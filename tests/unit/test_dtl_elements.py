"""DTL elements as IRIS transforms use them: each construct on a small synthetic transform."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.iris.dtl import parse_dtl
from hie.rules.loader import LookupTables
from hie.rules.transform import Transform, TransformRegistry

ORU = HL7Message(
    "MSH|^~\\&|LAB|HOSP|EMR|HOSP|20240101120000||ORU^R01|MSG1|P|2.5\r"
    "PID|1||123~456||Doe^Jane||19800101|F\r"
    "ORC|RE|O1\rOBR|1||A1|CBC\rOBX|1|NM|WBC||5\rOBX|2|NM|RBC||4\rNTE|1||first\r"
    "ORC|RE|O2\rOBR|2||A2|BMP\rOBX|1|NM|NA||140\rOBX|2|ST|CMT||ok\r"
)


#: The opening of an HL7-to-HL7 transform that starts from a copy of the source.
COPY = "<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message' create='copy'>"


def dtl(body: str, *, create: str = "copy", target: str = "EnsLib.HL7.Message") -> Transform:
    text = (
        f"<transform sourceClass='EnsLib.HL7.Message' targetClass='{target}' create='{create}'>\n"
        f"{body}\n</transform>"
    )
    return parse_dtl(text, source="t.dtl")


def lines(msg: HL7Message) -> list[str]:
    return [line for line in msg.to_er7().split("\r") if line]


def each(msg: HL7Message, segment: str, field: int) -> list[str]:
    """The field of every such segment, empty ones too (``get_all`` leaves those out)."""
    count = msg.segment_names().count(segment)
    return [msg.get(f"{segment}({n})-{field}") for n in range(1, count + 1)]


# -- ignored and logged elements ---------------------------------------------------------------


def test_annotations_and_comments_are_ignored_wherever_they_are() -> None:
    t = dtl(
        "<annotation>whole transform</annotation>"
        "<comment><annotation>a note</annotation></comment>"
        "<assign value='\"X\"' property='target.{PID:5.1}'><annotation>why</annotation></assign>"
        "<if condition='1'><annotation>in if</annotation><true><annotation>t</annotation>"
        "<assign value='\"Y\"' property='target.{PID:5.2}'/></true></if>"
        "<foreach property='source.{OBX()}' key='k1'><annotation>loop</annotation>"
        "<assign value='k1' property='target.{OBX(k1):4}'/></foreach>"
    )
    out = t.apply(ORU)
    assert out.get("PID-5") == "X^Y"
    assert out.get_all("OBX-4") == ["1", "2", "3", "4"]
    assert [a.type for a in t.actions] == ["comment", "assign", "if", "foreach"]


def test_trace_logs_its_evaluated_value_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    t = dtl('<trace value=\'"patient " _ source.{PID:3(1)} _ " has " _ (2 + 1)\'/>')
    with caplog.at_level(logging.DEBUG, logger="hie.rules.transform"):
        t.apply(ORU)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "transform : patient 123 has 3")
    ]


# -- break, switch ----------------------------------------------------------------------------


def test_break_leaves_only_the_innermost_foreach() -> None:
    t = dtl(
        "<foreach property='source.{ORCgrp()}' key='k1'>"
        "<foreach property='source.{ORCgrp(k1).OBX()}' key='k2'>"
        "<if condition='source.{ORCgrp(k1).OBX(k2):2}=\"ST\" || (k2 = 1 &amp;&amp; k1 = 1)'>"
        "<true><break/></true></if>"
        "<assign value='\"seen\"' property='target.{ORCgrp(k1).OBX(k2):4}'/>"
        "</foreach></foreach>"
    )
    out = t.apply(ORU)
    # group 1: OBX 1 breaks, so OBX 2 is never reached (a "continue" would have seen it);
    # group 2 still runs: OBX 1 seen, OBX 2 (ST) breaks
    assert each(out, "OBX", 4) == ["", "", "seen", ""]


def test_break_outside_a_foreach_ends_the_transform() -> None:
    t = dtl(
        "<assign value='\"1\"' property='target.{PID:1}'/><break/>"
        "<assign value='\"never\"' property='target.{PID:5}'/>"
    )
    out = t.apply(ORU)
    assert out.get("PID-1") == "1" and out.get("PID-5.1") == "Doe"


@pytest.mark.parametrize(
    ("sex", "expected"), [("F", "female"), ("M", "male"), ("U", "other"), ("", "other")]
)
def test_switch_runs_the_first_true_case_else_default(sex: str, expected: str) -> None:
    t = dtl(
        "<switch><annotation>by sex</annotation>"
        "<case condition='source.{PID:8}=\"F\"'>"
        "<assign value='\"female\"' property='target.{PID:8}'/></case>"
        '<case condition=\'source.{PID:8}="F" || source.{PID:8}="M"\'>'
        "<assign value='\"male\"' property='target.{PID:8}'/></case>"
        "<default><assign value='\"other\"' property='target.{PID:8}'/></default></switch>"
    )
    msg = ORU.copy()
    msg.set("PID-8", sex)
    assert t.apply(msg).get("PID-8") == expected


def test_switch_without_a_matching_case_or_default_does_nothing() -> None:
    t = dtl(
        "<switch><case condition='0'><assign value='\"x\"' property='target.{PID:8}'/>"
        "</case></switch>"
    )
    assert t.apply(ORU).get("PID-8") == "F"


def test_switch_holding_something_else_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"^t\.dtl:2: <switch> holds <assign>"):
        dtl("<switch><assign value='1' property='x'/></switch>")


# -- foreach ----------------------------------------------------------------------------------


def test_foreach_over_segments_repetitions_and_nested_groups() -> None:
    t = dtl(
        "<foreach property='source.{PIDgrp.ORCgrp()}' key='k1'>"
        "<foreach property='source.{PIDgrp.ORCgrp(k1).OBXgrp()}' key='k2'>"
        "<assign value='source.{PIDgrp.ORCgrp(k1).OBXgrp(k2).OBX:5} _ \"@\" _ k1 _ k2' "
        "property='target.{PIDgrp.ORCgrp(k1).OBXgrp(k2).OBX:5}'/></foreach></foreach>"
        "<foreach property='source.{PID:3()}' key='k3'>"
        "<assign value='source.{PID:3(k3)} _ \"-\" _ k3' property='target.{PID:3(k3)}'/></foreach>"
        "<foreach property='source.{OBX()}' key='k1'>"
        "<assign value='k1' property='target.{OBX(k1):1}'/></foreach>"
    )
    out = t.apply(ORU)
    assert out.get_all("OBX-5") == ["5@11", "4@12", "140@21", "ok@22"]
    assert out.get_all("OBX-1") == ["1", "2", "3", "4"]
    assert out.get_raw("PID-3(*)") == "123-1~456-2"


def test_foreach_builds_new_segments_in_a_new_target() -> None:
    t = dtl(
        "<assign value='source.{MSH}' property='target.{MSH}'/>"
        "<foreach property='source.{OBX()}' key='k1'>"
        "<assign value='source.{OBX(k1):3} _ \"=\" _ source.{OBX(k1):5}' "
        "property='target.{OBX(k1):5}'/></foreach>",
        create="new",
    )
    assert lines(t.apply(ORU))[1:] == [
        "OBX|||||WBC=5",
        "OBX|||||RBC=4",
        "OBX|||||NA=140",
        "OBX|||||CMT=ok",
    ]


# -- assign actions on HL7 ---------------------------------------------------------------------


def test_assign_actions_on_fields_and_repetitions() -> None:
    t = dtl(
        "<assign value='\"789\"' property='target.{PID:3()}' action='append'/>"
        "<assign value='\"000\"' property='target.{PID:3}' action='insert' key='1'/>"
        "<assign property='target.{PID:3}' action='remove' key='2'/>"
        "<assign property='target.{PID:8}' action='clear'/>"
        "<assign value='\"-X\"' property='target.{PID:5.1}' action='append'/>"
        "<assign property='target.{PID:7}' action='remove'/>"
    )
    out = t.apply(ORU)
    assert out.get_raw("PID-3(*)") == "000~456~789"
    assert out.get("PID-8") == "" and out.get("PID-7") == ""
    assert out.get("PID-5") == "Doe-X^Jane"


def test_assign_actions_on_whole_segments() -> None:
    t = dtl(
        "<assign value='\"NTE|2||appended\"' property='target.{NTE}' action='append'/>"
        "<assign value='\"NTE|0||inserted\"' property='target.{NTE}' action='insert' key='1'/>"
        "<assign property='target.{ORC(2)}' action='remove'/>"
        "<assign property='target.{OBR()}' action='clear'/>"
    )
    names = [line[:3] for line in lines(t.apply(ORU))]
    assert names == ["MSH", "PID", "ORC", "OBX", "OBX", "NTE", "NTE", "NTE", "OBX", "OBX"]
    out = t.apply(ORU)
    assert out.get_all("NTE-3") == ["inserted", "first", "appended"]


# -- subtransform ------------------------------------------------------------------------------


def test_subtransform_gets_aux_and_its_result_lands_where_target_obj_says() -> None:
    registry = TransformRegistry()
    sub = parse_dtl(
        f"{COPY}<assign value='aux' property='target.{{PID:5.1}}'/></transform>",
        source="sub.dtl",
        registry=registry,
    )
    sub.name = "Demo.Sub"
    registry.add(sub)
    main = parse_dtl(
        f"{COPY}"
        "<assign value='\"kept\"' property='target.{PID:6}'/>"
        "<subtransform class='Demo.Sub' sourceObj='source' targetObj='tSub' "
        "aux='\"AUX-\" _ source.{PID:3(1)}'/>"
        "<assign value='tSub' property='tCopy'/>"
        "<if condition='tSub = \"\"'><true>"
        "<assign value='\"no\"' property='target.{PID:9}'/></true></if></transform>",
        source="main.dtl",
        registry=registry,
    )
    out = main.apply(ORU)
    assert out.get("PID-6") == "kept" and out.get("PID-9") == ""  # tSub holds a message
    whole = parse_dtl(
        f"{COPY}"
        "<assign value='\"lost\"' property='target.{PID:6}'/>"
        "<subtransform class='Demo.Sub' sourceObj='source' targetObj='target' aux='\"WHOLE\"'/>"
        "</transform>",
        source="whole.dtl",
        registry=registry,
    )
    out = whole.apply(ORU)
    assert out.get("PID-5") == "WHOLE^Jane"  # the subtransform's result is the target now
    assert out.get("PID-6") == ""


def test_subtransform_result_in_a_variable_is_readable() -> None:
    registry = TransformRegistry()
    sub = parse_dtl(
        "<transform sourceClass='EnsLib.HL7.Message' targetClass='Demo.Flat' create='new'>"
        "<assign value='aux _ source.{PID:5.1}' property='target.Name'/></transform>",
        source="sub.dtl",
    )
    sub.name = "Demo.Flat"
    registry.add(sub)
    main = parse_dtl(
        f"{COPY}"
        "<subtransform class='Demo.Flat' targetObj='tFlat' aux='\"Dr \"'/>"
        '<code>Set target.{PID:9} = $GET(tFlat) \'= ""</code>'
        "</transform>",
        source="main.dtl",
        registry=registry,
    )
    out = main.apply(ORU)
    assert sub.apply(ORU, aux="Dr ").model_dump() == {"Name": "Dr Doe"}
    assert out.get("PID-9") == "1"


# -- code --------------------------------------------------------------------------------------

CODE = """<code><![CDATA[
 // a comment line
 Set tName = source.{PID:5.1}, tCount = 0 ; counted below
 #; an old-style comment
 Set (tA, tB) = "same"
 If tName = "Doe" {
   Set target.{PID:5.2} = "JANE"
 } ElseIf tName = "Roe" {
   Set target.{PID:5.2} = "RICHARD"
 } Else {
   Set target.{PID:5.2} = "?"
 }
 /* a block
    comment */
 Set:tName'="" target.{PID:7} = "2000" S tCount=tCount+1
 $$$TRACE("traced "_tName)
 $$$LOGINFO("info "_tCount)
 $$$LOGWARNING("warn")
]]></code>
<assign value='tCount + 1' property='tCount'/>
<assign value='tCount _ tA _ tB' property='target.{PID:1}'/>"""


def test_code_subset_runs_and_shares_variables_with_assign(
    caplog: pytest.LogCaptureFixture,
) -> None:
    t = dtl(CODE)
    with caplog.at_level(logging.DEBUG, logger="hie.rules.transform"):
        out = t.apply(ORU)
    assert out.get("PID-5") == "Doe^JANE" and out.get("PID-7") == "2000"
    assert out.get("PID-1") == "2samesame"
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("DEBUG", "transform : traced Doe"),
        ("INFO", "transform : info 1"),
        ("WARNING", "transform : warn"),
    ]
    other = ORU.copy()
    other.set("PID-5.1", "Roe")
    assert t.apply(other).get("PID-5.2") == "RICHARD"
    other.set("PID-5.1", "")
    assert t.apply(other).get("PID-5.2") == "?" and t.apply(other).get("PID-7") == "19800101"


def test_quit_in_code_leaves_the_foreach_it_is_in() -> None:
    t = dtl(
        "<foreach property='source.{OBX()}' key='k1'>"
        '<code>Quit:k1=2  Set target.{OBX(k1):4} = "v"_k1</code>'
        "</foreach>"
        '<code>If 1 { Quit } Set target.{PID:1} = "unreached"</code>'
    )
    out = t.apply(ORU)
    # Quit at OBX 2 leaves the loop: OBX 3 and 4 are never set (a "continue" would set them)
    assert each(out, "OBX", 4) == ["v1", "", "", ""]
    assert out.get("PID-1") == "1"


def test_code_calls_helper_classes_and_dollar_functions() -> None:
    t = dtl(
        "<code><![CDATA[\n"
        ' Set tId = $PIECE(source.{PID:3(2)}, "5", 1)\n'
        ' Do ##class(Demo.Util.Audit).Record(tId, "seen")\n'
        " Set target.{PID:18} = ##class(Demo.Util.Helper).Account(tId) _ ..Suffix()\n"
        "]]></code>"
    )
    calls: list[tuple[Any, ...]] = []
    t.functions = {
        "Demo.Util.Audit.Record": lambda *args: calls.append(args),
        "Demo.Util.Helper.Account": lambda value: f"ACC{value}",
        "..Suffix": lambda: "-Z",
    }
    assert t.apply(ORU).get("PID-18") == "ACC4-Z"
    assert calls == [("4", "seen")]
    assert sorted(t.class_calls) == [
        "..Suffix",
        "Demo.Util.Audit.Record",
        "Demo.Util.Helper.Account",
    ]
    assert t.class_calls["Demo.Util.Audit.Record"] == [
        't.dtl:4: ##class(Demo.Util.Audit).Record(tId, "seen")'
    ]


def test_an_unmapped_helper_fails_when_it_runs_naming_the_call() -> None:
    t = dtl("<assign value='##class(Demo.Util.Helper).Now()' property='target.{MSH:7}'/>")
    with pytest.raises(ConfigError, match=r"##class\(Demo.Util.Helper\).Now\(\) is not mapped"):
        t.apply(ORU)


def test_lookup_tables_given_to_the_transform_are_read() -> None:
    t = dtl("<assign value='..Lookup(\"Sex\", source.{PID:8}, \"U\")' property='target.{PID:8}'/>")
    assert t.apply(ORU).get("PID-8") == "U"
    t.tables = LookupTables({"Sex": {"F": "Female"}})
    assert t.apply(ORU).get("PID-8") == "Female"


@pytest.mark.parametrize(
    ("code", "line", "statement", "instead"),
    [
        ("\n Set x = 1\n Write x\n", 5, "Write x", "log with $$$TRACE(...)"),
        ("\n\n For i=1:1:3 { Set x = i }", 5, "For i=1:1:3 { Set x = i }", "loop with <foreach>"),
        (" Set ^Global(1) = 2", 3, "Set ^Global(1) = 2", "write it as DTL actions"),
        (" If x Set y = 1", 3, "If x Set y = 1", "write If condition { ... } (braces)"),
        (" Do obj.Save()", 3, "Do obj.Save()", "move it into a class method"),
        (' Quit $$$ERROR(5001, "x")', 3, 'Quit $$$ERROR(5001, "x")', "use Quit (no value)"),
        (" $$$LOGSTATUS(sc)", 3, "$$$LOGSTATUS(sc)", "functions: section of hie-mapping.yaml"),
        (" If 1 {\n Set x = 1\n", 3, "If 1 {", "close it"),
    ],
)
def test_code_outside_the_subset_names_file_line_statement_and_what_to_write(
    code: str, line: int, statement: str, instead: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        dtl(f"<assign value='1' property='tX'/>\n<code>{code}</code>")
    message = str(refused.value)
    offset = line - 3 + 1
    assert message.startswith(f"t.dtl:{line}: <code> at line 3, its line {offset}: {statement!r} ")
    assert instead in message


def test_allow_partial_skips_code_it_cannot_run_and_runs_the_rest() -> None:
    text = (
        f"{COPY}"
        "<code>Set tX = 1 Kill tX</code><assign value='\"ok\"' property='target.{PID:1}'/>"
        "</transform>"
    )
    t = parse_dtl(text, source="t.dtl", allow_partial=True)
    assert len(t.skipped) == 1 and t.skipped[0].startswith("<code> at t.dtl:1: t.dtl:1: <code>")
    assert "'Kill tX' uses 'Kill'" in t.skipped[0]
    assert t.apply(ORU).get("PID-1") == "ok"


def test_code_collection_methods_become_assign_actions() -> None:
    t = dtl(
        "<code><![CDATA[\n"
        ' Do target.Items.Insert("b"), target.Items.InsertAt("a", 1)\n'
        ' Do target.Items.Insert("z"), target.Items.RemoveAt(3)\n'
        ' Do target.Codes.SetAt("v", "k"), target.Codes.SetAt("w", "j")\n'
        ' Do target.Codes.RemoveAt("k"), target.Gone.Insert(1), target.Gone.Clear()\n'
        "]]></code>",
        target="Demo.Anything",
        create="new",
    )
    assert [(a.type, a.action, a.property, a.key) for a in t.actions[0].translated()][:4] == [
        ("assign", "insert", "target.Items", ""),
        ("assign", "insert", "target.Items", "1"),
        ("assign", "insert", "target.Items", ""),
        ("assign", "remove", "target.Items", "3"),
    ]
    assert t.apply(ORU).model_dump() == {"Items": ["a", "b"], "Codes": {"j": "w"}, "Gone": []}


def test_an_element_dtl_does_not_have_says_what_to_write() -> None:
    with pytest.raises(ConfigError) as refused:
        dtl("<assign value='1' property='tX'/>\n<xslt/>")
    assert str(refused.value).startswith("t.dtl:3: <xslt> is not a DTL action; write it with ")
    assert "<assign>, <break>, <code>" in str(refused.value)


def test_assigning_to_the_source_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^t\.dtl:2: 'source\.\{PID:5\}' is not something DTL"):
        dtl("<assign value='1' property='source.{PID:5}'/>")


def test_a_method_call_where_a_property_belongs_says_what_to_write() -> None:
    with pytest.raises(ConfigError) as refused:
        dtl("<foreach property='source.GetValueAt(\"PID:5\")' key='k1'></foreach>")
    assert str(refused.value) == (
        "t.dtl:2: 'source.GetValueAt(\"PID:5\")': GetValueAt() is not a method HIE runs here; "
        "write source.{path} (a virtual property) instead"
    )


# -- IRIS forms read as what they mean ----------------------------------------------------------


def open_dtl(body: str) -> Transform:
    """A transform between two classes defined nowhere: open objects both."""
    text = f"<transform sourceClass='Demo.Open.In' targetClass='Demo.Open.Out'>{body}</transform>"
    return parse_dtl(text, source="t.dtl")


def test_parentheses_after_a_collection_in_a_foreach_run_over_it() -> None:
    t = open_dtl(
        "<foreach property='source.Records()' key='k1'>"
        "<assign value='source.Records.(k1).Name' property='target.Names.(k1)'/></foreach>"
        "<assign value='source.Records.Count()' property='target.Total'/>"
    )
    assert t.apply({"Records": [{"Name": "a"}, {"Name": "b"}]}) == {
        "Names": ["a", "b"],
        "Total": 2,
    }


def test_percent_id_reads_empty_and_percent_source_is_an_ordinary_property() -> None:
    text = (
        "<transform sourceClass='Demo.Rec' targetClass='Demo.Out' create='new'>"
        "<assign value='source.%Source' property='target.%Source'/>"
        "<assign value='\"id:\" _ source.%Id() _ target.%Id()' property='target.Id'/>"
        "<trace value='target.%Id()'/></transform>"
    )
    t = parse_dtl(text, source="t.dtl")
    assert t.apply({"%Source": "in.csv"}) == {"%Source": "in.csv", "Id": "id:"}


def test_an_assign_to_a_process_setting_is_ignored_and_listed() -> None:
    t = dtl(
        "<assign value='950000' property='$ZSTORAGE'/><assign value='1' property='target.{PID:1}'/>"
    )
    assert t.skipped == [
        "<assign> at t.dtl:2: $ZSTORAGE is an IRIS process setting HIE does not have (no storage "
        "or other process limits); ignored"
    ]
    assert t.apply(ORU).get("PID-1") == "1"


def test_actions_iris_has_switched_off_are_left_out() -> None:
    t = dtl(
        "<assign value='\"off\"' property='target.{PID:1}' disabled='1'/>"
        "<code disabled='1'>Write \"never compiled\"</code>"
        "<assign value='\"on\"' property='target.{PID:2}'/>"
    )
    assert [a.type for a in t.actions] == ["assign"]
    assert t.apply(ORU).get("PID-1") == "1" and t.apply(ORU).get("PID-2") == "on"


def test_set_at_and_property_setters_as_values_change_the_target() -> None:
    t = dtl(
        '<assign value=\'target.HTTPHeaders.SetAt("application/json","CONTENT-TYPE")\' '
        "property='tSC'/>"
        "<assign value='target.StreamSet(source.{PID:5.1})' property='tSC2'/>"
        "<assign value='tSC _ tSC2' property='target.OriginalFilename'/>",
        target="EnsLib.HTTP.GenericMessage",
        create="new",
    )
    out = t.apply(ORU)
    assert type(out).__qualname__ == "EnsLib.HTTP.GenericMessage"  # a class HIE knows
    assert out.HTTPHeaders == {"CONTENT-TYPE": "application/json"}  # type: ignore[attr-defined]
    assert (out.Stream, out.OriginalFilename) == ("Doe", "11")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"EnsLib\.HTTP\.GenericMessage has no property 'Body'"):
        dtl("<assign value='1' property='target.Body'/>", target="EnsLib.HTTP.GenericMessage")


def test_an_assign_with_a_key_sets_that_element_of_a_collection() -> None:
    t = dtl(
        "<assign value='source.{PID:3(1)}' property='target.Data' key='\"id\"'/>"
        "<assign value='\"x\"' property='target.Data' key='\"other\"'/>"
        "<assign value='\"b\"' property='target.List.(1)'/>"
        "<assign value='\"B\"' property='target.List' key='1'/>",
        target="Demo.Open.Out",
        create="new",
    )
    assert t.apply(ORU) == {"Data": {"id": "123", "other": "x"}, "List": ["B"]}


def test_a_bare_source_as_a_value_is_the_whole_message() -> None:
    t = open_dtl(
        "<assign value='source' property='target'/>"
        "<assign value='\"changed\"' property='target.Name'/>"
        "<assign value='source' property='tCopy'/>"
        "<assign value='tCopy.Name' property='target.Was'/>"
    )
    source = {"Name": "kept"}
    assert t.apply(source) == {"Name": "changed", "Was": "kept"}
    assert source == {"Name": "kept"}


def test_quoted_and_non_ascii_property_names_are_assigned() -> None:
    t = dtl(
        "<assign value='source.{PID:3(1)}' property='target.Item.\"2ndNumber\"'/>"
        "<assign value='source.{PID:5.1}' property='target.Numérofacture'/>",
        target="Demo.Open.Out",
    )
    assert t.apply(ORU) == {"Item": {"2ndNumber": "123"}, "Numérofacture": "Doe"}


def test_string_request_is_a_class_hie_knows() -> None:
    t = dtl(
        "<assign value='source.{PID:5.1}' property='target.StringValue'/>",
        target="Ens.StringRequest",
    )
    assert t.apply(ORU).model_dump() == {"StringValue": "Doe"}
    with pytest.raises(ConfigError, match=r"has no property 'Value' \(it has StringValue\)"):
        dtl("<assign value='1' property='target.Value'/>", target="Ens.StringRequest")


def test_an_object_variable_is_built_and_inserted_into_a_collection() -> None:
    t = open_dtl(
        "<foreach property='source.Items()' key='k1'>"
        "<assign value='\"\"' property='tItem'/>"
        "<assign value='source.Items.(k1).Code' property='tItem.Code'/>"
        "<assign value='k1' property='tItem.Position'/>"
        "<assign value='target.Items.Insert(tItem)' property='tSC'/>"
        "</foreach>"
        "<assign value='target.Items.InsertAt(\"first\", 1)' property='tSC'/>"
        "<assign value='tSC' property='target.Status'/>"
    )
    assert t.apply({"Items": [{"Code": "A"}, {"Code": "B"}]}) == {
        "Items": ["first", {"Code": "A", "Position": 1}, {"Code": "B", "Position": 2}],
        "Status": 1,
    }
