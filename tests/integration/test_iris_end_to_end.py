"""The iris-ensdemo sample, imported with ``import-iris`` and run for real (issue 6).

``Demo.HL7.MsgRouter.Production`` routes what its XYZ source sends through ``XYZ_Router``, whose
rule ``Demo.HL7.MsgRouter.XYZRoutingRule`` says, in order:

1. a batch child (``HL7.ParentId`` set) -> ``Batch_FileOperation``;
2. an FHS/BHS 2.3.1 batch header -> ``Batch_FileOperation``;
3. an ADT_A08 whose last name contains ``<S>`` or starts with ``Z`` -> ``Other_FileOperation``
   through ``Demo.HL7.MsgRouter.ADTLastNameTransform`` (MSH-9 ADT^A01, MSH-5 TEST, PID-5.1
   NEWNAME);
4. an ORM_O01 with such a name -> ``Other_FileOperation`` through ``ORMLastNameTransform``;
5. anything else -> ``Regular_FileOperation``.

The sample has file services and file operations only, so "ports changed for the test" means:
an MLLP listener on a free port is added as the XYZ source (the one item added), and every
file path is moved into the test's own folders. Everything else stays as imported.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from hie.adapters.mllp import BlockingMLLPClient
from hie.commands.messages import format_trace
from hie.config.loader import load_production
from hie.production import Production
from hie.errors import ProductionError
from hie.hl7 import HL7Message, ack_code
from hie.iris.dtl import load_dtl
from hie.iris.production import load_iris_production
from hie.iris.rules import load_iris_rules
from hie.rules.loader import load_rules, load_transform
from hie.store.models import UNFINISHED
from hie.store.records import TraceNode
from tests.integration.harness import Harness, free_port, wait_for

pytestmark = pytest.mark.integration

PRODUCTION = "productions/iris-ensdemo__Demo.HL7.MsgRouter.Production.cls"
RULE = "rules/iris-ensdemo__Demo.HL7.MsgRouter.XYZRoutingRule.cls"
DTL = "dtl/iris-ensdemo__Demo.HL7.MsgRouter.ADTLastNameTransform.cls"
RULE_FILE = "rules/Demo.HL7.MsgRouter.XYZRoutingRule.yaml"
ADT_TRANSFORM = "transforms/Demo.HL7.MsgRouter.ADTLastNameTransform.yaml"
#: The rule names this transform too, but the sample corpus does not have its class. The router
#: refuses rules naming a transform it has not loaded, so an empty stand-in is registered; no
#: message here is an ORM, so it never runs.
ORM_TRANSFORM = "Demo.HL7.MsgRouter.ORMLastNameTransform"
#: The operations the rule can send to; each gets a worker, so a wrong route would show.
OPERATIONS = ["Batch_FileOperation", "Other_FileOperation", "Regular_FileOperation"]
INBOUND = "XYZ_MLLPService"


def adt(control_id: str, family: str, event: str = "A08") -> bytes:
    """A small ADT from the XYZ source, structure ADT_A01 (as A08 is in 2.3.1)."""
    return (
        "\r".join(
            [
                f"MSH|^~\\&|XYZ|XYZFAC|HIS|HISFAC|20260101120000||ADT^{event}^ADT_A01|{control_id}|P|2.3.1",
                f"EVN|{event}|20260101120000",
                f"PID|1||{control_id}^^^XYZ^MR||{family}^JOHN^Q||19700101|M",
                "PV1|1|I|WARD^101^1",
            ]
        ).encode()
        + b"\r"
    )


#: control id -> (message, the rule that fires, the targets it reaches)
MESSAGES: dict[str, tuple[bytes, str, list[str]]] = {
    # rule 3: ADT_A08, last name starts with Z
    "XYZ0001": (adt("XYZ0001", "ZIMMERMAN"), "#3", ["Other_FileOperation"]),
    # rule 3 again, through its Contains(..., "<S>") branch
    "XYZ0002": (adt("XYZ0002", "<S>MITH"), "#3", ["Other_FileOperation"]),
    # rule 3's condition is false (no Z, no <S>): the catch-all rule 5
    "XYZ0003": (adt("XYZ0003", "SMITH"), "#5", ["Regular_FileOperation"]),
    # a Z name, but an ADT_A01: rule 3's docName constraint (ADT_A08) does not hold
    "XYZ0004": (adt("XYZ0004", "ZED", event="A01"), "#5", ["Regular_FileOperation"]),
}


def import_sample(samples: Path, out: Path) -> dict[str, Any]:
    """``hie import-iris`` on the three ensdemo classes into ``out``; the production as data."""
    iris = samples / "iris"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "hie.cli",
            "import-iris",
            str(iris / PRODUCTION),
            str(iris / RULE),
            str(iris / DTL),
            "-o",
            str(out),
            "--allow-partial",
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / RULE_FILE).is_file() and (out / ADT_TRANSFORM).is_file(), run.stdout
    data: dict[str, Any] = yaml.safe_load((out / "Demo.HL7.MsgRouter.Production.yaml").read_text())
    return data


def retarget(data: dict[str, Any], folder: Path, port: int) -> dict[str, str]:
    """Move the imported production's files and ports into ``folder``; item -> output folder.

    Adds the MLLP source, and a stand-in for the ORM transform the rule names but the samples do
    not have. Routers whose rule classes are not in the samples (``ABC_Router``, ``Ens.Alert``)
    could not start, and loading refuses them: they are left out, with the targets naming them.
    Nothing else is changed.
    """
    missing = {
        item["name"]
        for item in data["items"]
        if isinstance(item.get("settings", {}).get("rules"), str)
        and not item["settings"]["rules"].endswith(".yaml")
    }
    data["items"] = [item for item in data["items"] if item["name"] not in missing]
    for item in data["items"]:
        item["targets"] = [t for t in item.get("targets", []) if t not in missing]
    outputs: dict[str, str] = {}
    for item in data["items"]:
        settings = item.setdefault("settings", {})
        if item["class"] == "HL7FileService":
            settings["file_path"] = str(folder / "in" / item["name"])
            settings["archive_path"] = str(folder / "archive" / item["name"])
        elif item["class"] == "HL7FileOperation":
            settings["file_path"] = outputs[item["name"]] = str(folder / "out" / item["name"])
        elif item["name"] == "XYZ_Router":
            assert settings["rules"] == RULE_FILE, "the router names the converted rule file"
            assert settings["transforms"] == [ADT_TRANSFORM], "the converted DTL is registered"
            stand_in = folder / "transforms" / f"{ORM_TRANSFORM}.yaml"
            stand_in.write_text(
                yaml.safe_dump({"kind": "transform", "name": ORM_TRANSFORM, "actions": []})
            )
            settings["transforms"] = [ADT_TRANSFORM, str(stand_in.relative_to(folder))]
    data["items"].append(
        {
            "name": INBOUND,
            "class": "HL7TCPService",
            "targets": ["XYZ_Router"],
            "settings": {"port": port},
        }
    )
    return outputs


def run_imported(
    harness: Harness, samples: Path, *, edit_rules: Any = None
) -> tuple[int, dict[str, str]]:
    """Import the sample into the harness folder, retarget it, start it.

    Returns the MLLP port and each file operation's output folder.

    Workers run in ``harness.tmp``, so the imported relative paths (``rules/...``) hold.
    """
    data = import_sample(samples, harness.tmp)
    if edit_rules is not None:
        rules_path = harness.tmp / RULE_FILE
        rules_path.write_text(yaml.safe_dump(edit_rules(yaml.safe_load(rules_path.read_text()))))
    port = free_port()
    outputs = retarget(data, harness.tmp, port)
    harness.name = data["name"]
    harness.path = harness.tmp / "production-under-test.yaml"
    harness.path.write_text(yaml.safe_dump(data, sort_keys=False))
    harness.production = load_production(harness.path)
    for item in ["XYZ_Router", *OPERATIONS]:
        harness.start_worker(item)
    harness.start_gateway(port)
    return port, outputs


def send_all(port: int, messages: list[bytes]) -> None:
    with BlockingMLLPClient("127.0.0.1", port, response_timeout=30) as client:
        for message in messages:
            assert ack_code(client.send(message)) == "AA"


def routed(harness: Harness, control_id: str) -> TraceNode:
    """The finished trace of the router's copy of ``control_id``: its rule event is recorded."""

    def done() -> TraceNode | None:
        found = harness.store.find(control_id=control_id, target="XYZ_Router")
        if not found:
            return None
        root = harness.store.trace(found[0].message_id)
        nodes = [node for _, node in root.walk()]
        finished = all(n.header.status not in UNFINISHED for n in nodes)
        router = [n for n in nodes if n.header.target == "XYZ_Router"]
        has_rule = any(e.event == "rule" for e in router[0].events) if router else False
        return root if finished and has_rule else None

    found: TraceNode = wait_for(done, 30, f"{control_id} routed and delivered")
    return found


def rule_events(root: TraceNode) -> list[str]:
    return [
        e.detail or ""
        for _, node in root.walk()
        if node.header.target == "XYZ_Router"
        for e in node.events
        if e.event == "rule"
    ]


def delivered(root: TraceNode) -> list[str]:
    """The operations this message reached, each completed."""
    reached = []
    for _, node in root.walk():
        if node.header.target in OPERATIONS:
            assert node.header.status == "completed", format_trace(root)
            reached.append(node.header.target)
    return sorted(reached)


def written(folder: str) -> list[HL7Message]:
    path = Path(folder)
    files = sorted(p for p in path.glob("*") if not p.name.startswith(".")) if path.exists() else []
    return [HL7Message(p.read_bytes()) for p in files]


def test_imported_ensdemo_routes_each_message_by_its_rule_and_transform(
    harness: Harness, samples: Path
) -> None:
    # Given the ensdemo production, rule and DTL imported and run with test ports and folders
    port, outputs = run_imported(harness, samples)

    for control_id, (message, rule, targets) in MESSAGES.items():
        # When each message is sent over MLLP to the XYZ source (its IRIS file name pattern
        # %H%M_Other_%F.txt becomes one file per message: %F is the control id here)
        send_all(port, [message])
        root = routed(harness, control_id)
        text = format_trace(root)

        # Then the store says which rule fired and where it sent the message
        assert rule_events(root) == [", ".join(f"{rule} -> {t}" for t in targets)], text
        assert any(
            line.split()[2:4] == ["rule", "XYZ_Router"] and line.endswith(f"{rule} -> {targets[0]}")
            for line in text.splitlines()
        ), text
        # ... and it reached exactly those targets
        assert delivered(root) == targets, text
        files = {op: written(outputs[op]) for op in OPERATIONS}
        out = [m for m in files[targets[0]] if m.control_id == control_id]
        assert len(out) == 1, files
        assert all(
            control_id not in {m.control_id for m in files[op]}
            for op in OPERATIONS
            if op not in targets
        ), files
        original = HL7Message(message)
        if rule == "#3":
            # transformed as the DTL says
            assert out[0].get("MSH-9.1") == "ADT" and out[0].get("MSH-9.2") == "A01"
            assert out[0].get("MSH-5") == "TEST"
            assert out[0].get("PID-5.1") == "NEWNAME"
            assert out[0].get("PID-5.2") == "JOHN"  # the rest of PID copied
            assert out[0].get("PID-3.1") == control_id
            assert out[0].get("PV1-3") == original.get("PV1-3")
            assert out[0].get("EVN-1") == original.get("EVN-1")
        else:
            # untransformed: the operation wrote what arrived
            assert out[0].to_er7() == original.to_er7()

    # And nothing ever reached the batch operation
    assert written(outputs["Batch_FileOperation"]) == []
    assert harness.store.find(target="Batch_FileOperation") == []


def _without_catch_all(rules: dict[str, Any]) -> dict[str, Any]:
    catch_all = rules["rule_sets"][0]["rules"][4]
    assert catch_all["when"][0]["condition"] == "1"
    catch_all["disabled"] = True
    return rules


def test_a_message_no_rule_matches_reaches_no_operation(harness: Harness, samples: Path) -> None:
    # Rule 5 of the sample matches every HL7 message, so "no rule matched" needs it disabled
    # (as IRIS's rule editor would); everything else is the imported production as before.
    port, outputs = run_imported(harness, samples, edit_rules=_without_catch_all)

    send_all(port, [MESSAGES["XYZ0003"][0], MESSAGES["XYZ0001"][0]])
    unmatched = routed(harness, "XYZ0003")
    matched = routed(harness, "XYZ0001")

    assert rule_events(unmatched) == ["no rule matched"]
    assert "no rule matched" in format_trace(unmatched)
    assert delivered(unmatched) == []
    assert rule_events(matched) == ["#3 -> Other_FileOperation"]
    assert delivered(matched) == ["Other_FileOperation"]
    assert {op: [m.control_id for m in written(outputs[op])] for op in OPERATIONS} == {
        "Batch_FileOperation": [],
        "Other_FileOperation": ["XYZ0001"],
        "Regular_FileOperation": [],
    }


def test_import_iris_output_routes_like_the_cls_it_came_from(samples: Path, tmp_path: Path) -> None:
    """The imported YAML loads back with the same items and routes as the ``.cls`` files.

    Both are read as definitions here: as they are, neither can start, and loading says why
    (the samples hold no ABC or alert rule class, and no ORM transform).
    """
    iris = samples / "iris"
    data = import_sample(samples, tmp_path)
    written = tmp_path / "Demo.HL7.MsgRouter.Production.yaml"
    imported = Production.model_validate(yaml.safe_load(written.read_text()))
    direct = load_iris_production(iris / PRODUCTION, strict=False)
    with pytest.raises(ProductionError) as refused:
        load_production(written)
    assert sorted(p.item for p in refused.value.problems) == [
        "ABC_Router",
        "Ens.Alert",
        "XYZ_Router",
    ]
    assert "ORMLastNameTransform" in str(refused.value)

    def shape(production: Any) -> list[tuple[str, str, list[str], bool, int]]:
        return [(i.name, i.class_name, i.targets, i.fifo, i.pool_size) for i in production.items]

    assert imported.name == direct.name == data["name"]
    assert shape(imported) == shape(direct)
    for mine, original in zip(imported.items, direct.items, strict=True):
        settings = dict(mine.settings)
        if mine.name == "XYZ_Router":
            assert settings.pop("rules") == RULE_FILE
            assert original.settings["rules"] == "Demo.HL7.MsgRouter.XYZRoutingRule"
            continue
        assert settings == original.settings, mine.name

    yaml_rules, cls_rules = load_rules(tmp_path / RULE_FILE), load_iris_rules(iris / RULE)
    yaml_dtl, cls_dtl = load_transform(tmp_path / ADT_TRANSFORM), load_dtl(iris / DTL)
    for control_id, (message, rule, targets) in MESSAGES.items():
        msg = HL7Message(message)
        ours, theirs = yaml_rules.evaluate(msg), cls_rules.evaluate(msg)
        assert ours.sends == theirs.sends, control_id
        assert ours.fired == theirs.fired == [rule], control_id
        assert [s.target for s in ours.sends] == targets, control_id
        if any(s.transforms for s in ours.sends):
            assert yaml_dtl.apply(msg.copy()).to_er7() == cls_dtl.apply(msg.copy()).to_er7()
