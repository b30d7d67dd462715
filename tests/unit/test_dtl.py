"""DTL: the sample transforms load and do what their XML says; what cannot run is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hie.cli import main
from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.iris.dtl import load_dtl, parse_dtl
from hie.rules.loader import load_rules, load_transform

DTL = Path(__file__).resolve().parents[3] / "shared" / "samples" / "iris" / "dtl"
needs_samples = pytest.mark.skipif(not DTL.exists(), reason="shared/samples/iris is absent")

ADT = HL7Message(
    "MSH|^~\\&|SND|FAC|RCV|FAC|20240102||ADT^A08|7|P|2.3.1\rEVN|A08|20240102\r"
    "PID|1||123||Smith^Ann||19800101|F\rNK1|1|Smith^Bob\rNK1|2|Smith^Cy\rPV1|1|I\r"
)


@needs_samples
def test_adt_last_name_transform() -> None:
    t = load_dtl(DTL / "iris-ensdemo__Demo.HL7.MsgRouter.ADTLastNameTransform.cls")
    out = t.apply(ADT)
    assert out.get("MSH-9.1") == "ADT" and out.get("MSH-9.2") == "A01"
    assert out.get("MSH-5") == "TEST" and out.get("PID-5.1") == "NEWNAME"
    assert out.get("PID-5.2") == "Ann"
    assert out.segment_names() == ["MSH", "EVN", "PID", "NK1", "PV1"]  # only NK1(1) copied
    assert ADT.get("PID-5.1") == "Smith"  # the source is untouched


@needs_samples
def test_sms_transform_builds_an_object() -> None:
    t = load_dtl(DTL / "iris-demo-appointmentsms__IRISDemo.DTL.HL7ToSMSTransformer.cls")
    siu = HL7Message(
        "MSH|^~\\&|A|B|C|D|1||SIU^S12|1|P|2.5\rSCH|1||||||||||^^^20240301093000\r"
        "PID|1||9||Doe^Jane||||||||555-1234\r"
    )
    out = t.apply(siu)  # the class is not defined beside it: an open model of its name
    assert type(out).__qualname__ == "IRISDemo.BO.SNS.Request"
    assert out.model_dump() == {
        "PhoneNumber": "555-1234",
        "LastName": "Doe",
        "FirstName": "Jane",
        "AppointmentTime": "2024-03-01 09:30:00",
    }


CODE = """<transform sourceClass="EnsLib.HL7.Message" targetClass="EnsLib.HL7.Message"
 create="copy">
<assign value='"X"' property='target.{PID:5.1}' action='set'/>
<if condition='source.{PID:8}="F"'><true><assign value='"W"' property='target.{PID:8}'/></true>
<false><assign property='target.{PID:8}' action='clear'/></false></if>
<foreach property='source.{NK1()}' key='k1'>
<assign value='source.{NK1(k1):2.1} _ "!"' property='target.{NK1(k1):2.1}' action='set'/>
</foreach>
<comment><annotation>why</annotation></comment>
<code><![CDATA[ Set x=1 Write x ]]></code>
<sql><![CDATA[ SELECT Name INTO :x FROM Demo.Patient ]]></sql>
</transform>"""


def test_code_outside_the_subset_and_sql_are_refused_unless_partial() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_dtl(CODE, source="t.xml")
    assert str(refused.value).startswith(
        "t.xml:10: <code> at line 10, its line 1: 'Write x' uses 'Write', which is not "
        "ObjectScript HIE runs; log with $$$TRACE(...) or a <trace> action instead"
    )
    t = parse_dtl(CODE, source="t.xml", allow_partial=True)
    assert [s.split(":")[0] for s in t.skipped] == ["<code> at t.xml", "<sql> at t.xml"]
    assert t.skipped[1].startswith("<sql> at t.xml:11: t.xml:11: <sql> queries the IRIS database")
    assert "lookup table (..Lookup(table, key))" in t.skipped[1]
    out = t.apply(ADT)
    assert out.get("PID-5.1") == "X" and out.get("PID-8") == "W"
    assert out.get_all("NK1-2.1") == ["Smith!", "Smith!"]


def test_yaml_round_trip(tmp_path: Path) -> None:
    text = CODE.replace("Write x", "Set target.{PID:7}=x_x").split("<sql>")[0] + "</transform>"
    t = parse_dtl(text, source="t.xml")
    (tmp_path / "t.yaml").write_text(t.to_yaml())
    again = load_transform(tmp_path / "t.yaml")
    assert again.apply(ADT).to_er7() == t.apply(ADT).to_er7()
    assert again.apply(ADT).get("PID-7") == "11"


SAMPLE_CLASSES = sorted([*DTL.glob("*.cls"), *DTL.parent.joinpath("rules").glob("*.cls")])


@needs_samples
@pytest.mark.parametrize("path", SAMPLE_CLASSES, ids=[p.name for p in SAMPLE_CLASSES])
def test_every_sample_dtl_and_rule_class_imports_clean(path: Path, tmp_path: Path) -> None:
    assert main(["import-iris", str(path), "-o", str(tmp_path), "--json"]) == 0
    report = json.loads((tmp_path / "report.json").read_text(encoding="utf-8"))
    assert report["errors"] == [] and [c["file"] for c in report["converted"]] == [str(path)]
    written = Path(report["converted"][0]["output"])
    loaded = load_rules(written) if "rules" in written.parts else load_transform(written)
    assert loaded.name == report["converted"][0]["name"] != ""
