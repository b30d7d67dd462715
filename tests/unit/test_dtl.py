"""DTL: the sample transforms load and do what their XML says; code blocks are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.iris.dtl import load_dtl, parse_dtl
from hie.rules.loader import load_transform

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
    out = t.apply(siu)
    assert out == {
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
<code><![CDATA[ set x=1 ]]></code>
</transform>"""


def test_code_is_refused_unless_partial() -> None:
    with pytest.raises(ConfigError, match=r"t.xml:10: <code>"):
        parse_dtl(CODE, source="t.xml")
    t = parse_dtl(CODE, source="t.xml", allow_partial=True)
    assert t.skipped == ["<code> at t.xml:10"]
    out = t.apply(ADT)
    assert out.get("PID-5.1") == "X" and out.get("PID-8") == "W"
    assert out.get_all("NK1-2.1") == ["Smith!", "Smith!"]


def test_yaml_round_trip(tmp_path: Path) -> None:
    t = parse_dtl(CODE.replace("<code><![CDATA[ set x=1 ]]></code>", ""), source="t.xml")
    (tmp_path / "t.yaml").write_text(t.to_yaml())
    again = load_transform(tmp_path / "t.yaml")
    assert again.apply(ADT).to_er7() == t.apply(ADT).to_er7()
