"""Loading production files: every problem reported at once, with file, line and item."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hie.cli import main
from hie.config.loader import load_production
from hie.errors import ConfigError, ProductionError
from hie.rules.loader import load_rules

FIVE_MISTAKES = """\
name: Broken
items:
  - name: In
    class: FileService
    targets: [Router]
    settings: {file_path: /tmp/in}
  - name: Router
    class: HL7RoutingEngine
    targets: [Nowhere]
  - name: Out
    class: NoSuchHost
  - name: Router
    class: FileOperation
    settings: {file_path: /tmp/out}
  - name: Writer
    class: FileOperation
    pool_size: 2
    settings: {file_path: /tmp/out, colour: blue}
  - name: Typo
    clas: FileOperation
"""


def test_five_kinds_of_mistakes_are_reported_together_with_lines(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(FIVE_MISTAKES)
    with pytest.raises(ProductionError) as caught:
        load_production(path)
    problems = {(p.item, p.line): p.message for p in caught.value.problems}
    text = str(caught.value)
    # unknown target (line 9), unknown class (line 11), duplicate name (line 12),
    # bad setting (line 18), a malformed item (line 19-20: 'clas' instead of 'class')
    assert ("Router", 9) in problems and "unknown target 'Nowhere'" in problems[("Router", 9)]
    assert ("Out", 11) in problems and "unknown host class 'NoSuchHost'" in problems[("Out", 11)]
    assert any(p.message == "duplicate item name" and p.line == 12 for p in caught.value.problems)
    assert ("Writer", 18) in problems and "colour" in problems[("Writer", 18)]
    assert any(p.item == "Typo" and p.line in (19, 20) for p in caught.value.problems)
    assert all(str(path) in line for line in text.splitlines()[1:])
    assert len(caught.value.problems) == 6  # 'class' missing and 'clas' unexpected: two on Typo


def test_json_productions_report_lines_too(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps(
            {
                "name": "J",
                "items": [
                    {"name": "A", "class": "FileOperation", "settings": {"file_path": "/tmp"}},
                    {"name": "B", "class": "Missing"},
                ],
            },
            indent=2,
        )
    )
    with pytest.raises(ProductionError) as caught:
        load_production(path)
    (problem,) = caught.value.problems
    assert problem.item == "B" and problem.line == 13  # the "class" line of item B


def test_valid_production_loads_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text(
        "name: Ok\nitems:\n  - {name: Out, class: FileOperation, settings: {file_path: /tmp}}\n"
    )
    production = load_production(path)
    out = production.item("Out")
    assert (out.enabled, out.pool, out.pool_size, out.targets) == (True, "prefork", 1, [])
    assert production.host_class("Out").kind == "operation"
    with pytest.raises(ConfigError, match="no item 'Nope'"):
        production.item("Nope")


def test_bad_yaml_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: X\nitems:\n  - name: [unclosed\n")
    with pytest.raises(ProductionError) as caught:
        load_production(path)
    assert caught.value.problems[0].line is not None
    assert str(path) in str(caught.value)


def _alias_bomb(levels: int = 7) -> str:
    """A few hundred bytes whose aliases stand for 9**levels values (a "billion laughs")."""
    lines = ['a0: &a0 ["lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_with_its_line(tmp_path: Path) -> None:
    bomb = _alias_bomb()
    assert len(bomb) < 500
    path = tmp_path / "bomb.yaml"
    path.write_text("name: Bomb\nitems: []\n" + bomb)
    started = time.monotonic()
    with pytest.raises(ProductionError, match="more than 100,000 values") as caught:
        load_production(path)
    assert time.monotonic() - started < 5
    assert str(path) in str(caught.value) and caught.value.problems[0].line is not None
    rules = tmp_path / "bomb-rules.yaml"
    rules.write_text("kind: rules\n" + bomb)
    with pytest.raises(ConfigError, match="more than 100,000 values"):
        load_rules(rules)


def test_shared_settings_through_yaml_aliases_still_load(tmp_path: Path) -> None:
    path = tmp_path / "shared.yaml"
    path.write_text(
        "name: Shared\n"
        "items:\n"
        "  - {name: A, class: FileOperation, settings: &files {file_path: /tmp}}\n"
        "  - {name: B, class: FileOperation, settings: *files}\n"
    )
    production = load_production(path)
    assert production.item("A").settings == production.item("B").settings == {"file_path": "/tmp"}


RULES = """\
kind: rules
rule_sets:
  - rules:
      - name: adt
        when:
          - condition: HL7.{MSH:9.1} = "ADT"
            actions:
              - {type: send, target: Out}
"""


def test_router_rules_are_checked_at_load_relative_to_the_production(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "adt.yaml").write_text(RULES)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    good = tmp_path / "good.yaml"
    good.write_text(
        "name: R\nitems:\n"
        "  - {name: Router, class: HL7RoutingEngine, settings: {rules: rules/adt.yaml}}\n"
        "  - {name: Out, class: FileOperation, settings: {file_path: /tmp}}\n"
    )
    os_cwd = Path.cwd()
    try:
        import os

        os.chdir(elsewhere)  # a relative rules path starts at the production's folder, not here
        assert load_production(good).item("Router").settings["rules"] == "rules/adt.yaml"
    finally:
        os.chdir(os_cwd)
    # A rules file that is missing, or that names an item the production lacks, fails at load.
    missing = tmp_path / "missing.yaml"
    missing.write_text(good.read_text().replace("rules/adt.yaml", "rules/nope.yaml"))
    with pytest.raises(ProductionError) as caught:
        load_production(missing)
    (problem,) = caught.value.problems
    assert problem.item == "Router" and problem.line == 3 and "nope.yaml" in problem.message
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text(good.read_text().replace("name: Out", "name: Elsewhere"))
    with pytest.raises(ProductionError, match="target 'Out' is not an item"):
        load_production(unknown)


BAD_HOOKS = """\
name: Hooked
hooks:
  - tests.hosts:RecordingHook
  - tests.hosts:NoSuchHook
items:
  - name: In
    class: HL7FileService
    hooks: [json:dumps]
    targets: [Out]
    settings: {file_path: /tmp/in}
  - name: Out
    class: FileOperation
    hooks: [tests.hosts:RecordingHook]
    settings: {file_path: /tmp/out}
"""


def test_validate_names_file_line_and_item_of_each_hook_that_does_not_resolve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hooked.yaml"
    path.write_text(BAD_HOOKS)
    assert main(["validate", str(path)]) == 1
    problems = capsys.readouterr().err.splitlines()[1:]
    # A production-wide hook that does not exist (line 4), an item's hook that is no MessageHook
    # (line 8); the hooks that do resolve are not reported.
    assert len(problems) == 2
    assert f"{path}:8: item 'In': hook 'json:dumps' is not a MessageHook subclass" in problems[0]
    assert f"{path}:4: hook 'tests.hosts:NoSuchHook' cannot be imported" in problems[1]
