"""IRIS class files and exports: one reader finds the definition and keeps the file's lines."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hie.errors import ConfigError
from hie.iris.classfile import class_declaration, extract_xdata, read_definition
from hie.iris.dtl import parse_dtl
from hie.iris.rules import parse_iris_rules

RULE = """<ruleDefinition alias="" context="EnsLib.HL7.MsgRouter.RoutingEngine">
<ruleSet name="main">
<rule name="adt">
<when condition='HL7.{MSH:9.1} = = "ADT"'><send target="Out"/></when>
</rule>
</ruleSet>
</ruleDefinition>
"""


def as_class(xml: str, block: str, *, newline: str = "\n") -> str:
    text = (
        "/// A rule exported from Studio\n"
        "Class Demo.ADTRule Extends Ens.Rule.Definition\n{\n\n"
        f'XData {block} [ XMLNamespace = "http://www.intersystems.com/rule" ]\n{{\n'
        f"{xml}}}\n\n}}\n"
    )
    return text.replace("\n", newline)


def as_export(xml: str, block: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Export generator="IRIS" version="26">\n'
        '<Class name="Demo.ADTRule">\n<Super>Ens.Rule.Definition</Super>\n'
        f'<XData name="{block}">\n'
        f"<Data><![CDATA[\n{xml}]]></Data>\n"
        "</XData>\n</Class>\n</Export>\n"
    )


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


def test_extract_xdata_keeps_line_numbers() -> None:
    cls = (
        "Class A.B Extends Ens.Rule.Definition\n{\n"
        'XData RuleDefinition [ X = "y" ]\n{\n<r/>\n}\n}\n'
    )
    text, line = extract_xdata(cls, "RuleDefinition", source="a.cls")
    assert text.strip() == "<r/>" and line == 5
    with pytest.raises(ConfigError, match="no 'XData DTL'"):
        extract_xdata(cls, "DTL", source="a.cls")


def test_class_declaration_names_the_class_and_what_it_extends() -> None:
    text = "Include Ensemble\n\nClass Demo.X Extends (Ens.Rule.Definition, Demo.Base)\n{\n}\n"
    assert class_declaration(text) == ("Demo.X", ["Ens.Rule.Definition", "Demo.Base"])
    assert class_declaration("<ruleDefinition/>") == ("", [])


@pytest.mark.parametrize(
    "wrap",
    [
        lambda xml: as_class(xml, "RuleDefinition"),
        lambda xml: as_class(xml, "RuleDefinition", newline="\r\n"),
        lambda xml: as_export(xml, "RuleDefinition"),
        lambda xml: xml,
    ],
    ids=["class-file", "class-file-crlf", "export", "bare"],
)
def test_an_error_names_the_line_of_the_file_in_every_wrapping(
    wrap: Callable[[str], str],
) -> None:
    text = wrap(RULE)
    expected = line_of(text, "= = ")
    with pytest.raises(ConfigError, match=rf"^r\.src:{expected}: expression"):
        parse_iris_rules(text, source="r.src")


@pytest.mark.parametrize("wrap", [as_class, as_export])
def test_the_class_name_comes_from_the_class_file_or_the_export(
    wrap: Callable[[str, str], str],
) -> None:
    good = RULE.replace("= = ", "= ")
    assert parse_iris_rules(wrap(good, "RuleDefinition"), source="r").name == "Demo.ADTRule"
    assert parse_iris_rules(good, source="r").name == ""


def test_dtl_in_an_export_names_the_line_of_its_code_block() -> None:
    dtl = (
        '<transform sourceClass="EnsLib.HL7.Message" targetClass="EnsLib.HL7.Message">\n'
        "<assign value='\"X\"' property='target.{PID:5.1}' action='set'/>\n"
        "<code> Write x </code>\n"
        "</transform>\n"
    )
    text = as_export(dtl, "DTL")
    with pytest.raises(ConfigError, match=rf"^t\.xml:{line_of(text, '<code>')}: <code>"):
        parse_dtl(text, source="t.xml")
    transform = parse_dtl(text, source="t.xml", allow_partial=True)
    assert transform.name == "Demo.ADTRule" and transform.target_class == "EnsLib.HL7.Message"


def test_an_export_without_the_definition_says_what_was_expected() -> None:
    text = as_export(RULE, "RuleDefinition")
    expected = r"^t\.xml: no <transform> in this <Export> document; .* XData DTL"
    with pytest.raises(ConfigError, match=expected):
        read_definition(text, xdata="DTL", root="transform", source="t.xml")
    with pytest.raises(ConfigError, match=r"^t\.cls: no 'XData DTL' block"):
        read_definition(
            as_class(RULE, "RuleDefinition"), xdata="DTL", root="transform", source="t.cls"
        )


def test_a_block_holding_another_definition_is_refused_with_its_line() -> None:
    text = as_class(RULE, "DTL")
    line = line_of(text, "<ruleDefinition")
    with pytest.raises(ConfigError, match=rf"^t\.cls:{line}: expected <transform>"):
        parse_dtl(text, source="t.cls")


def test_an_xdata_block_ends_after_a_code_body_holding_a_brace_line() -> None:
    cls = (
        "Class Demo.T Extends Ens.DataTransformDTL\n{\n"
        'XData DTL [ XMLNamespace = "http://www.intersystems.com/dtl" ]\n{\n'
        "<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message'>\n"
        "<code><![CDATA[ If 1 {\n Set x = 1\n}\n]]></code>\n"
        "<assign value='x' property='target.{PID:1}'/>\n"
        "</transform>\n}\n\n}\n"
    )
    text, line = extract_xdata(cls, "DTL", source="t.cls")
    assert text.rstrip().endswith("</transform>") and line == 5
    t = parse_dtl(cls, source="t.cls")
    assert [a.type for a in t.actions] == ["code", "assign"] and t.actions[1].line == 10
