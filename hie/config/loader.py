"""Load a production from YAML or JSON (or an IRIS definition) with line numbers for every error.

YAML is composed into nodes first so each item and key keeps the line it was written on; JSON is
read through the same path (it is YAML for this purpose), so both report lines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hie.config.bounded_yaml import BoundedLoader
from hie.errors import ConfigError, Problem, ProductionError
from hie.production import Production, collect_problems

Lines = dict[tuple[str, ...], int]


def _plain(node: yaml.Node, path: tuple[str, ...], lines: Lines) -> Any:
    """Turn a composed YAML node into plain data, recording the 1-based line of each path."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            lines[(*path, str(key))] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, (*path, str(key)), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(child, (*path, str(i)), lines) for i, child in enumerate(node.value)]
    # Scalars: let the safe constructor type them (ints, bools, nulls).
    return yaml.safe_load(yaml.serialize(node))


def read_document(path: Path) -> tuple[Any, Lines]:
    """Parse a YAML/JSON file into plain data and a map of key paths to line numbers."""
    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=BoundedLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise ProductionError(
            [Problem(str(path), line, None, f"not valid YAML/JSON: {reason}")]
        ) from exc
    if node is None:
        raise ProductionError([Problem(str(path), 1, None, "the file is empty")])
    lines: Lines = {}
    return _plain(node, (), lines), lines


def _raw_items(data: dict[str, Any]) -> list[Any]:
    items = data.get("items")
    return items if isinstance(items, list) else []


def _model_problems(
    path: Path, data: dict[str, Any], exc: ValidationError, lines: Lines
) -> list[Problem]:
    problems = []
    items = _raw_items(data)
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        item_name = None
        if len(loc) >= 2 and loc[0] == "items" and loc[1].isdigit() and int(loc[1]) < len(items):
            raw = items[int(loc[1])]
            item_name = raw.get("name") if isinstance(raw, dict) else None
        line = None
        for depth in range(len(loc), 0, -1):
            if tuple(loc[:depth]) in lines:
                line = lines[tuple(loc[:depth])]
                break
        field = (
            ".".join(loc[2:]) if item_name is not None or loc[:1] == ["items"] else ".".join(loc)
        )
        problems.append(Problem(str(path), line, item_name, f"{field or 'item'}: {err['msg']}"))
    return problems


def load_production(path: str | Path, *, check_files: bool = True) -> Production:
    """Load and check a production file; raise ``ProductionError`` listing every problem.

    ``check_files``: also compile what items read from other files (rules, transforms, tables);
    ``status`` leaves that out, so a rule file being edited does not stop it from answering.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"production file {path} does not exist")
    if path.suffix.lower() in {".cls", ".xml"}:
        from hie.iris.production import load_iris_production

        production: Production = load_iris_production(path)
        return production
    data, lines = read_document(path)
    if not isinstance(data, dict):
        raise ProductionError(
            [Problem(str(path), 1, None, "a production must be a mapping with 'name' and 'items'")]
        )
    items = data.get("items")
    if isinstance(items, list):
        for index, raw in enumerate(items):
            if isinstance(raw, dict):
                raw["line"] = lines.get(("items", str(index)))
    try:
        production = Production.model_validate(data)
    except ValidationError as exc:
        problems = _model_problems(path, data, exc, lines)
        # Check what did validate too, so one run reports everything.
        problems.extend(_partial_problems(path, data, lines))
        raise ProductionError(problems) from exc
    production.source = str(path)
    problems = collect_problems(production, lines, check_only_shape=not check_files)
    if problems:
        raise ProductionError(problems)
    return production


def _partial_problems(path: Path, data: dict[str, Any], lines: Lines) -> list[Problem]:
    """Problems of the items that did validate, when others did not (one run, every problem)."""
    from hie.production import Item

    raw_items = _raw_items(data)
    good: list[Item] = []
    indices: list[int] = []
    for index, raw in enumerate(raw_items):
        try:
            good.append(Item.model_validate(raw))
            indices.append(index)
        except ValidationError:
            continue
    names = {str(raw.get("name")) for raw in raw_items if isinstance(raw, dict)}
    partial = Production(name="partial", items=good)
    partial.source = str(path)
    return collect_problems(partial, lines, indices=indices, names=names, check_only_shape=True)
