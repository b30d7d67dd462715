"""IRIS message classes: definitions read beside a DTL, models built from them, DTL reading and
building objects, and bodies carried between items by the ``iris:`` class path."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
from pydantic import BaseModel

from hie.errors import ConfigError, MessageError
from hie.hl7 import HL7Message
from hie.iris.dtl import load_dtl
from hie.iris.message_classes import (
    body_class,
    class_definitions,
    model_for,
    read_classes,
    register_classes,
)
from hie.messages import Envelope
from hie.rules.loader import load_transform

LAB_RESULT = """/// A lab result as the EMR receives it.
Class Demo.Msg.LabResult Extends (Ens.Request, Demo.Msg.Base)
{
Property PatientId As %String(MAXLEN = 50) [ Required ];
Property Observations As list Of Demo.Msg.Obs;
Property Codes As array Of %String;
Property Count As %Integer [ InitialExpression = 0 ];
Property Taken As %TimeStamp;
Property Born As %Date;
Property Flagged As %Boolean;
Property Device As Acme.Device.Info;
}
"""
BASE = "Class Demo.Msg.Base Extends %Persistent\n{\nProperty Facility As %String;\n}\n"
OBS_EXPORT = """<?xml version="1.0" encoding="UTF-8"?>
<Export generator="IRIS" version="26">
<Class name="Demo.Msg.Obs">
<Super>%SerialObject,%XML.Adaptor</Super>
<Property name="Code"><Type>%String</Type></Property>
<Property name="Value"><Type>%Numeric</Type></Property>
<Property name="Notes"><Type>%String</Type><Collection>list</Collection></Property>
</Class>
</Export>
"""
TO_LAB = """Class Demo.DTL.ToLab Extends Ens.DataTransformDTL
{
XData DTL [ XMLNamespace = "http://www.intersystems.com/dtl" ]
{
<transform sourceClass='EnsLib.HL7.Message' targetClass='Demo.Msg.LabResult' create='new'>
<assign value='source.{PID:3(1).1}' property='target.PatientId' action='set' />
<assign value='source.{MSH:7}' property='target.Taken' action='set' />
<assign value='source.{PID:7}' property='target.Born' action='set' />
<foreach property='source.{OBX()}' key='k1'>
<assign value='source.{OBX(k1):3.1}' property='target.Observations.(k1).Code' action='set' />
<assign value='source.{OBX(k1):5}' property='target.Observations.(k1).Value' action='set' />
<assign value='"n" _ k1' property='target.Observations.(k1).Notes' action='append' />
<assign value='source.{OBX(k1):5}' property='target.Codes' action='insert'
 key='source.{OBX(k1):3.1}' />
</foreach>
<assign value='target.Observations.Count()' property='target.Count' action='set' />
<assign value='source.{OBX(1):8}="H"' property='target.Flagged' action='set' />
</transform>
}
}
"""
FROM_LAB = """<transform sourceClass='Demo.Msg.LabResult' targetClass='EnsLib.HL7.Message'
 targetDocType='2.5:ORU_R01' create='new'>
<assign value='source.PatientId' property='target.{PID:3.1}'/>
<assign value='source.Observations.Count()' property='target.{PID:1}'/>
<foreach property='source.Observations' key='k1'>
<assign value='source.Observations.(k1).Code' property='target.{OBX(k1):3.1}'/>
<assign value='source.Observations.GetAt(k1).Value * 2' property='target.{OBX(k1):5}'/>
</foreach>
<foreach property='source.Codes' key='code'>
<assign value='code _ "=" _ source.Codes.(code)' property='target.{NTE(1):3()}' action='append'/>
</foreach>
<assign value='source.Codes.("RBC")' property='target.{PID:5.1}'/>
</transform>
"""
ORU = HL7Message(
    "MSH|^~\\&|LAB|HOSP|EMR|HOSP|20240101120000||ORU^R01|1|P|2.5\r"
    "PID|1||123^^^HOSP||Doe^Jane||19800101\r"
    "OBX|1|NM|WBC||5|||H\rOBX|2|NM|RBC||4.5\r"
)


@pytest.fixture
def export(tmp_path: Path) -> Path:
    """An IRIS export laid out as IRIS users keep one: classes in one folder, DTL in another."""
    (tmp_path / "classes").mkdir()
    (tmp_path / "dtl").mkdir()
    (tmp_path / "classes" / "Demo.Msg.LabResult.cls").write_text(LAB_RESULT)
    (tmp_path / "classes" / "Demo.Msg.Base.cls").write_text(BASE)
    (tmp_path / "classes" / "Demo.Msg.Obs.xml").write_text(OBS_EXPORT)
    (tmp_path / "dtl" / "Demo.DTL.ToLab.cls").write_text(TO_LAB)
    return tmp_path


def test_class_files_and_exports_are_read_into_property_types(export: Path) -> None:
    lab = read_classes(export / "classes" / "Demo.Msg.LabResult.cls")["Demo.Msg.LabResult"]
    assert lab.supers == ["Ens.Request", "Demo.Msg.Base"]
    assert lab.properties == {
        "PatientId": "%String",
        "Observations": "list Of Demo.Msg.Obs",
        "Codes": "array Of %String",
        "Count": "%Integer",
        "Taken": "%TimeStamp",
        "Born": "%Date",
        "Flagged": "%Boolean",
        "Device": "Acme.Device.Info",
    }
    obs = read_classes(export / "classes" / "Demo.Msg.Obs.xml")["Demo.Msg.Obs"]
    assert obs.supers == ["%SerialObject", "%XML.Adaptor"]
    assert obs.properties == {"Code": "%String", "Value": "%Numeric", "Notes": "list Of %String"}


def test_definitions_follow_superclasses_and_property_classes(export: Path) -> None:
    found, notes = class_definitions(["Demo.Msg.LabResult"], near=export / "dtl" / "x.cls")
    assert list(found) == ["Demo.Msg.LabResult", "Demo.Msg.Obs"]
    assert list(found["Demo.Msg.LabResult"])[:2] == ["Facility", "PatientId"]  # inherited first
    assert notes == [
        "class Acme.Device.Info is not defined beside the transform (no Acme.Device.Info.cls or "
        "export): its objects are handled as plain properties, unchecked"
    ]


def test_models_map_iris_types_to_python_types() -> None:
    notes = register_classes(
        {
            "T.Types": {
                "S": "%Library.String",
                "I": "%Integer",
                "N": "%Numeric",
                "B": "%Boolean",
                "D": "%Date",
                "TS": "%TimeStamp",
                "L": "list Of %Integer",
                "A": "array Of T.Inner",
                "X": "Vendor.Unknown",
                "copy": "%String",
            },
            "T.Inner": {"V": "%String"},
        }
    )
    model = model_for("T.Types")
    assert model is not None and model.__qualname__ == "T.Types" and model.__module__ == "iris"
    value = model.model_validate(
        {
            "S": "s",
            "I": "7",
            "N": "2.5",
            "B": "1",
            "D": "66840",  # $HOROLOG day number
            "TS": "20240102030405",
            "L": ["1", 2],
            "A": {"k": {"V": "v"}},
            "X": "kept",
            "copy": "c",
        }
    )
    assert (value.S, value.I, value.N, value.B) == ("s", 7, 2.5, True)  # type: ignore[attr-defined]
    assert value.D == date(2024, 1, 1)  # type: ignore[attr-defined]
    assert value.TS == datetime(2024, 1, 2, 3, 4, 5)  # type: ignore[attr-defined]
    assert value.L == [1, 2] and value.A["k"].V == "v"  # type: ignore[attr-defined]
    assert value.model_dump(by_alias=True)["copy"] == "c"  # a BaseModel name, kept by alias
    assert notes == [
        "T.Types.X: class Vendor.Unknown is not defined beside the transform; its values are "
        "kept as they come (text, or open properties)"
    ]
    with pytest.raises(ValueError, match="Extra"):
        model.model_validate({"Nope": 1})


def test_a_dtl_builds_its_target_model_from_hl7(export: Path) -> None:
    t = load_dtl(export / "dtl" / "Demo.DTL.ToLab.cls")
    out = t.apply(ORU)
    assert type(out).__qualname__ == "Demo.Msg.LabResult"
    assert out.model_dump() == {
        "Facility": None,
        "PatientId": "123",
        "Observations": [
            {"Code": "WBC", "Value": 5.0, "Notes": ["n1"]},
            {"Code": "RBC", "Value": 4.5, "Notes": ["n2"]},
        ],
        "Codes": {"WBC": "5", "RBC": "4.5"},
        "Count": 2,
        "Taken": datetime(2024, 1, 1, 12, 0),
        "Born": date(1980, 1, 1),
        "Flagged": True,
        "Device": None,
    }


def test_a_dtl_reads_an_object_source_lists_arrays_and_methods(export: Path) -> None:
    lab = load_dtl(export / "dtl" / "Demo.DTL.ToLab.cls").apply(ORU)
    (export / "dtl" / "Demo.DTL.FromLab.xml").write_text(FROM_LAB)
    back = load_dtl(export / "dtl" / "Demo.DTL.FromLab.xml")
    assert list(back.message_classes) == ["Demo.Msg.LabResult", "Demo.Msg.Obs"]
    assert back.apply(lab).to_er7().split("\r")[1:] == [
        "PID|2||123||4.5",
        "OBX|||WBC||10",
        "OBX|||RBC||9",
        "NTE|||RBC=4.5~WBC=5",
    ]


def test_a_property_the_target_class_lacks_is_refused_at_load(export: Path) -> None:
    path = export / "dtl" / "Demo.DTL.ToLab.cls"
    path.write_text(TO_LAB.replace("target.PatientId", "target.PatientID"))
    with pytest.raises(ConfigError) as refused:
        load_dtl(path)
    assert str(refused.value).startswith(
        f"{path}:6: target.PatientID: Demo.Msg.LabResult has no property 'PatientID' (it has "
        "Facility, PatientId, Observations"
    )


def test_a_value_the_model_refuses_fails_the_message_naming_the_transform(export: Path) -> None:
    path = export / "dtl" / "Demo.DTL.ToLab.cls"
    path.write_text(TO_LAB.replace("source.{PID:7}", '"not a date"'))
    with pytest.raises(MessageError, match=r"transform Demo.DTL.ToLab: the target is not a valid "):
        load_dtl(path).apply(ORU)


def test_the_transform_yaml_carries_its_classes(export: Path, tmp_path: Path) -> None:
    t = load_dtl(export / "dtl" / "Demo.DTL.ToLab.cls")
    written = tmp_path / "to_lab.yaml"
    written.write_text(t.to_yaml())
    assert "message_classes:" in written.read_text()
    again = load_transform(written)
    assert again.apply(ORU).model_dump() == t.apply(ORU).model_dump()


def test_bodies_travel_by_their_iris_class_path(export: Path) -> None:
    lab = load_dtl(export / "dtl" / "Demo.DTL.ToLab.cls").apply(ORU)
    envelope = Envelope.wrap(lab, target="EMR")
    assert envelope.body_type == "iris:Demo.Msg.LabResult"
    wire = Envelope.from_wire(envelope.to_wire())
    assert wire.payload() == lab and type(wire.payload()) is type(lab)


def test_a_process_without_the_definition_reads_the_body_as_open_properties() -> None:
    model = body_class("iris:Demo.Never.Registered")
    value = Envelope(body_type="iris:Demo.Never.Registered", body={"A": 1, "B": [2]}).payload()
    assert isinstance(value, BaseModel) and type(value) is model
    assert value.model_dump() == {"A": 1, "B": [2]}


def test_classes_in_the_same_export_as_the_dtl_are_used(tmp_path: Path) -> None:
    body = TO_LAB.split("{\n<transform", 1)[1].rsplit("</transform>", 1)[0]
    export = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Export generator="IRIS" version="26">\n'
        '<Class name="Demo.DTL.Export"><Super>Ens.DataTransformDTL</Super>\n'
        '<XData name="DTL"><Data><![CDATA[<transform' + body + "</transform>]]></Data></XData>\n"
        "</Class>\n"
        + OBS_EXPORT.split('<Export generator="IRIS" version="26">\n')[1].replace("</Export>\n", "")
        + '<Class name="Demo.Msg.LabResult"><Super>Ens.Request</Super>\n'
        '<Property name="PatientId"><Type>%String</Type></Property>\n'
        '<Property name="Observations"><Type>Demo.Msg.Obs</Type><Collection>list</Collection>'
        "</Property>\n"
        '<Property name="Codes"><Type>%String</Type><Collection>array</Collection></Property>\n'
        '<Property name="Count"><Type>%Integer</Type></Property>\n'
        '<Property name="Taken"><Type>%TimeStamp</Type></Property>\n'
        '<Property name="Born"><Type>%Date</Type></Property>\n'
        '<Property name="Flagged"><Type>%Boolean</Type></Property>\n'
        "</Class>\n</Export>\n"
    )
    (tmp_path / "everything.xml").write_text(export)
    t = load_dtl(tmp_path / "everything.xml")
    assert t.name == "Demo.DTL.Export" and t.notes == []
    assert t.message_classes["Demo.Msg.LabResult"]["Observations"] == "list Of Demo.Msg.Obs"
    out = t.apply(ORU)
    assert out.Observations[1].Code == "RBC" and out.Codes == {"WBC": "5", "RBC": "4.5"}


BATCH = """Class Demo.Rec.Batch Extends (%Persistent, EnsLib.RecordMap.SimpleBatch)
{
Relationship Records As Demo.Rec.Record [ Cardinality = many, Inverse = %ParentBatch ];
}
"""
RECORD = """Class Demo.Rec.Record Extends (%Persistent, Ens.Request, EnsLib.RecordMap.Base)
{
Property Name As %String(MAXLEN = 20, XMLPATTERN = "[a-z]+") [ Required ];
Property Address As Address;
Property Count As %Integer;
Relationship %ParentBatch As Demo.Rec.Batch [ Cardinality = one, Inverse = Records ];
}
"""
COPY_BATCH = """<transform sourceClass='Demo.Rec.Batch' targetClass='Demo.Rec.Batch' create='new'>
<assign value='source.%Source' property='target.%Source'/>
<foreach property='source.Records()' key='k1'>
<assign value='source.Records.(k1).Name' property='target.Records.(k1).Address.City'/>
<assign value='source.Records.(k1).Count' property='target.Records.(k1).Count'/>
</foreach>
</transform>"""


def test_record_maps_relationships_package_names_and_percent_properties(tmp_path: Path) -> None:
    (tmp_path / "Demo.Rec.Batch.cls").write_text(BATCH)
    (tmp_path / "Demo.Rec.Record.cls").write_text(RECORD)
    (tmp_path / "t.xml").write_text(COPY_BATCH)
    classes, notes = class_definitions(["Demo.Rec.Batch"], near=tmp_path / "t.xml")
    assert classes == {
        "Demo.Rec.Batch": {"%Source": "%String", "Records": "list Of Demo.Rec.Record"},
        "Demo.Rec.Record": {
            "%Source": "%String",
            "Name": "%String",  # parameters with brackets in a string do not hide a property
            "Address": "Demo.Rec.Address",  # a type without a package is in the class's own
            "Count": "%Integer",
        },
    }
    assert notes[0].startswith("class Demo.Rec.Address is not defined beside the transform")
    t = load_dtl(tmp_path / "t.xml")
    out = t.apply({"%Source": "in.csv", "Records": [{"Name": "ann", "Count": ""}]})
    assert out.model_dump(by_alias=True) == {
        "%Source": "in.csv",
        # a class not defined here holds what it is given; "" in an %Integer is no value
        "Records": [{"%Source": None, "Name": None, "Address": {"City": "ann"}, "Count": None}],
    }


def test_a_class_extending_a_virtual_document_is_built_as_a_document_tree(tmp_path: Path) -> None:
    (tmp_path / "HPRIM.Doc.cls").write_text(
        "Class HPRIM.Doc Extends (%Persistent, EnsLib.EDI.Document)\n{\n"
        "Property Envelope As %String;\n}\n"
    )
    (tmp_path / "t.xml").write_text(
        "<transform sourceClass='HPRIM.Doc' targetClass='HPRIM.Doc' create='copy'>"
        "<assign value='..ToUpper(source.{H:Sender})' property='target.{H:Sender}'/></transform>"
    )
    t = load_dtl(tmp_path / "t.xml")
    assert t.message_classes == {}
    assert t.notes == [
        "class HPRIM.Doc is a virtual document (it extends EnsLib.EDI.Document): its {...} "
        "paths address a document tree"
    ]
    assert t.apply({"H": {"Sender": "lab"}, "P": ["x"]}) == {"H": {"Sender": "LAB"}, "P": ["x"]}


def test_a_class_file_of_another_export_is_not_the_class(tmp_path: Path) -> None:
    dtl = "<transform sourceClass='EnsLib.HL7.Message' targetClass='Demo.Msg'>"
    dtl += "<assign value='1' property='target.Mine'/></transform>"
    (tmp_path / "acme__lab__Demo.DTL.cls.xml").write_text(dtl)
    other = "Class Demo.Msg Extends Ens.Request\n{\nProperty Theirs As %String;\n}\n"
    (tmp_path / "other__repo__Demo.Msg.cls").write_text(other)
    t = load_dtl(tmp_path / "acme__lab__Demo.DTL.cls.xml")
    assert t.message_classes == {}  # not acme__lab's class: open, so target.Mine is fine
    (tmp_path / "acme__lab__Demo.Msg.cls").write_text(other.replace("Theirs", "Mine"))
    assert load_dtl(tmp_path / "acme__lab__Demo.DTL.cls.xml").message_classes == {
        "Demo.Msg": {"Mine": "%String"}
    }


def test_a_class_extending_an_hl7_message_is_an_hl7_message(tmp_path: Path) -> None:
    (tmp_path / "Demo.Local.ADT.cls").write_text(
        "Class Demo.Local.ADT Extends EnsLib.HL7.Message\n{\n}\n"
    )
    (tmp_path / "t.xml").write_text(
        "<transform sourceClass='Demo.Local.ADT' targetClass='Demo.Local.ADT' create='copy'>"
        "<assign value='\"X\"' property='target.{PID:5.1}'/></transform>"
    )
    t = load_dtl(tmp_path / "t.xml")
    assert t.document_classes == {"Demo.Local.ADT": "EnsLib.HL7.Message"} and t.hl7_target
    assert t.apply(ORU).get("PID-5.1") == "X"
