"""``import-iris``: convert IRIS productions, routing rules and DTL transforms into HIE files.

Inputs may be mixed; each file's kind comes from its class (``Extends Ens.Production`` /
``Ens.Rule.Definition`` / ``Ens.DataTransformDTL``, or the XData block it carries) or, for XML,
from its root element. Output in ``-o DIR``:

- ``<production>.yaml`` per production (loads back with ``hie validate``);
- ``rules/<RuleClass>.yaml`` and ``transforms/<DTLClass>.yaml`` for routing rules and DTL;
- ``report.json`` and ``report.txt``: every item, what it became and everything that did not map;
- when a transform or rule calls helper class methods (``##class(Demo.Util.Helper).Now()``):
  ``hie-mapping.yaml`` mapping each to a Python function, and ``helpers.py`` with a stub for
  each one no ``--mapping`` entry maps (its docstring lists the call sites) to fill in.

A production with unmapped items is written only with ``--allow-partial`` (then without them).
A file that cannot be converted, whatever the reason, is a line of the report (with the routers
it affects), never a crash of the command.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import yaml

from hie.errors import HIEError, ProductionError
from hie.iris.classfile import class_declaration, file_kind
from hie.iris.dtl import load_dtl
from hie.iris.helper_classes import (
    MAPPING_FILE,
    call_text,
    production_mapping,
    rule_calls,
    write_helper_stubs,
)
from hie.iris.mapping import Mapping, load_mapping
from hie.iris.production import IrisProduction, read_iris_production
from hie.iris.rules import load_iris_rules
from hie.rules.model import RuleDefinition
from hie.rules.transform import Transform


def _item_yaml(item: dict[str, Any]) -> str:
    text = yaml.safe_dump([item], sort_keys=False, allow_unicode=True, default_flow_style=False)
    return "".join(f"  {line}\n" for line in text.splitlines())


def production_yaml(
    result: IrisProduction,
    files: dict[str, str],
    rule_transforms: dict[str, list[str]] | None = None,
) -> str:
    """The production as readable YAML, one comment per item saying where it came from."""
    lines = [
        f"# Converted from {result.source} by `hie import-iris`.",
        "# Every setting that did not map is listed in report.txt.",
    ]
    for skipped in result.unmapped:
        lines.append(f"# NOT CONVERTED: {skipped.name} ({skipped.iris_class}): {skipped.reason}")
    head: dict[str, Any] = {"name": result.production.name}
    if result.production.description:
        head["description"] = result.production.description
    lines.append(yaml.safe_dump(head, sort_keys=False, allow_unicode=True).rstrip())
    lines.append("items:")
    reports = {r.name: r for r in result.items}
    for item in result.production.items:
        data = item.model_dump(by_alias=True, exclude_none=True)
        data = {k: v for k, v in data.items() if v not in ([], {})}
        report = reports[item.name]
        rule = report.rule
        if rule and rule in files and "rules" in data.get("settings", {}):
            data["settings"]["rules"] = files[rule]
            # The transforms the rule names: converted ones are loaded by the router; a missing
            # one makes `validate` say so, rather than the router failing at start.
            named = (rule_transforms or {}).get(rule, [])
            if named:
                data["settings"]["transforms"] = [files[t] for t in named if t in files]
                lines.extend(
                    f"  # NOTE: {item.name}'s rule names transform {t}, which was not converted"
                    for t in named
                    if t not in files
                )
        lines.append(f"  # IRIS {report.iris_name!r}: {report.iris_class} (line {report.line})")
        lines.append(_item_yaml(data).rstrip("\n"))
    return "\n".join(lines) + "\n"


def format_report(report: dict[str, Any]) -> str:
    """A production's migration report as text: per item, its classes and what did not map."""
    out = [f"production {report['production']} ({report['source']})"]
    out += [f"  note: {note}" for note in report["notes"]]
    for item in report["items"]:
        hie = item["hie_class"] or "NOT MAPPED"
        out.append(f"  {item['name']}: {item['iris_class']} -> {hie} (line {item['line']})")
        if item["reason"]:
            out.append(f"    why: {item['reason']}")
        for unmapped in item["unmapped_settings"]:
            where = f" (line {unmapped['line']})" if unmapped["line"] else ""
            setting = f"{unmapped['name']}={unmapped['value']!r}{where}"
            out.append(f"    unmapped {setting}: {unmapped['reason']}")
        out += [f"    note: {note}" for note in item["notes"]]
    if report["unmapped_items"]:
        out.append(
            f"  {len(report['unmapped_items'])} item(s) not mapped; `start` refuses this "
            "production until each is mapped (--mapping FILE) or removed"
        )
    return "\n".join(out)


def _convert_other(
    path: Path, kind: str, out_dir: Path, calls: dict[str, list[str]]
) -> dict[str, Any]:
    """Convert a rule or DTL file into HIE YAML under ``rules/`` or ``transforms/``; the helper
    class methods it calls are added to ``calls``."""
    loaded: RuleDefinition | Transform = load_iris_rules(path) if kind == "rule" else load_dtl(path)
    folder = "rules" if kind == "rule" else "transforms"
    name = loaded.name or path.stem
    target = out_dir / folder / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(loaded.to_yaml(), encoding="utf-8")
    entry = {"file": str(path), "kind": kind, "ok": True, "name": name, "output": str(target)}
    if isinstance(loaded, RuleDefinition):
        entry["transforms"] = sorted(loaded.transforms())
        found = rule_calls(loaded)
    else:
        entry["notes"] = list(loaded.notes)
        entry["subtransforms"] = loaded.subtransforms()
        found = loaded.class_calls
    for key, sites in found.items():
        calls.setdefault(key, []).extend(sites)
    return entry


def _class_of(path: Path) -> str:
    """The IRIS class a file holds, as well as can be told from a file that did not load."""
    try:
        if path.suffix.lower() == ".cls":
            return class_declaration(path.read_text(encoding="utf-8", errors="replace"))[0]
    except OSError:
        pass
    return path.stem.rsplit("__", 1)[-1]


def cmd_import_iris(args: argparse.Namespace, settings: object) -> int:
    """Convert IRIS files into ``args.output``; exit 1 when anything could not be converted."""
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    mapping = load_mapping(args.mapping) if args.mapping else None
    paths = [Path(p) for p in args.files]
    kinds: dict[Path, str] = {}
    summary: dict[str, Any] = {"productions": [], "converted": [], "errors": [], "helpers": []}
    for path in paths:
        try:
            kinds[path] = file_kind(path)
        except Exception as exc:  # any failure to read a file is a line of the report
            summary["errors"].append({"file": str(path), "error": _reason(exc)})
    # Converted rules and transforms by class name -> their file, relative to the output folder.
    rule_files: dict[str, str] = {}
    rule_transforms: dict[str, list[str]] = {}
    calls: dict[str, list[str]] = {}
    for path, kind in kinds.items():
        if kind == "production":
            continue
        try:
            entry = _convert_other(path, kind, out_dir, calls)
        except Exception as exc:  # never a crash: the report says what and where
            entry = {"file": str(path), "kind": kind, "ok": False, "error": _reason(exc)}
            entry["name"] = _class_of(path)
        summary["converted" if entry["ok"] else "errors"].append(entry)
        if entry["ok"]:
            rule_files[entry["name"]] = str(Path(entry["output"]).relative_to(out_dir))
            if kind == "rule":
                rule_transforms[entry["name"]] = entry["transforms"]
    ok = not summary["errors"]
    # A router loads the transforms its rule names and, in YAML, the ones those call too.
    subs = {e["name"]: e.get("subtransforms", []) for e in summary["converted"]}
    rule_transforms = {r: _with_subtransforms(n, subs) for r, n in rule_transforms.items()}
    for path, kind in kinds.items():
        if kind == "production":
            converted = (rule_files, rule_transforms)
            ok = _import_production(path, mapping, out_dir, converted, args, summary) and ok
    _note_affected_routers(summary, rule_transforms)
    if calls:
        _map_helpers(out_dir, calls, mapping, paths, summary)
    texts = [format_report(r) for r in summary["productions"]]
    texts += [_helper_text(summary["helpers"])] if summary["helpers"] else []
    texts += [_notes_text(e) for e in summary["converted"] if e.get("notes")]
    texts += [_error_text(e) for e in summary["errors"]]
    (out_dir / "report.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (out_dir / "report.txt").write_text("\n\n".join(texts) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print("\n\n".join(texts))
        print(f"wrote {out_dir / 'report.txt'}")
    return 0 if ok else 1


def _with_subtransforms(named: list[str], subs: dict[str, list[str]]) -> list[str]:
    """``named`` and every transform they reach through ``<subtransform>``, in order."""
    out: list[str] = []
    todo = list(named)
    while todo:
        name = todo.pop(0)
        if name not in out:
            out.append(name)
            todo += subs.get(name, [])
    return out


def _reason(exc: Exception) -> str:
    if isinstance(exc, HIEError | OSError):
        return str(exc)
    return f"could not be converted ({type(exc).__name__}: {exc})"


def _note_affected_routers(summary: dict[str, Any], rule_transforms: dict[str, list[str]]) -> None:
    """Name, for each rule or transform that did not convert, the routers that use it."""
    routers = [
        (item["name"], item["rule"])
        for report in summary["productions"]
        for item in report["items"]
        if item.get("rule")
    ]
    for error in summary["errors"]:
        name = error.get("name")
        if not name:
            continue
        if error.get("kind") == "rule":
            hit = [router for router, rule in routers if rule == name]
        else:
            hit = [router for router, rule in routers if name in rule_transforms.get(rule, [])]
        if hit:
            error["affects"] = hit


def _map_helpers(
    out_dir: Path,
    calls: dict[str, list[str]],
    mapping: Mapping | None,
    paths: list[Path],
    summary: dict[str, Any],
) -> None:
    """Map every helper call in the output's hie-mapping.yaml (stubs for what nothing maps):
    from ``--mapping``, else from the hie-mapping.yaml beside the first input that has one."""
    try:
        given = mapping or next(
            (production_mapping(p) for p in paths if (p.parent / MAPPING_FILE).is_file()),
            Mapping(),
        )
        mapped = write_helper_stubs(out_dir, calls, given)
    except Exception as exc:  # a broken hie-mapping.yaml from an earlier run, a full disk
        summary["errors"].append({"file": str(out_dir), "error": _reason(exc)})
        return
    for key in sorted(calls):
        target = mapped[key]
        summary["helpers"].append(
            {
                "call": call_text(key),
                "key": key,
                "sites": calls[key],
                "function": target,
                "stub": target.startswith("helpers:") and not given.functions.get(key),
            }
        )


def _helper_text(helpers: list[dict[str, Any]]) -> str:
    out = [
        "helper class methods called: each is mapped to a Python function in hie-mapping.yaml, "
        "which the converted production finds beside it"
    ]
    for helper in helpers:
        todo = " (in helpers.py: write its body if it is still a stub)" if helper["stub"] else ""
        out.append(f"  {helper['call']} -> {helper['function']}{todo}")
        out += [f"    called at {site}" for site in helper["sites"]]
    return "\n".join(out)


def _notes_text(entry: dict[str, Any]) -> str:
    return "\n".join(
        [f"{entry['kind']} {entry['name']} ({entry['file']}):"]
        + [f"  note: {note}" for note in entry["notes"]]
    )


def _error_text(error: dict[str, Any]) -> str:
    said = str(error["error"])
    text = f"error: {said}" if said.startswith(error["file"]) else f"error: {error['file']}: {said}"
    if error.get("affects"):
        text += f"\n  affects router(s): {', '.join(error['affects'])}"
    return text


def _import_production(
    path: Path,
    mapping: Any,
    out_dir: Path,
    converted: tuple[dict[str, str], dict[str, list[str]]],
    args: argparse.Namespace,
    summary: dict[str, Any],
) -> bool:
    try:
        result = read_iris_production(path, mapping)
    except ProductionError as exc:
        for problem in exc.problems:
            summary["errors"].append({"file": problem.file, "error": str(problem)})
        return False
    except Exception as exc:  # never a crash: the report says what and where
        summary["errors"].append({"file": str(path), "error": _reason(exc)})
        return False
    report = result.report()
    summary["productions"].append(report)
    if result.unmapped and not args.allow_partial:
        summary["errors"].append(
            {
                "file": str(path),
                "error": f"{len(result.unmapped)} item(s) not mapped (see the report); "
                "nothing written for this production: map them with --mapping FILE or "
                "pass --allow-partial",
            }
        )
        return False
    _relocate_files(result, out_dir)
    target = out_dir / f"{result.production.name}.yaml"
    target.write_text(production_yaml(result, *converted), encoding="utf-8")
    report["output"] = str(target)
    return True


def _relocate_files(result: IrisProduction, out_dir: Path) -> None:
    """Lookup-table paths relative to the IRIS production, made relative to the output folder
    the converted production is written to (files are not copied)."""
    here = Path(result.source).resolve().parent
    for item in result.production.items:
        tables = item.settings.get("lookup_tables")
        if isinstance(tables, list):
            item.settings["lookup_tables"] = [
                os.path.relpath(here / t, out_dir.resolve()) if not Path(t).is_absolute() else t
                for t in tables
            ]


def add_commands(subparsers: Any) -> None:
    """Add ``import-iris`` to the ``hie`` command line."""
    p = subparsers.add_parser(
        "import-iris", help="convert IRIS productions, rules and transforms to HIE files"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".cls or exported .xml files")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="where to write")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument(
        "--mapping",
        metavar="FILE",
        help="YAML: classes, settings and helper functions to map (default: hie-mapping.yaml "
        "beside each production)",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="write productions without their unmapped items",
    )
    p.set_defaults(func=cmd_import_iris)
