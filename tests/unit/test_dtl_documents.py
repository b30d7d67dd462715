"""DTL over what is not an HL7 message: document trees (XML, X12, ASTM, IOP), open objects of
classes with no definition, and single HL7 segments run as subtransforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hie.errors import ConfigError, MessageError
from hie.hl7 import HL7Message
from hie.iris.dtl import load_dtl, parse_dtl
from hie.messages import Envelope
from hie.rules.transform import Transform, TransformRegistry
from hie.rules.vdoc_xml import tree_from_xml, tree_to_xml

ADT = HL7Message(
    "MSH|^~\\&|SND|FAC|RCV|FAC|20240102||ADT^A08|7|P|2.5\rEVN|A08|20240102\r"
    "PID|1||123||Doe^Jane||19800101|F\rPV1|1|I\r"
)


def dtl(
    body: str,
    *,
    source: str = "EnsLib.HL7.Message",
    target: str = "EnsLib.EDI.XML.Document",
    create: str = "new",
    extra: str = "",
    registry: TransformRegistry | None = None,
) -> Transform:
    text = (
        f"<transform sourceClass='{source}' targetClass='{target}' create='{create}' {extra}>\n"
        f"{body}\n</transform>"
    )
    return parse_dtl(text, source="t.dtl", registry=registry)


def lines(msg: HL7Message) -> list[str]:
    return [line for line in msg.to_er7().split("\r") if line]


# -- document trees ---------------------------------------------------------------------------


def test_an_xml_document_target_is_built_as_a_tree_and_written_as_xml() -> None:
    t = dtl(
        "<assign value='source.{PID:3}' property='target.{Patient.PatientNumbers(1).Number}'/>"
        "<assign value='\"MRN\"' property='target.{Patient.PatientNumbers(1).NumberType}'/>"
        "<assign value='source.{PID:5.1}' property='target.{Patient.PatientNumbers(2).Number}'/>"
        "<assign value='\"7\"' property='target.{Patient.@id}'/>"
        "<assign value='source.{MSH:4}' property='target.{SendingFacility}'/>",
        extra="targetDocType='SDA3_schema:Container'",
    )
    out = t.apply(ADT)
    tree = {
        "Patient": {
            "PatientNumbers": [{"Number": "123", "NumberType": "MRN"}, {"Number": "Doe"}],
            "@id": "7",
        },
        "SendingFacility": "FAC",
    }
    assert type(out).__qualname__ == "EnsLib.EDI.XML.Document" and out == tree
    assert tree_to_xml(out, "Container") == (
        '<Container><Patient id="7"><PatientNumbers><Number>123</Number><NumberType>MRN'
        "</NumberType></PatientNumbers><PatientNumbers><Number>Doe</Number></PatientNumbers>"
        "</Patient><SendingFacility>FAC</SendingFacility></Container>"
    )
    # Given the tree as a body, When it crosses to another item, Then it arrives the same.
    envelope = Envelope.wrap(out, target="Out")
    assert envelope.body_type == "iris:EnsLib.EDI.XML.Document"
    assert Envelope.from_wire(envelope.to_wire()).payload() == tree


def test_an_xml_source_is_read_with_its_repeats_attributes_and_every_element() -> None:
    t = dtl(
        "<assign value='source.{patient.@id}' property='target.{PID:3}'/>"
        "<assign value='source.{patient.name}' property='target.{PID:5.1}'/>"
        "<foreach property='source.{obs()}' key='k1'>"
        "<assign value='source.{obs(k1).code}' property='target.{OBX(k1):3}'/>"
        "<assign value='source.{obs(k1).value}' property='target.{OBX(k1):5}'/></foreach>"
        "<assign value='source.{obs().code}' property='target.{NTE:3}'/>"
        "<assign value='$LENGTH(source.{missing.part})' property='target.{NTE:4}'/>",
        source="EnsLib.EDI.XML.Document",
        target="EnsLib.HL7.Message",
        extra="targetDocType='2.5:ORU_R01'",
    )
    xml = (
        '<?xml version="1.0"?><message xmlns="urn:demo"><patient id="9"><name>Roe</name>'
        "</patient><obs><code>WBC</code><value>5</value></obs>"
        "<obs><code>RBC</code><value>4</value></obs></message>"
    )
    assert lines(t.apply(xml))[1:] == [
        "PID|||9||Roe",
        "OBX|||WBC||5",
        "OBX|||RBC||4",
        "NTE|||WBC|0",  # an HL7 field takes the first of every element's value, as IRIS does
    ]


def test_xml_text_and_the_tree_follow_the_documented_mapping() -> None:
    tree = tree_from_xml(
        "<root xmlns:x='urn:x'><x:a kind='k'>text<b>1</b>tail</x:a><!-- note -->"
        "<c/><c>2</c><d> spaced </d></root>"
    )
    assert tree == {
        "a": {"@kind": "k", "b": "1", "#text": "texttail"},
        "c": ["", "2"],
        "d": " spaced ",
    }
    assert tree_to_xml({"n": 5, "none": None, "list": [1, {"@a": "x"}]}, "r") == (
        '<r><n>5</n><none/><list>1</list><list a="x"/></r>'
    )
    assert tree_from_xml(tree_to_xml(tree, "root")) == tree
    with pytest.raises(MessageError, match="'0004' cannot be an XML element name"):
        tree_to_xml({"0004": "x"}, "r")
    with pytest.raises(MessageError, match="DTD"):
        tree_from_xml('<!DOCTYPE r [<!ENTITY e "x">]><r>&e;</r>')
    with pytest.raises(MessageError, match="not well-formed"):
        tree_from_xml("<r>")


def test_a_position_below_one_stops_the_message_naming_the_variable() -> None:
    t = dtl("<assign value='0' property='tPos'/><assign value='1' property='target.{a(tPos)}'/>")
    with pytest.raises(ConfigError, match=r"index \(tPos\) is 0: positions start at 1"):
        t.apply(ADT)


def test_assign_actions_on_a_document_and_the_source_stays_untouched() -> None:
    t = dtl(
        "<assign value='source.{post}' property='target.{post}'/>"
        "<foreach property='source.{tags()}' key='k1'>"
        "<assign value='source.{tags(k1)} _ \"!\"' property='target.{tags()}' action='append'/>"
        "</foreach>"
        "<assign value='\"first\"' property='target.{tags}' action='insert' key='1'/>"
        "<assign property='target.{tags}' action='remove' key='2'/>"
        "<assign value='\"v\"' property='target.{codes}' action='insert' key='\"K\"'/>"
        "<assign value='source.{post.Title}' property='target.{title}'/>"
        "<assign property='target.{post.Body}' action='clear'/>"
        "<assign value='\"x\"' property='target.{one}' action='append'/>"
        "<assign value='\"y\"' property='target.{one}' action='append'/>",
        source="IOP.Message",
        target="IOP.Message",
    )
    source: dict[str, Any] = {"post": {"Title": "T", "Body": "b"}, "tags": ["a", "b"]}
    assert t.apply(source) == {
        "post": {"Title": "T", "Body": ""},
        "tags": ["first", "b!"],
        "codes": {"K": "v"},
        "title": "T",
        "one": ["x", "y"],
    }
    assert source["post"] == {"Title": "T", "Body": "b"}


def test_every_element_paths_reach_each_one_and_an_index_may_be_a_variable() -> None:
    t = dtl(
        "<assign value='\"O\"' property='target.{Pgrp().Ogrp().O:ReportTypes}'/>"
        "<assign value='\"Smith\"' property='target.{Pgrp(aux).P:PatientName.LastName}'/>"
        "<assign value='source.{Pgrp().P:Id}' property='target.{Ids}'/>"
        "<assign value='source.{Pgrp(2).P:Id}' property='target.{Second}'/>"
        "<assign value='source.{Pgrp.P:Id}' property='target.{First}'/>",
        source="EnsLib.EDI.ASTM.Document",
        target="EnsLib.EDI.ASTM.Document",
        create="copy",
    )
    source = {"Pgrp": [{"P": {"Id": "1"}, "Ogrp": [{"O": {}}, {"O": {}}]}, {"P": {"Id": "2"}}]}
    out = t.apply(source, aux=2)
    assert out == {
        "Pgrp": [
            {"P": {"Id": "1"}, "Ogrp": [{"O": {"ReportTypes": "O"}}, {"O": {"ReportTypes": "O"}}]},
            {
                "P": {"Id": "2", "PatientName": {"LastName": "Smith"}},
                "Ogrp": [{"O": {"ReportTypes": "O"}}],
            },
        ],
        "Ids": ["1", "2"],
        "Second": "2",
        "First": "1",
    }
    assert source["Pgrp"][1] == {"P": {"Id": "2"}}


def test_a_docs_ref_foreach_gives_each_child_document_and_variables_hold_documents() -> None:
    t = dtl(
        "<assign value='0' property='target.{Count}'/>"
        "<foreach property='source.{GroupDocsRef}' key='tGroup'>"
        "<foreach property='tGroup.{TransactionSetDocsRef}' key='tSet'>"
        "<assign value='tSet.{BPR:Amount}' property='tAmount'/>"
        "<assign value='target.{Count} + 1' property='target.{Count}'/>"
        "<assign value='tTotal + tAmount' property='tTotal'/>"
        "<assign value='tAmount' property='tLast.{BPR:Amount}'/>"
        "</foreach></foreach>"
        "<assign value='tTotal' property='target.{Total}'/>"
        "<assign value='tLast.{BPR:Amount}' property='target.{Last}'/>"
        "<assign value='source.Parent.{ISA:SenderId}' property='target.{Sender}'/>",
        source="EnsLib.EDI.X12.Document",
        target="EnsLib.EDI.X12.Document",
    )
    source = {
        "GroupDocsRef": [
            {"TransactionSetDocsRef": [{"BPR": {"Amount": "10"}}, {"BPR": {"Amount": "5"}}]},
            {"TransactionSetDocsRef": {"BPR": {"Amount": "1"}}},
        ]
    }
    assert t.apply(source) == {"Count": 3, "Total": 16, "Last": "1", "Sender": ""}


def test_virtual_paths_on_an_object_class_defined_beside_are_refused(tmp_path: Path) -> None:
    (tmp_path / "Demo.Msg.Flat.cls").write_text(
        "Class Demo.Msg.Flat Extends Ens.Request\n{\nProperty Name As %String;\n}\n"
    )
    (tmp_path / "t.xml").write_text(
        "<transform sourceClass='EnsLib.HL7.Message' targetClass='Demo.Msg.Flat'>\n"
        "<assign value='1' property='target.{Name}'/></transform>"
    )
    with pytest.raises(ConfigError) as refused:
        load_dtl(tmp_path / "t.xml")
    assert str(refused.value) == (
        f"{tmp_path / 't.xml'}:2: target.{{Name}} is a virtual property path, but the target "
        "class Demo.Msg.Flat is an object class defined beside the transform; assign its "
        "properties (target.Name)"
    )


# -- open objects ------------------------------------------------------------------------------


def test_a_class_with_no_definition_is_an_open_object_that_travels() -> None:
    t = dtl(
        "<assign value='source.{PID:5.1}' property='target.topic'/>"
        "<assign value='target.topic _ \"-\" _ source.{PID:3}' property='target.topic'/>"
        "<assign value='\"Springfield\"' property='target.Address.City'/>"
        "<assign value='source.{PID:3}' property='target.Ids.(1)'/>",
        target="HL7ToJson.Msg.Kafka",  # "HL7" in a class name does not make it an HL7 message
    )
    out = t.apply(ADT)
    assert out == {"topic": "Doe-123", "Address": {"City": "Springfield"}, "Ids": ["123"]}
    assert out.topic == "Doe-123"  # type: ignore[attr-defined]
    assert t.notes[0].startswith("class HL7ToJson.Msg.Kafka is not defined beside the transform")
    wire = Envelope.from_wire(Envelope.wrap(out, target="Kafka").to_wire())
    assert wire.body_type == "iris:HL7ToJson.Msg.Kafka" and wire.payload() == out


def test_an_open_source_reads_nested_properties_models_and_json_text() -> None:
    t = dtl(
        "<assign value='source.Address.City _ \"/\" _ source.Ids.(2)' property='target.Where'/>",
        source="Demo.Unknown.In",
        target="Demo.Unknown.Out",
    )
    assert t.apply({"Address": {"City": "X"}, "Ids": ["1", "2"]}) == {"Where": "X/2"}
    assert t.apply('{"Address": {"City": "Y"}, "Ids": ["3"]}') == {"Where": "Y/"}
    assert t.apply(t.apply({"Address": {"City": "Z"}})) == {"Where": "/"}  # an open model


# -- single segments ---------------------------------------------------------------------------

SEGMENT = (
    "<transform sourceClass='EnsLib.HL7.Segment' targetClass='EnsLib.HL7.Segment' "
    "sourceDocType='2.5:PID' targetDocType='2.5:PID' create='copy'>"
    "<assign value='..ToUpper(source.{PatientName.FamilyName})' "
    "property='target.{PatientName(1).FamilyName}'/>"
    "<assign value='source.{3} _ \"X\"' property='target.{PatientIdentifierList(1).IDNumber}'/>"
    "</transform>"
)


def test_a_segment_transform_maps_one_segment_by_its_field_names() -> None:
    registry = TransformRegistry()
    sub = parse_dtl(SEGMENT, source="seg.dtl")
    sub.name = "Demo.Seg.PID"
    registry.add(sub)
    assert sub.apply("PID|1||9||Roe^Al") == "PID|1||9X||ROE^Al"
    main = dtl(
        "<subtransform class='Demo.Seg.PID' sourceObj='source.{PID}' targetObj='target.{PID}'/>",
        target="EnsLib.HL7.Message",
        create="copy",
        registry=registry,
    )
    assert lines(main.apply(ADT))[2:] == ["PID|1||123X||DOE^Jane||19800101|F", "PV1|1|I"]


def test_segment_subtransforms_beside_the_dtl_build_a_message_from_an_object(
    tmp_path: Path,
) -> None:
    def write(name: str, body: str) -> None:
        (tmp_path / f"{name}.cls").write_text(
            f"Class {name} Extends Ens.DataTransformDTL\n{{\n\n"
            'XData DTL [ XMLNamespace = "http://www.intersystems.com/dtl" ]\n{\n'
            f"{body}\n}}\n\n}}\n"
        )

    write(
        "Demo.DT.ToADT",
        "<transform sourceClass='Demo.Req' targetClass='EnsLib.HL7.Message' "
        "targetDocType='2.5:ADT_A08' create='new'>\n"
        "<subtransform class='Demo.DT.Seg.MSH' sourceObj='source' targetObj='target.{MSH}'/>\n"
        "<assign value='\"A08\"' property='target.{EVN:1}'/>\n"
        "<subtransform class='Demo.DT.Seg.PID' sourceObj='source' targetObj='target.{PID}'/>\n"
        "<subtransform class='Demo.DT.Seg.Visit' sourceObj='source' targetObj='target.{PV1}'/>\n"
        "<subtransform class='Demo.DT.Seg.App' sourceObj='source' targetObj='target.{MSH}'/>\n"
        "</transform>",
    )
    write(
        "Demo.DT.Seg.MSH",
        "<transform sourceClass='Demo.Req' targetClass='EnsLib.HL7.Segment' "
        "targetDocType='2.5:MSH' create='new'>\n"
        "<assign value='\"|\"' property='target.{FieldSeparator}'/>\n"
        "<assign value='\"^~&amp;\"' property='target.{EncodingCharacters}'/>\n"
        "<assign value='source.App' property='target.{SendingApplication.NamespaceID}'/>\n"
        "<assign value='\"ADT\"' property='target.{MessageType.MessageCode}'/>\n"
        "<assign value='\"A08\"' property='target.{MessageType.TriggerEvent}'/>\n"
        "<assign value='source.Id' property='target.{MessageControlID}'/>\n"
        "<assign value='\"2.5\"' property='target.{VersionID.VersionID}'/>\n"
        "</transform>",
    )
    write(
        "Demo.DT.Seg.PID",
        "<transform sourceClass='Demo.Req' targetClass='EnsLib.HL7.Segment' "
        "targetDocType='2.5:PID' create='new'>\n"
        "<assign value='1' property='target.{SetIDPID}'/>\n"
        "<assign value='source.Patient.Last' property='target.{PatientName(1).FamilyName}'/>\n"
        "<assign value='source.Patient.First' property='target.{PatientName(1).GivenName}'/>\n"
        "</transform>",
    )
    write(  # no doc type: the segment is named by where the parent puts it
        "Demo.DT.Seg.Visit",
        "<transform sourceClass='Demo.Req' targetClass='EnsLib.HL7.Segment' create='new'>\n"
        "<assign value='\"I\"' property='target.{2}'/>\n</transform>",
    )
    write(  # create='existing': starts from the segment the parent has there
        "Demo.DT.Seg.App",
        "<transform sourceClass='Demo.Req' targetClass='EnsLib.HL7.Segment' "
        "targetDocType='2.5:MSH' create='existing'>\n"
        "<assign value='\"FAC\"' property='target.{SendingFacility}'/>\n</transform>",
    )
    t = load_dtl(tmp_path / "Demo.DT.ToADT.cls")
    assert sorted(t.beside) == [f"Demo.DT.Seg.{n}" for n in ("App", "MSH", "PID", "Visit")]
    assert t.missing_subtransforms() == []
    out = t.apply({"App": "APP", "Id": "R1", "Patient": {"Last": "Doe", "First": "Jane"}})
    assert lines(out) == [
        "MSH|^~\\&|APP|FAC|||||ADT^A08|R1||2.5",  # the delimiters stay the message's own
        "EVN|A08",
        "PID|1||||Doe^Jane",
        "PV1||I",
    ]
    registry = TransformRegistry()
    registry.add(t)
    assert sorted(registry) == ["Demo.DT.Seg.App", *sorted(t.beside)[1:], "Demo.DT.ToADT"]


def test_a_subtransform_not_beside_loads_and_fails_naming_the_class_when_it_runs() -> None:
    t = parse_dtl(
        "<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message' "
        "create='copy'><subtransform class='Demo.Not.There' sourceObj='source.{PID}' "
        "targetObj='target.{PID}'/></transform>",
        source="t.dtl",
    )
    assert t.missing_subtransforms() == ["Demo.Not.There"]
    with pytest.raises(ConfigError, match=r"subtransform 'Demo.Not.There' is not loaded: export"):
        t.apply(ADT)


def test_load_dtl_notes_a_subtransform_that_is_not_beside(tmp_path: Path) -> None:
    (tmp_path / "t.xml").write_text(
        "<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message'>"
        "<subtransform class='Demo.Elsewhere' sourceObj='source.{PID}' targetObj='target.{PID}'/>"
        "</transform>"
    )
    t = load_dtl(tmp_path / "t.xml")
    assert t.notes == [
        "subtransform Demo.Elsewhere is not beside the transform: it runs only when the router "
        "loads it (transforms:)"
    ]
