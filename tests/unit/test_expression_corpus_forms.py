"""Expression forms that public IRIS transforms and rules use, each compiled and run on a small
synthetic message: quoted and non-ASCII property names, omitted and by-reference arguments,
``$SYSTEM`` class methods, properties of objects and variables, and methods of values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

from hie.errors import ConfigError, HIEError, MessageError
from hie.hl7 import HL7Message
from hie.iris.dtl import parse_dtl
from hie.iris.rules import parse_iris_rules
from hie.rules.expressions import Context, compile_expression

ORU = (
    "MSH|^~\\&|LAB|HOSP|EMR|HOSP|20240101120000||ORU^R01|MSG1|P|2.5\r"
    "PID|1||123||Doe^Jane||19800101|F\r"
    "OBR|1||A1|CBC\rOBX|1|NM|WBC||5||3-10\rOBX|2|NM|RBC||4||4-6\r"
)


def ev(text: str, source: Any = None, **ctx: Any) -> Any:
    return compile_expression(text).evaluate(Context(source=source, **ctx))


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('source."account_id"', "A-1"),
        ('source.Workorder."2ndItemNumber"', "W2"),
        ('source.Workorder."Units_Held" + 1', 4),
        ('source."say ""hi"""', "quoted"),
        ("source.Numérofacture", "F-77"),
        ('source."account_id"_"/"_source.Numérofacture', "A-1/F-77"),
        ('source."absent"', ""),
    ],
)
def test_quoted_and_non_ascii_property_names_read_the_property(text: str, expected: Any) -> None:
    body = {
        "account_id": "A-1",
        "Workorder": {"2ndItemNumber": "W2", "Units_Held": "3"},
        'say "hi"': "quoted",
        "Numérofacture": "F-77",
    }
    assert ev(text, body) == expected


def test_non_ascii_variable_names_are_variables() -> None:
    assert ev('tNuméro _ "!"', variables={"tNuméro": "7"}) == "7!"


# -- properties of objects and variables -------------------------------------------------------


class Info(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    target_system: str = Field(alias="TargetSystem")


class Request(BaseModel):
    Info: Info
    Note: str | None = None


@dataclass
class Post:
    Selftext: str


@pytest.mark.parametrize(
    "document",
    [
        {"Info": {"TargetSystem": "PACS"}},
        Request(Info=Info(TargetSystem="PACS")),
    ],
)
def test_document_paths_read_nested_properties_of_dicts_and_models(document: Any) -> None:
    assert ev('Document.Info.TargetSystem="PACS"', document) is True
    assert ev("Document.Info.Missing", document) == ""
    assert ev("Document.Nothing.Deeper.Still", document) == ""


def test_properties_of_plain_objects_are_their_attributes() -> None:
    document = {"Post": Post("I love my DOG")}
    assert ev('ToUpper(Document.Post.Selftext) Contains "DOG"', document) is True
    assert ev("Document.Post.Missing", document) == ""


def test_an_unset_model_property_reads_empty() -> None:
    assert ev("source.Note", Request(Info=Info(TargetSystem="X"))) == ""


def test_a_dotted_name_with_an_unknown_head_reads_a_variable_and_its_properties() -> None:
    variables = {"tRawJSON": {"entry": [{"id": 1}]}, "dao": {"PatientId": "P9"}}
    assert ev("$IsObject(tRawJSON.entry)=1", variables=variables) is True
    assert ev("$IsObject(tRawJSON.missing)", variables=variables) == 0
    assert ev("$Get(dao.PatientId)", variables=variables) == "P9"
    assert ev('$Get(dao.Other, "none")', variables=variables) == "none"
    assert ev("nobody.Anything", variables=variables) == ""


def test_process_and_context_read_what_the_caller_gives_else_empty() -> None:
    # A DTL that HIE runs has no business process; a caller may supply one.
    assert ev('process.BankName _ "|" _ context.SourceName') == "|"
    variables = {"process": {"BankName": "Bank A"}, "context": Post("ctx")}
    assert ev("process.BankName", variables=variables) == "Bank A"
    assert ev("context.Selftext", variables=variables) == "ctx"


def test_a_business_process_rule_reads_its_context_properties_as_variables() -> None:
    expr = compile_expression("CCRewardResp.TransactionsLastPeriod>=150")
    reward = {"TransactionsLastPeriod": 151}
    assert expr.is_true(Context(variables={"CCRewardResp": reward}))
    assert not expr.is_true(Context())


def test_a_rule_on_an_object_document_loads_and_its_condition_reads_the_property() -> None:
    rules = parse_iris_rules(
        '<ruleDefinition alias="" context="EnsLib.MsgRouter.RoutingEngine">'
        '<ruleSet name=""><rule name="PACS">'
        '<when condition="Document.Info.TargetSystem=&quot;PACS&quot;">'
        '<send transform="" target="PACS Process"/></when></rule></ruleSet></ruleDefinition>',
        source="r.xml",
    )
    condition = rules.rule_sets[0].rules[0].when[0].condition
    assert ev(condition, {"Info": {"TargetSystem": "PACS"}}) is True
    assert ev(condition, {"Info": {"TargetSystem": "RIS"}}) is False


# -- arguments ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rg", "expected"),
    [("", ""), ("12", "12 SSP/SP")],
)
def test_an_omitted_function_set_argument_is_empty(rg: str, expected: str) -> None:
    body = {"rg": rg, "sigla": "SSP", "uf": "SP"}
    text = '..If(source.rg = "",,source.rg_" "_source.sigla_"/"_source.uf)'
    assert ev(text, body) == expected


def test_an_omitted_argument_takes_the_function_default() -> None:
    assert ev('..Piece("a,b,c",,2)') == "b"  # the delimiter defaults to ","
    assert ev('$PIECE("a^b",,1)') == ""  # $PIECE has no default delimiter: ""


def test_an_omitted_argument_of_a_mapped_method_takes_its_python_default() -> None:
    def label(name: Any, sep: Any = "-", tail: Any = "") -> str:
        return f"{name}{sep}{tail}"

    functions = {"..Label": label, "..Pair": lambda a, b: f"[{a}|{b}]"}
    assert ev('..Label("x",,"z")', functions=functions) == "x-z"
    assert ev('..Pair(,"b")', functions=functions) == "[|b]"  # no default: ""


def test_a_by_reference_argument_passes_the_variable_value() -> None:
    seen: list[Any] = []

    def checking_account(account: Any, status: Any) -> str:
        seen.append(status)
        return f"CHK-{account}"

    expr = compile_expression("##class(Canonical.Util).CheckingAccount(source.account,.tSC)")
    assert expr.class_calls == ["Canonical.Util.CheckingAccount"]
    variables = {"tSC": 1}
    ctx = Context(
        source={"account": "42"},
        variables=variables,
        functions={"Canonical.Util.CheckingAccount": checking_account},
    )
    assert expr.evaluate(ctx) == "CHK-42"
    assert seen == [1] and variables == {"tSC": 1}  # HIE cannot write back through .tSC


def test_a_by_reference_argument_must_name_a_variable() -> None:
    with pytest.raises(ConfigError, match=r"a by-reference argument is a variable: \.name"):
        compile_expression("..Fn(.x.y)")


# -- $SYSTEM and system class methods ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('$SYSTEM.Encryption.Base64Encode("Hello")', "SGVsbG8="),
        ('$system.Encryption.Base64Decode("SGVs" _ $C(13,10) _ "bG8=")', "Hello"),
        ('##class(%SYSTEM.Encryption).Base64Decode("SGVsbG8=")', "Hello"),
        ('$ZCVT($SYSTEM.Encryption.Base64Decode("w6k="),"I","UTF8")', "é"),
        ('$SYSTEM.Encryption.Base64Encode($SYSTEM.Encryption.SHA1Hash("abc"))',
         "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="),
        ('$SYSTEM.Encryption.Base64Encode($SYSTEM.Encryption.MD5Hash("abc"))',
         "kAFQmDzST7DWlj99KOF/cg=="),
        ('$SYSTEM.Encryption.Base64Encode($SYSTEM.Encryption.SHAHash(256,"abc"))',
         "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="),
    ],
)  # fmt: skip
def test_system_encryption_methods(text: str, expected: str) -> None:
    assert ev(text) == expected


def test_base64_encode_breaks_lines_at_76_unless_flag_1() -> None:
    text = "x" * 60  # 80 Base64 characters
    wrapped = ev("$SYSTEM.Encryption.Base64Encode(t)", variables={"t": text})
    assert wrapped.split("\r\n") == ["eHh4" * 19, "eHh4"]
    assert ev("$SYSTEM.Encryption.Base64Encode(t,1)", variables={"t": text}) == "eHh4" * 20


def test_base64_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(MessageError, match="Base64Decode: '%%%' is not Base64"):
        ev('$SYSTEM.Encryption.Base64Decode("%%%")')
    with pytest.raises(ConfigError, match=r"characters above 255.*\$ZCONVERT"):
        ev('$SYSTEM.Encryption.Base64Encode("€")')


def test_create_guid_is_an_upper_case_guid() -> None:
    first, second = ev("$SYSTEM.Util.CreateGUID()"), ev("$SYSTEM.Util.CreateGUID()")
    assert re.fullmatch(r"[0-9A-F]{8}(-[0-9A-F]{4}){3}-[0-9A-F]{12}", first)
    assert first != second


def test_other_system_methods_are_mapped_calls() -> None:
    expr = compile_expression("$SYSTEM.Status.GetErrorText(tSC)")
    assert expr.class_calls == ["%SYSTEM.Status.GetErrorText"]
    ctx = Context(
        variables={"tSC": "0 x"},
        functions={"%SYSTEM.Status.GetErrorText": lambda sc: f"ERROR: {sc}"},
    )
    assert expr.evaluate(ctx) == "ERROR: 0 x"
    with pytest.raises(ConfigError, match=r"^\$SYSTEM\.Status\.GetErrorText\(\) is not mapped"):
        expr.evaluate(Context())


def test_system_needs_a_class_a_method_and_arguments() -> None:
    with pytest.raises(ConfigError, match="needs a class, a method and"):
        compile_expression("$SYSTEM.Util.CreateGUID")
    with pytest.raises(ConfigError, match=r"CreateGUID\(\) takes 0 to 0 arguments, not 1"):
        compile_expression("$SYSTEM.Util.CreateGUID(1)")


def test_json_text_becomes_a_dynamic_object() -> None:
    body = {"Stream": '{"idiris": 7, "sTable": "T", "tags": ["a", "b"], "gone": null}'}
    variables: dict[str, Any] = {}
    ctx = Context(source=body, variables=variables)
    variables["json"] = compile_expression("{}.%FromJSON(source.Stream)").evaluate(ctx)
    assert ev('json."idiris" + 1', variables=variables) == 8
    assert ev('json.%Get("tags").%Get(1)', variables=variables) == "b"  # arrays count from 0
    assert ev('json.%Get("gone","-") _ json.%Get("none","-")', variables=variables) == "-"
    assert ev('json.%IsDefined("gone") _ json.%IsDefined("none")', variables=variables) == "10"
    assert ev("json.%Size() _ json.tags.%Size()", variables=variables) == "42"
    dynamic = "##class(%DynamicAbstractObject).%FromJSON(source.{Stream})"
    assert ev(dynamic, body) == variables["json"]
    assert ev('[].%FromJSON("[1,2]")') == [1, 2]
    with pytest.raises(MessageError, match="%FromJSON: the text is not JSON"):
        ev('{}.%FromJSON("{oops")')


# -- methods of values -------------------------------------------------------------------------


def test_get_value_at_reads_a_virtual_path_of_an_hl7_message() -> None:
    msg = HL7Message(ORU)
    expr = compile_expression('$P(source.GetValueAt("OBX(2):ReferencesRange"),"-",2)')
    assert [p.text for p in expr.paths] == ["OBX(2):ReferencesRange"]
    assert expr.evaluate(Context(source=msg)) == "6"
    assert ev('Document.GetValueAt("PID:5.1", 0)', msg) == "Doe"
    assert ev("HL7.GetValueAt(p)", msg, variables={"p": "MSH:9.1"}) == "ORU"


def test_a_literal_get_value_at_path_is_checked_when_it_compiles() -> None:
    with pytest.raises(ConfigError, match=r"NoSuchField.* at column 19"):
        compile_expression('source.GetValueAt("PID:NoSuchField")')


def test_get_value_at_on_an_object_reads_the_named_property() -> None:
    body = {
        "DataSet": {
            "PatientName": "Doe^Jane",
            "ScheduledProcedureStepSequence": [{"Modality": "MR"}],
        }
    }
    assert ev('$P(source.DataSet.GetValueAt("PatientName",0),"^",2)', body) == "Jane"
    path = '"ScheduledProcedureStepSequence[1].Modality"'
    assert ev(f"source.DataSet.GetValueAt({path},0)", body) == "MR"
    assert ev('source.DataSet.GetValueAt("Missing",0)', body) == ""


def test_output_to_string_is_the_er7_text() -> None:
    assert ev("source.OutputToString()", HL7Message(ORU.rstrip("\r"))) == ORU
    with pytest.raises(MessageError, match="OutputToString"):
        ev("source.OutputToString()", {"a": 1})


def test_read_line_reads_one_line_after_another() -> None:
    ctx = Context(source={"Stream": "H|header\r\nD|row 1\nD|row 2"})
    expr = compile_expression("source.Stream.ReadLine()")
    assert [expr.evaluate(ctx) for _ in range(4)] == ["H|header", "D|row 1", "D|row 2", ""]
    assert expr.evaluate(Context(source=ctx.source)) == "H|header"  # a new run starts over
    assert ev("source.Stream.ReadLine(3)", {"Stream": "abcdef"}) == "abc"
    with pytest.raises(ConfigError, match=r"ReadLine\(\) reads a stream \(text\)"):
        ev("source.Stream.ReadLine()", {"Stream": {"not": "text"}})


def test_collections_count_and_get_at() -> None:
    variables = {"items": ["a", "b"], "codes": {"k": "v"}}
    assert ev('items.Count() _ items.GetAt(2) _ codes.GetAt("k")', variables=variables) == "2bv"


def test_an_unknown_method_is_still_an_error() -> None:
    with pytest.raises(ConfigError, match=r"unknown function tRaw\.entry\.%GetIterator\(\)"):
        compile_expression("tRaw.entry.%GetIterator()")


# -- operators ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(n#2)=0", True),
        ("7#3", 1),
        ("-7#3", 2),  # the sign of the divisor
        ("7#-3", -2),
        ("7.5#2", 1.5),
        ("7\\2", 3),
        ("-7\\2", -3),  # integer division truncates toward zero
        ("7\\0", ""),
    ],
)
def test_modulo_and_integer_division(text: str, expected: Any) -> None:
    assert ev(text, variables={"n": 4}) == expected


# -- the forms inside DTL ----------------------------------------------------------------------


def test_a_dtl_reads_json_quoted_names_and_omitted_arguments() -> None:
    t = parse_dtl(
        "<transform sourceClass='Ens.StreamContainer' targetClass='Demo.Out' create='new'>"
        "<assign value='{}.%FromJSON(source.Stream)' property='json' action='set'/>"
        "<assign value='json.\"first_name\"' property='target.First' action='set'/>"
        "<assign value='source.Workorder.Routing.(1).\"2ndItem\"' property='target.Item'/>"
        "<assign value='..If(source.rg = \"\",,\"RG \"_source.rg)' property='target.Rg'/>"
        "<assign value='process.BankName' property='target.Bank'/>"
        "<assign value='source.Numérofacture' property='target.Number'/>"
        "<assign value='$SYSTEM.Encryption.Base64Decode(source.{File})' property='target.Raw'/>"
        "</transform>",
        source="t.dtl",
    )
    source = {
        "Stream": '{"first_name": "Ann"}',
        "Workorder": {"Routing": [{"2ndItem": "R1"}]},
        "rg": "12",
        "Numérofacture": "F1",
        "File": "SGk=",
    }
    assert t.apply(source) == {
        "First": "Ann",
        "Item": "R1",
        "Rg": "RG 12",
        "Bank": "",
        "Number": "F1",
        "Raw": "Hi",
    }


# -- garbage -----------------------------------------------------------------------------------

#: Pieces of the forms above, so random text reaches deep into the parser.
_PIECES = ['"', ".", "..", ",", "(", ")", "{", "}", "[", "]", "#", "\\", "_", "$", "$SYSTEM."]
_PIECES += ["x", "é", "%Get", "GetValueAt", "ReadLine", "source", "json", "1", " ", "##class(A).B"]


@given(st.lists(st.sampled_from(_PIECES), max_size=12).map("".join))
def test_any_text_compiles_or_fails_with_a_config_error(text: str) -> None:
    try:
        expr = compile_expression(text)
    except ConfigError:
        return
    try:
        expr.evaluate(Context(source={"x": "1"}, variables={"json": {"x": [1]}}))
    except HIEError:
        pass


def test_new_makes_an_empty_object_of_the_class_without_a_mapping() -> None:
    from pydantic import BaseModel

    expr = compile_expression("##class(Demo.Msg.Thing).%New()")
    made = expr.evaluate(Context())
    assert expr.class_calls == []  # built in: nothing to map to Python
    assert isinstance(made, BaseModel) and made == {}
    made.Name = "DOE"  # an open object takes any property, as IRIS's %New() result does
    assert made == {"Name": "DOE"}
