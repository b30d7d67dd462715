"""IRIS routing rules: the sample classes load and route as IRIS would; YAML round trip."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.iris.rules import parse_iris_rules
from hie.rules.loader import load_rules

RULES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "iris" / "rules"
XYZ = RULES / "iris-ensdemo__Demo.HL7.MsgRouter.XYZRoutingRule.cls"
EMR = RULES / "iris-demo-appointmentsms__IRISDemo.EMRHL7FeedRoutingRule.cls"
needs_samples = pytest.mark.skipif(not RULES.exists(), reason="shared/samples/iris is absent")


def msg(kind: str, name: str = "Smith", version: str = "2.5") -> HL7Message:
    return HL7Message(f"MSH|^~\\&|A|B|C|D|1||{kind}|1|P|{version}\rPID|1||1||{name}^Ann\r")


@needs_samples
def test_xyz_rule_routes_by_last_name() -> None:
    rules = load_rules(XYZ)
    hit = rules.evaluate(msg("ADT^A08^ADT_A01", "Zed"))
    assert [(s.target, s.transforms) for s in hit.sends] == [
        ("Other_FileOperation", ["Demo.HL7.MsgRouter.ADTLastNameTransform"])
    ]
    assert hit.returned and hit.fired == ["#3"]
    miss = rules.evaluate(msg("ADT^A08^ADT_A01", "Adams"))
    assert [s.target for s in miss.sends] == ["Regular_FileOperation"]
    orm = rules.evaluate(msg("ORM^O01^ORM_O01", "Smith"))
    assert [s.target for s in orm.sends] == ["Other_FileOperation"]


@needs_samples
def test_emr_rule_needs_source_and_doc_name() -> None:
    rules = load_rules(EMR)
    siu = msg("SIU^S12", version="2.5")
    out = rules.evaluate(siu, source="EMR HL7 Feed")
    assert [s.target for s in out.sends] == [
        "AWS SNS Operation",
        "EMR HL7 Appointment Store Operation",
    ]
    assert rules.evaluate(siu, source="Other").fired == ["none"]
    assert rules.evaluate(msg("ADT^A01"), source="EMR HL7 Feed").sends == []
    assert rules.evaluate(msg("SIU^S12", version="2.3"), source="EMR HL7 Feed").sends == []


@needs_samples
@pytest.mark.parametrize("path", [XYZ, EMR])
def test_yaml_round_trip_routes_the_same(path: Path, tmp_path: Path) -> None:
    rules = load_rules(path)
    (tmp_path / "r.yaml").write_text(rules.to_yaml())
    again = load_rules(tmp_path / "r.yaml")
    for m in [msg("ADT^A08^ADT_A01", "Zed"), msg("SIU^S12"), msg("ORM^O01", "Sam"), msg("X^Y")]:
        assert again.evaluate(m, source="EMR HL7 Feed") == rules.evaluate(m, source="EMR HL7 Feed")


DEF = """<ruleDefinition>
<ruleSet name="old" effectiveBegin="2000-01-01" effectiveEnd="2020-12-31">
<rule name="old"><when condition="1"><send target="Old"/></when></rule>
</ruleSet>
<ruleSet name="new" effectiveBegin="2021-01-01">
<rule name="off" disabled="true"><when condition="1"><send target="Never"/></when></rule>
<rule name="adt"><constraint name="docName" value="ADT_A01,ADT_A04"/>
<when condition='HL7.{PID:5.1}="X"'><send target="A,B" transform="T1,T2"/></when>
<otherwise><send target="C"/><return/></otherwise></rule>
<rule name="last"><when condition="1"><delete/></when></rule>
</ruleSet></ruleDefinition>"""


def test_effective_dates_disabled_rules_otherwise_and_return() -> None:
    rules = parse_iris_rules(DEF, source="d.xml")
    old = rules.evaluate(msg("ADT^A01"), now=datetime(2019, 1, 1))
    assert [s.target for s in old.sends] == ["Old"]
    new = rules.evaluate(msg("ADT^A01", "X"), now=datetime(2024, 1, 1))
    assert [(s.target, s.transforms) for s in new.sends] == [
        ("A", ["T1", "T2"]),
        ("B", ["T1", "T2"]),
    ]
    assert new.fired == ["adt", "last"] and new.deleted
    other = rules.evaluate(msg("ADT^A01", "Y"), now=datetime(2024, 1, 1))
    assert [s.target for s in other.sends] == ["C"] and other.returned and not other.deleted


def test_bad_condition_names_file_and_line() -> None:
    bad = DEF.replace('HL7.{PID:5.1}="X"', "HL7.{PID:5.1} = = 1")
    with pytest.raises(ConfigError, match=r"d.xml:8: expression .* column 17"):
        parse_iris_rules(bad, source="d.xml")


OBJECT_RULE = """<ruleDefinition alias="" context="EnsLib.MsgRouter.RoutingEngine" production="">
<ruleSet name="" effectiveBegin="" effectiveEnd="">
<rule name="pacs">
<constraint name="msgClass" value="Demo.Msg.Event"></constraint>
<when condition='Document.Info.TargetSystem="PACS"'><send transform="" target="PACS.Out"></send>
</when></rule>
<rule name="hl7 only">
<constraint name="docName" value="ADT_A01"></constraint>
<when condition="1"><send transform="" target="HL7.Out"></send></when></rule>
</ruleSet>
</ruleDefinition>"""


def test_a_general_routing_rule_reads_an_object_documents_properties() -> None:
    from pydantic import BaseModel, create_model

    class Info(BaseModel):
        TargetSystem: str

    event_class = create_model("Demo_Msg_Event", Info=(Info, ...), __module__="iris")
    other_class = create_model("Demo_Msg_Other", Info=(Info, ...), __module__="iris")
    rules = parse_iris_rules(OBJECT_RULE, source="object.rule")
    pacs = event_class(Info=Info(TargetSystem="PACS"))
    ris = event_class(Info=Info(TargetSystem="RIS"))
    assert [s.target for s in rules.evaluate(pacs).sends] == ["PACS.Out"]
    assert rules.evaluate(ris).sends == []
    # Another class does not pass the msgClass constraint; HL7 document names never match objects
    assert rules.evaluate(other_class(Info=Info(TargetSystem="PACS"))).sends == []
