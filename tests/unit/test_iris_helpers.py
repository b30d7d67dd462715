"""Helper classes (``##class(Demo.Util.Helper).Upper(x)``) mapped to Python, how a production
finds its mapping file, and what ``import-iris`` and ``validate`` say about them and about
transforms that cannot be converted."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hie.cli import main
from hie.config.loader import load_production
from hie.errors import ConfigError, ProductionError
from hie.hl7 import HL7Message
from hie.iris.dtl import load_dtl
from hie.iris.helper_classes import bind_helpers, helper_stubs
from hie.iris.mapping import load_mapping
from hie.iris.production import read_iris_production

PRODUCTION = """Class Demo.Production Extends Ens.Production
{
XData ProductionDefinition
{
<Production Name="Demo.Production">
  <Item Name="In" ClassName="EnsLib.HL7.Service.TCPService" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="Port">0</Setting>
    <Setting Target="Host" Name="TargetConfigNames">Router</Setting>
  </Item>
  <Item Name="Router" ClassName="EnsLib.HL7.MsgRouter.RoutingEngine" PoolSize="1" Enabled="true">
    <Setting Target="Host" Name="BusinessRuleName">Demo.Rule</Setting>
    <Setting Target="Host" Name="TargetConfigNames">Out</Setting>
    <Setting Target="Host" Name="LookupTables">tables.xml</Setting>
  </Item>
  <Item Name="Out" ClassName="EnsLib.HL7.Operation.TCPOperation" PoolSize="1" Enabled="true">
    <Setting Target="Adapter" Name="IPAddress">127.0.0.1</Setting>
    <Setting Target="Adapter" Name="Port">6661</Setting>
  </Item>
</Production>
}
}
"""
RULE = """Class Demo.Rule Extends Ens.Rule.Definition
{
XData RuleDefinition
{
<ruleDefinition alias="" context="EnsLib.HL7.MsgRouter.RoutingEngine" production="">
<ruleSet name="" effectiveBegin="" effectiveEnd="">
<rule name="all"><when condition="1"><send transform="Demo.DTL.Names" target="Out"></send>
</when></rule>
</ruleSet>
</ruleDefinition>
}
}
"""
DTL = """Class Demo.DTL.Names Extends Ens.DataTransformDTL
{
XData DTL
{
<transform sourceClass='EnsLib.HL7.Message' targetClass='EnsLib.HL7.Message' create='copy'>
<assign value='##class(Demo.Util.Helper).Upper(source.{PID:5.1})' property='target.{PID:5.1}'/>
<assign value='..Tag(..Lookup("Sex", source.{PID:8}))' property='target.{PID:8}'/>
</transform>
}
}
"""
TABLES = '<lookupTable><entry table="Sex" key="F">Female</entry></lookupTable>'
HELPERS = """
def upper(value):
    return value.upper()


def Tag(value):
    return f"<{value}>"
"""
ADT = HL7Message("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||9||doe^jane||19800101|F\r")


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """The production, its rule and DTL exported into one folder; helper modules unloaded after."""
    (tmp_path / "Demo.Production.cls").write_text(PRODUCTION)
    (tmp_path / "Demo.Rule.cls").write_text(RULE)
    (tmp_path / "Demo.DTL.Names.cls").write_text(DTL)
    (tmp_path / "tables.xml").write_text(TABLES)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith(("demo_helpers", "helpers")):
            del sys.modules[name]
    while str(tmp_path) in sys.path:
        sys.path.remove(str(tmp_path))
    while str(tmp_path / "out") in sys.path:
        sys.path.remove(str(tmp_path / "out"))


def test_the_functions_section_names_module_and_function(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("functions:\n  Demo.Util.Helper.Now: pkg.mod:now\n  Demo.Codes: pkg.codes\n")
    assert load_mapping(path).functions == {
        "Demo.Util.Helper.Now": "pkg.mod:now",
        "Demo.Codes": "pkg.codes",
    }
    path.write_text("functions:\n  Demo.Util.Helper.Now: pkg.mod:now()\n")
    with pytest.raises(ConfigError, match=r"functions.Demo.Util.Helper.Now: 'pkg.mod:now\(\)' is"):
        load_mapping(path)


def test_without_a_mapping_the_router_is_refused_naming_each_call(folder: Path) -> None:
    production = folder / "Demo.Production.cls"
    with pytest.raises(ProductionError) as refused:
        load_production(production)
    messages = [(p.item, p.message) for p in refused.value.problems]
    mapping_file = folder.resolve() / "hie-mapping.yaml"
    dtl = folder / "Demo.DTL.Names.cls"
    assert messages == [
        (
            "Router",
            f"transform Demo.DTL.Names: ##class(Demo.Util.Helper).Upper() is not mapped to Python "
            f"(called at {dtl}:6: ##class(Demo.Util.Helper).Upper(source.{{PID:5.1}})); add "
            f"'Demo.Util.Helper.Upper: module:function' under functions: in {mapping_file}",
        ),
        (
            "Router",
            f"transform Demo.DTL.Names: ..Tag() is not mapped to Python (called at {dtl}:7: "
            f"..Tag(..Lookup(\"Sex\", source.{{PID:8}}))); add '..Tag: module:function' under "
            f"functions: in {mapping_file}",
        ),
    ]


def test_validate_reports_each_unmapped_call_as_a_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", str(folder / "Demo.Production.cls")]) == 0
    out = capsys.readouterr().out
    report = [line for line in out.splitlines() if "not mapped to Python" in line]
    assert len(report) == 2
    assert report[0].strip().startswith("note: will not start as it is: transform Demo.DTL.Names:")


@pytest.mark.parametrize(
    "functions",
    [
        {"Demo.Util.Helper.Upper": "demo_helpers:upper", "..Tag": "demo_helpers:Tag"},
        {"Demo.Util.Helper": "demo_helpers_cls", "..Tag": "demo_helpers_cls:Tag"},
    ],
    ids=["per-method", "whole-class"],
)
def test_hie_mapping_yaml_beside_the_production_maps_the_calls(
    folder: Path, functions: dict[str, str]
) -> None:
    module = next(iter(functions.values())).split(":")[0]
    text = HELPERS.replace("def upper", "def Upper") if module.endswith("cls") else HELPERS
    (folder / f"{module}.py").write_text(text)
    (folder / "hie-mapping.yaml").write_text(yaml.safe_dump({"functions": functions}))
    production = load_production(folder / "Demo.Production.cls")  # no problem left
    assert production.item("Router").settings["lookup_tables"] == ["tables.xml"]
    transform = load_dtl(folder / "Demo.DTL.Names.cls")
    from hie.rules.loader import load_lookup_tables

    tables = load_lookup_tables([folder / "tables.xml"])
    assert bind_helpers([transform], str(folder / "Demo.Production.cls"), tables=tables) == []
    out = transform.apply(ADT)
    assert out.get("PID-5") == "DOE^jane" and out.get("PID-8") == "<Female>"


def test_a_mapped_function_that_cannot_be_imported_is_a_problem(folder: Path) -> None:
    (folder / "hie-mapping.yaml").write_text(
        "functions:\n  Demo.Util.Helper.Upper: no_such_module:upper\n  ..Tag: no_such_module:t\n"
    )
    problems = bind_helpers(
        [load_dtl(folder / "Demo.DTL.Names.cls")], str(folder / "Demo.Production.cls")
    )
    assert len(problems) == 2
    assert problems[0].startswith(
        f"transform Demo.DTL.Names: functions ({folder.resolve() / 'hie-mapping.yaml'}): "
        "Demo.Util.Helper.Upper: cannot import no_such_module:upper: ModuleNotFoundError"
    )


def test_stubs_list_their_call_sites_and_raise(tmp_path: Path) -> None:
    code, entries = helper_stubs(
        {"A.B.Now": ['x.cls:3: ##class(A.B).Now("\\\\")'], "C.D.Now": ["y.cls:4: ..."]},
        taken=["now"],
    )
    assert entries == {"A.B.Now": "helpers:b_now", "C.D.Now": "helpers:d_now"}
    namespace: dict[str, object] = {}
    exec(compile("from typing import Any\n" + code, "helpers.py", "exec"), namespace)
    stub = namespace["b_now"]
    assert callable(stub)
    assert 'x.cls:3: ##class(A.B).Now("\\\\")' in (stub.__doc__ or "")
    with pytest.raises(NotImplementedError, match=r"A.B.Now: write its body in helpers.py"):
        stub(1)


def test_import_iris_writes_helper_stubs_and_the_mapping_that_runs_them(folder: Path) -> None:
    out = folder / "out"
    files = [
        str(folder / n) for n in ("Demo.Production.cls", "Demo.Rule.cls", "Demo.DTL.Names.cls")
    ]
    assert main(["import-iris", *files, "-o", str(out)]) == 0
    mapping = yaml.safe_load((out / "hie-mapping.yaml").read_text())
    assert mapping == {
        "functions": {"..Tag": "helpers:tag", "Demo.Util.Helper.Upper": "helpers:upper"}
    }
    stubs = (out / "helpers.py").read_text()
    assert "def tag(*args: Any) -> Any:" in stubs and "def upper(*args: Any) -> Any:" in stubs
    assert f"{folder / 'Demo.DTL.Names.cls'}:6: ##class(Demo.Util.Helper).Upper(" in stubs
    report = (out / "report.txt").read_text()
    assert "  ##class(Demo.Util.Helper).Upper() -> helpers:upper (in helpers.py: write" in report
    summary = json.loads((out / "report.json").read_text())
    assert [h["call"] for h in summary["helpers"]] == [
        "..Tag()",
        "##class(Demo.Util.Helper).Upper()",
    ]

    # The converted production finds the mapping beside it; the stubs say what to write.
    converted = load_production(out / "Demo.Production.yaml")
    assert converted.item("Router").settings["transforms"] == ["transforms/Demo.DTL.Names.yaml"]
    from hie.rules.loader import load_transform

    transform = load_transform(out / "transforms" / "Demo.DTL.Names.yaml")
    assert bind_helpers([transform], str(out / "Demo.Production.yaml")) == []
    with pytest.raises(NotImplementedError, match=r"Demo\.Util\.Helper\.Upper: write its body"):
        transform.apply(ADT)

    # A second run keeps what the user wrote in helpers.py.
    (out / "helpers.py").write_text(stubs.replace("def tag", "def tag_done") + "\n# mine\n")
    assert main(["import-iris", *files, "-o", str(out)]) == 0
    again = (out / "helpers.py").read_text()
    assert again.startswith(stubs.replace("def tag", "def tag_done")) and "# mine" in again


def test_import_iris_with_a_mapping_stubs_only_what_it_does_not_map(folder: Path) -> None:
    (folder / "given.yaml").write_text("functions:\n  Demo.Util.Helper: mypkg.helper\n")
    out = folder / "out"
    dtl = str(folder / "Demo.DTL.Names.cls")
    assert main(["import-iris", dtl, "-o", str(out), "--mapping", str(folder / "given.yaml")]) == 0
    assert yaml.safe_load((out / "hie-mapping.yaml").read_text()) == {
        "functions": {"..Tag": "helpers:tag", "Demo.Util.Helper": "mypkg.helper"}
    }
    assert "def upper" not in (out / "helpers.py").read_text()


BROKEN_SQL = DTL.replace(
    "<assign value='..Tag",
    "<sql><![CDATA[SELECT Name INTO :x FROM Demo.Patient]]></sql>\n<assign value='..Tag",
)


def test_import_iris_reports_what_it_cannot_convert_and_the_routers_it_affects(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "Demo.DTL.Names.cls").write_text(BROKEN_SQL)
    (folder / "Demo.DTL.Garbage.cls").write_text(
        "Class Demo.DTL.Garbage Extends Ens.DataTransformDTL\n{\nXData DTL\n{\n<transform>\n}\n}\n"
    )
    out = folder / "out"
    files = [str(p) for p in sorted(folder.glob("*.cls"))]
    assert main(["import-iris", *files, "-o", str(out), "--allow-partial"]) == 1
    report = (out / "report.txt").read_text()
    dtl = folder / "Demo.DTL.Names.cls"
    assert (
        f"error: {dtl}:7: <sql> queries the IRIS database, which HIE does not have; "
        "look values up with a lookup table" in report
    )
    assert report.count("affects router(s): Router") == 1
    garbage = folder / "Demo.DTL.Garbage.cls"
    assert f"error: {garbage}:6: XML is not well-formed: Premature end of data" in report
    # The production is still written; the router names the transform that did not convert,
    # and validate says which item that stops.
    assert (
        "# NOTE: Router's rule names transform Demo.DTL.Names, which was not converted"
        in (out / "Demo.Production.yaml").read_text()
    )
    capsys.readouterr()
    assert main(["validate", str(out / "Demo.Production.yaml")]) == 1
    err = capsys.readouterr().err.splitlines()
    # The router looks for the class exported near the production, finds the original, and
    # refuses it for the same reason.
    assert err[0].endswith("Demo.Production.yaml: 1 problem(s)")
    assert f"item 'Router': {dtl}:7: <sql> queries the IRIS database" in err[1]


def test_an_explicit_mapping_is_what_the_production_and_its_routers_use(folder: Path) -> None:
    (folder / "demo_helpers.py").write_text(HELPERS)
    (folder / "elsewhere.yaml").write_text(
        "functions:\n  Demo.Util.Helper.Upper: demo_helpers:upper\n  ..Tag: demo_helpers:Tag\n"
    )
    result = read_iris_production(folder / "Demo.Production.cls", folder / "elsewhere.yaml")
    assert result.blocked == []


def test_validate_names_the_router_a_transform_it_cannot_run_stops(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "Demo.DTL.Names.cls").write_text(BROKEN_SQL)
    assert main(["validate", str(folder / "Demo.Production.cls")]) == 0
    lines = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(lines) if "<sql>" in line)
    # The note sits under the item it stops, in the migration report.
    assert lines[at - 1].startswith("  Router: EnsLib.HL7.MsgRouter.RoutingEngine -> ")
    assert lines[at].strip() == (
        f"note: will not start as it is: {folder / 'Demo.DTL.Names.cls'}:7: <sql> queries the "
        "IRIS database, which HIE does not have; look values up with a lookup table "
        "(..Lookup(table, key)) or a helper class method (##class(Pkg.Helper).Method(...)) "
        "mapped to Python in the functions: section of hie-mapping.yaml"
    )


def test_import_iris_carries_the_functions_of_the_mapping_beside_its_inputs(folder: Path) -> None:
    (folder / "hie-mapping.yaml").write_text("functions:\n  ..Tag: mine:tag\n")
    out = folder / "out"
    assert main(["import-iris", str(folder / "Demo.DTL.Names.cls"), "-o", str(out)]) == 0
    assert yaml.safe_load((out / "hie-mapping.yaml").read_text())["functions"] == {
        "..Tag": "mine:tag",
        "Demo.Util.Helper.Upper": "helpers:upper",
    }


def test_routing_rules_call_mapped_helpers_and_user_function_set_methods(folder: Path) -> None:
    # Given a rule that asks a user's function set (bare WeekEnd()) and a helper class
    rule = RULE.replace(
        '<when condition="1">',
        '<when condition=\'(WeekEnd()=0) &amp;&amp; (##class(Demo.Util.Helper).Upper("a")="A")\'>',
    )
    (folder / "Demo.Rule.cls").write_text(rule)
    (folder / "helpers.py").write_text(HELPERS + "\n\ndef week_end():\n    return 0\n")
    functions = {
        "Demo.Util.Helper.Upper": "helpers:upper",
        "Demo.Util.Helper.Tag": "helpers:Tag",
        "..Tag": "helpers:Tag",
        "..WeekEnd": "helpers:week_end",
    }
    (folder / "hie-mapping.yaml").write_text(yaml.safe_dump({"functions": functions}))
    from hie.iris.rules import load_iris_rules

    rules = load_iris_rules(folder / "Demo.Rule.cls")
    # Then the router binds them and the rule runs them
    assert bind_helpers([], str(folder / "Demo.Production.cls"), rules=rules) == []
    assert [s.target for s in rules.evaluate(ADT).sends] == ["Out"]
    # And without the mapping each call is one problem naming it
    (folder / "hie-mapping.yaml").unlink()
    problems = bind_helpers([], str(folder / "Demo.Production.cls"), rules=rules)
    assert len(problems) == 2
    assert any("WeekEnd() is not mapped to Python" in p for p in problems)


def test_validate_names_a_subtransform_that_is_not_beside_the_production(folder: Path) -> None:
    dtl = DTL.replace(
        "</transform>",
        "<subtransform class='Demo.DTL.Missing' sourceObj='source' targetObj='target'/>\n"
        "</transform>",
    )
    (folder / "Demo.DTL.Names.cls").write_text(dtl)
    with pytest.raises(ProductionError, match=r"subtransform Demo\.DTL\.Missing is not loaded"):
        load_production(folder / "Demo.Production.cls")


def test_import_iris_lists_the_subtransforms_a_routers_transforms_call(folder: Path) -> None:
    # Given a DTL that calls another through <subtransform>, both exported beside the production
    (folder / "Demo.DTL.Names.cls").write_text(
        DTL.replace(
            "<assign value='##class(Demo.Util.Helper).Upper(source.{PID:5.1})' "
            "property='target.{PID:5.1}'/>\n<assign value='..Tag(..Lookup(\"Sex\", "
            "source.{PID:8}))' property='target.{PID:8}'/>",
            "<subtransform class='Demo.DTL.Sub' sourceObj='source' targetObj='target'/>",
        )
    )
    (folder / "Demo.DTL.Sub.cls").write_text(
        DTL.replace("Demo.DTL.Names", "Demo.DTL.Sub").replace(
            "<assign value='##class(Demo.Util.Helper).Upper(source.{PID:5.1})' "
            "property='target.{PID:5.1}'/>\n<assign value='..Tag(..Lookup(\"Sex\", "
            "source.{PID:8}))' property='target.{PID:8}'/>",
            "<assign value='\"SUB\"' property='target.{PID:5.2}'/>",
        )
    )
    out = folder / "out"
    names = ("Demo.Production.cls", "Demo.Rule.cls", "Demo.DTL.Names.cls", "Demo.DTL.Sub.cls")
    assert main(["import-iris", *[str(folder / n) for n in names], "-o", str(out)]) == 0
    # Then the converted router lists both, so it finds the sub-transform (validate passes)
    converted = load_production(out / "Demo.Production.yaml")
    assert converted.item("Router").settings["transforms"] == [
        "transforms/Demo.DTL.Names.yaml",
        "transforms/Demo.DTL.Sub.yaml",
    ]
