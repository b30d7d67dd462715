"""IRIS production definitions (.cls / exported .xml) -> HIE productions and migration reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hie.cli import main
from hie.config.loader import load_production
from hie.errors import ProductionError
from hie.iris.classfile import file_kind
from hie.iris.production import load_iris_production, migration_report, read_iris_production

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT.parent / "shared" / "samples" / "iris" / "productions"
SAMPLE_FILES = sorted(SAMPLES.glob("*.cls")) if SAMPLES.is_dir() else []

PRODUCTION_XML = """\
<Production Name="Test.HL7 Production" TestingEnabled="true" LogGeneralTraceEvents="false">
  <Description>Synthetic production</Description>
  <ActorPoolSize>3</ActorPoolSize>
  <Item Name="ADT In" Category="ADT" ClassName="EnsLib.HL7.Service.TCPService" PoolSize="1" \
Enabled="true" Foreground="false" Comment="from the PAS" LogTraceEvents="false" Schedule="">
    <Setting Target="Adapter" Name="Port">2575</Setting>
    <Setting Target="Host" Name="AckMode">App</Setting>
    <Setting Target="Host" Name="TargetConfigNames">ADT_Router, ADT Audit</Setting>
    <Setting Target="Host" Name="FrobnicateLevel">11</Setting>
  </Item>
  <Item Name="ADT_Router" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine" PoolSize="0" \
Enabled="true">
    <Setting Target="Host" Name="BusinessRuleName">Test.ADTRoutingRule</Setting>
    <Setting Target="Host" Name="TargetConfigNames">ADT_Out,ADT_File</Setting>
  </Item>
  <Item Name="ADT_Out" ClassName="EnsLib.HL7.Operation.TCPOperation" PoolSize="1" \
Enabled="true">
    <Setting Target="Adapter" Name="IPAddress">10.0.0.5</Setting>
    <Setting Target="Adapter" Name="Port">6661</Setting>
    <Setting Target="Host" Name="RetryInterval">7</Setting>
    <Setting Target="Host" Name="FailureTimeout">-1</Setting>
  </Item>
  <Item Name="ADT_File" ClassName="EnsLib.HL7.Operation.FileOperation" PoolSize="4" \
Enabled="false">
    <Setting Target="Adapter" Name="FilePath">/data/out</Setting>
    <Setting Target="Host" Name="Filename">%f_%Q.hl7</Setting>
  </Item>
  <Item Name="Ens.Alert" ClassName="EnsLib.EMail.AlertOperation" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="SMTPServer">smtp.example.test</Setting>
    <Setting Target="Host" Name="Recipient">oncall@example.test,ops@example.test</Setting>
  </Item>
  <Item Name="ADT Audit" ClassName="Test.Custom.AuditOperation" PoolSize="1" Enabled="true">
    <Setting Target="Host" Name="Threshold">5</Setting>
  </Item>
</Production>
"""


def _cls(xml: str = PRODUCTION_XML, name: str = "Test.Production") -> str:
    head = f"Class {name} Extends Ens.Production\n{{\n\nXData ProductionDefinition\n{{\n"
    return f"{head}{xml}}}\n\n}}\n"


def _export(xml: str = PRODUCTION_XML) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<Export generator="IRIS" version="26">\n'
        '<Class name="Test.Production">\n'
        "<Super>Ens.Production</Super>\n"
        '<XData name="ProductionDefinition">\n'
        f"<Data><![CDATA[\n{xml}]]></Data>\n"
        "</XData>\n</Class>\n</Export>\n"
    )


def _line(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture(params=["cls", "export-xml", "root-xml"])
def synthetic(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Path, str]:
    """The synthetic production written as a class, an export, and a bare <Production>."""
    text = {"cls": _cls(), "export-xml": _export(), "root-xml": PRODUCTION_XML}[request.param]
    path = tmp_path / ("Test.Production.cls" if request.param == "cls" else "export.xml")
    path.write_text(text, encoding="utf-8")
    return path, text


@pytest.mark.skipif(not SAMPLE_FILES, reason="../shared/samples/iris/productions is not present")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_production_loads_and_explains_every_unmapped_entry(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = read_iris_production(path)
    assert result.production.items, "at least some items map"
    for item in result.items:
        assert item.hie_class is not None or item.reason, item.name
        for setting in item.unmapped_settings:
            assert setting.reason and setting.line, (item.name, setting.name)

    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "graph:" in out and "migration report:" in out
    for item in result.unmapped:
        assert item.name in out


def test_synthetic_production_maps_items_settings_targets_and_fifo(
    synthetic: tuple[Path, str],
) -> None:
    path, text = synthetic
    result = read_iris_production(path)
    production = result.production
    reports = {r.name: r for r in result.items}
    assert production.name == "Test.HL7_Production"
    assert production.description == "Synthetic production"

    service = production.item("ADT_In")  # spaces in IRIS names become "_"
    assert service.class_name == "HL7TCPService"
    assert service.settings["port"] == 2575
    assert service.settings["ack_mode"] == "application"
    assert service.targets == ["ADT_Router"]  # "ADT Audit" is custom, so its target is dropped
    assert service.fifo is True and service.category == "ADT" and service.comment == "from the PAS"
    assert service.line == _line(text, 'Name="ADT In"')
    unmapped = {u.name: u for u in reports["ADT_In"].unmapped_settings}
    assert unmapped["FrobnicateLevel"].value == "11"
    assert unmapped["FrobnicateLevel"].line == _line(text, "FrobnicateLevel")
    assert any("ADT Audit" in note for note in reports["ADT_In"].notes)

    router = production.item("ADT_Router")
    assert router.class_name == "HL7RoutingEngine"
    assert router.settings["rules"] == "Test.ADTRoutingRule"
    assert router.targets == ["ADT_Out", "ADT_File"]
    assert (router.pool_size, router.fifo) == (3, False)  # PoolSize=0: the shared actor pool
    assert result.rules == {"ADT_Router": "Test.ADTRoutingRule"}

    out = production.item("ADT_Out")
    assert out.class_name == "HL7TCPOperation"
    assert out.settings["host"] == "10.0.0.5" and out.settings["port"] == 6661
    assert out.settings["retry_interval"] == 7 and out.settings["failure_timeout"] == -1
    assert (out.pool_size, out.fifo) == (1, True)

    file_op = production.item("ADT_File")
    assert file_op.class_name == "HL7FileOperation" and file_op.enabled is False
    assert file_op.settings["file_path"] == "/data/out"
    assert file_op.settings["filename"] == "{control_id}_{timestamp}.hl7"  # from %f_%Q
    assert (file_op.pool_size, file_op.fifo) == (4, False)

    alert = reports["Ens.Alert"]
    assert alert.maps_to == "EmailAlertOperation"
    assert alert.hie_class == "EmailAlertOperation", alert.reason
    assert result.production.item("Ens.Alert").settings["recipients"] == [
        "oncall@example.test",
        "ops@example.test",
    ]

    custom = reports["ADT_Audit"]
    assert custom.hie_class is None and custom.iris_class == "Test.Custom.AuditOperation"
    assert "mapping file" in (custom.reason or "")
    assert custom.iris_settings == {"Threshold": "5"}


def test_strict_load_refuses_unmapped_items_with_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "Test.Production.cls"
    text = _cls()
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProductionError) as caught:
        load_production(path)  # what `start` uses
    problems = {p.item: p for p in caught.value.problems}
    assert problems["ADT_Audit"].line == _line(text, 'Name="ADT Audit"')
    assert problems["ADT_Audit"].file == str(path)
    assert load_iris_production(path, strict=False).item("ADT_In")


def test_mapping_file_maps_custom_classes_and_settings(tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(
        "classes:\n  Test.Custom.AuditOperation: FileOperation\n"
        "settings:\n  Test.Custom.AuditOperation: {Threshold: file_path}\n",
        encoding="utf-8",
    )
    path = tmp_path / "Test.Production.cls"
    path.write_text(_cls(), encoding="utf-8")
    result = read_iris_production(path, mapping)
    audit = result.production.item("ADT_Audit")
    assert audit.class_name == "FileOperation" and audit.settings == {"file_path": "5"}
    assert result.production.item("ADT_In").targets == ["ADT_Router", "ADT_Audit"]


def test_file_mistakes_are_reported_together_with_lines(tmp_path: Path) -> None:
    xml = """\
<Production Name="Broken">
  <Item Name="NoClass" PoolSize="1"/>
  <Item Name="Twice" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine"/>
  <Item Name="Twice" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine"/>
  <Item Name="BadPool" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine" PoolSize="lots"/>
</Production>
"""
    text = _cls(xml)
    path = tmp_path / "Broken.cls"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProductionError) as caught:
        read_iris_production(path)
    found = {(p.item, p.line) for p in caught.value.problems}
    assert ("NoClass", _line(text, "NoClass")) in found
    second_twice = [i for i, line in enumerate(text.splitlines(), 1) if "Twice" in line][1]
    assert ("Twice", second_twice) in found
    assert ("BadPool", _line(text, "BadPool")) in found
    assert all(p.file == str(path) for p in caught.value.problems)


def test_duplicate_name_with_one_enabled_keeps_the_enabled_item(tmp_path: Path) -> None:
    # IRIS allows several items with one name as long as at most one is enabled.
    xml = """\
<Production Name="Dup">
  <Item Name="R" ClassName="EnsLib.MsgRouter.RoutingEngine" Enabled="false" PoolSize="2"/>
  <Item Name="R" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine" Enabled="true"/>
</Production>
"""
    path = tmp_path / "Dup.xml"
    path.write_text(xml, encoding="utf-8")
    result = read_iris_production(path)
    assert [i.class_name for i in result.production.items] == ["HL7RoutingEngine"]
    assert any("left out" in note for note in result.notes)


def test_activity_monitoring_and_unknown_ensemble_classes_are_explained() -> None:
    from hie.iris.mapping import Mapping, hie_class_for

    name, reason = hie_class_for("Ens.Activity.Operation.Local", Mapping())
    assert name is None and "activity monitoring" in (reason or "")
    name, reason = hie_class_for("EnsLib.FTP.PassthroughService", Mapping())
    assert name is None and "no HIE equivalent" in (reason or "")


def test_inbound_client_mode_is_reported_unsupported(tmp_path: Path) -> None:
    xml = """\
<Production Name="Client">
  <Item Name="In" ClassName="EnsLib.HL7.Service.TCPService">
    <Setting Target="Adapter" Name="IPAddress">!10.1.1.1</Setting>
    <Setting Target="Adapter" Name="Port">5000</Setting>
  </Item>
</Production>
"""
    path = tmp_path / "client.xml"
    path.write_text(xml, encoding="utf-8")
    item = read_iris_production(path).items[0]
    assert [u.name for u in item.unmapped_settings] == ["IPAddress"]
    assert "connect out" in item.unmapped_settings[0].reason


def test_validate_json_on_iris_file_has_a_per_item_migration_report(tmp_path: Path) -> None:
    path = tmp_path / "Test.Production.cls"
    path.write_text(_cls(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "hie.cli", "validate", "--json", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["migration"]
    items = {i["name"]: i for i in report["items"]}
    assert items["ADT_In"]["iris_class"] == "EnsLib.HL7.Service.TCPService"
    assert items["ADT_In"]["hie_class"] == "HL7TCPService"
    assert "FrobnicateLevel" in [u["name"] for u in items["ADT_In"]["unmapped_settings"]]
    assert items["ADT_Audit"]["hie_class"] is None and items["ADT_Audit"]["reason"]
    assert "ADT_Audit" in report["unmapped_items"]
    assert migration_report(path)["items"] == report["items"]


RULE = """Class Test.ADTRoutingRule Extends Ens.Rule.Definition
{
XData RuleDefinition [ XMLNamespace = "http://www.intersystems.com/rule" ]
{
<ruleDefinition alias="" context="EnsLib.HL7.MsgRouter.RoutingEngine" production="">
<ruleSet name="" effectiveBegin="" effectiveEnd="">
<rule name="all" disabled="false"><when condition="1"><send transform="" target="ADT_Out"></send>
</when></rule>
</ruleSet>
</ruleDefinition>
}
}
"""


def test_import_iris_writes_yaml_that_loads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "Test.Production.cls"
    path.write_text(_cls(), encoding="utf-8")
    # The router's rule class, exported beside the production as IRIS users do.
    (tmp_path / "Test.ADTRoutingRule.cls").write_text(RULE, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["import-iris", str(path), "-o", str(out)]) == 1  # the custom item is unmapped
    assert not (out / "Test.HL7_Production.yaml").exists()
    assert "ADT_Audit" in (out / "report.txt").read_text(encoding="utf-8")

    assert main(["import-iris", str(path), "-o", str(out), "--allow-partial", "--json"]) == 0
    written = out / "Test.HL7_Production.yaml"
    assert "NOT CONVERTED: ADT_Audit" in written.read_text(encoding="utf-8")
    loaded = load_production(written)
    original = read_iris_production(path).production
    assert loaded.name == original.name
    dump = {"by_alias": True, "exclude": {"line"}}
    assert [i.model_dump(**dump) for i in loaded.items] == [
        i.model_dump(**dump) for i in original.items
    ]
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert "ADT_Audit" in report["productions"][0]["unmapped_items"]


def test_file_kind_detects_productions_rules_and_transforms(tmp_path: Path) -> None:
    rule = tmp_path / "Rule.cls"
    rule.write_text(
        "Class Test.Rule Extends Ens.Rule.Definition\n{\nXData RuleDefinition\n{\n"
        "<ruleDefinition/>\n}\n}\n",
        encoding="utf-8",
    )
    dtl = tmp_path / "dtl.xml"
    dtl.write_text(
        '<Export><Class name="T.X"><Super>Ens.DataTransformDTL</Super></Class></Export>',
        encoding="utf-8",
    )
    prod = tmp_path / "p.xml"
    prod.write_text(_export(), encoding="utf-8")
    assert [file_kind(p) for p in (rule, dtl, prod)] == ["rule", "dtl", "production"]


BOMB = """<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;">]>
<Production Name="Bomb"><Description>&lol2;</Description></Production>
"""
EXTERNAL = """<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Production Name="X"><Description>&xxe;</Description></Production>
"""


@pytest.mark.parametrize("xml", [BOMB, EXTERNAL], ids=["entity-expansion", "external-entity"])
def test_xml_bombs_and_external_entities_are_refused(xml: str, tmp_path: Path) -> None:
    as_xml = tmp_path / "evil.xml"
    as_xml.write_text(xml, encoding="utf-8")
    as_cls = tmp_path / "Evil.cls"
    as_cls.write_text(_cls(xml.split("\n", 1)[1]), encoding="utf-8")
    for path in (as_xml, as_cls):
        with pytest.raises(ProductionError) as caught:
            read_iris_production(path)
        assert "DTD" in str(caught.value) and caught.value.problems[0].file == str(path)
