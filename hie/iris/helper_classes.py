"""Helper classes: ``##class(Demo.Util.Helper).Now()`` in a transform, run as a Python function.

IRIS transforms call class methods written in ObjectScript. HIE runs a Python function in
their place, named in the ``functions:`` section of the IRIS mapping file::

    functions:
      Demo.Util.Helper.HL7CurrentDateTime: mypkg.helpers:hl7_current_datetime  # one method
      Demo.Util.Codes: mypkg.codes       # a whole class: each method is the module's function
                                         # of the same name (Codes.Map -> mypkg.codes:Map)
      ..ParseName: mypkg.helpers:parse_name    # a method of the DTL class itself

The function gets the argument values, in order, and returns the value the expression uses.
Modules are imported with the mapping file's folder on the path, so a ``helpers.py`` beside it
is found.

Which mapping file: ``hie-mapping.yaml`` in the production file's folder, for IRIS (``.cls``,
``.xml``) and YAML productions alike and for every command that loads one (``start``,
``worker``, ``validate``); ``validate --mapping FILE`` and ``import-iris --mapping FILE`` use
FILE for that run. Routers give their transforms the functions (and lookup tables) when they
load them (``bind_helpers``); a call no entry maps stops the router from loading, naming the
call, where it is, and the line to add.
"""

from __future__ import annotations

import keyword
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from hie.config.bounded_yaml import BoundedLoader
from hie.dotted_path import import_object
from hie.errors import ConfigError
from hie.iris.mapping import Mapping, load_mapping
from hie.rules.expressions import compile_expression

if TYPE_CHECKING:
    from hie.rules.model import RuleDefinition
    from hie.rules.transform import Transform

__all__ = [
    "MAPPING_FILE",
    "bind_helpers",
    "call_text",
    "helper_stubs",
    "mapped_target",
    "production_mapping",
    "resolve_function",
    "rule_calls",
    "use_mapping",
    "write_helper_stubs",
]

#: The mapping file a production finds beside its own file.
MAPPING_FILE = "hie-mapping.yaml"

#: Mappings given on a command line (``--mapping``), by production file, while it is read.
_GIVEN: dict[str, Mapping] = {}


def _key(production_file: str | Path) -> str:
    return str(Path(production_file).resolve())


@contextmanager
def use_mapping(production_file: str | Path, mapping: Mapping) -> Iterator[None]:
    """Within the block, that production's routers use ``mapping`` (``validate --mapping``)."""
    key = _key(production_file)
    previous = _GIVEN.get(key)
    _GIVEN[key] = mapping
    try:
        yield
    finally:
        if previous is None:
            del _GIVEN[key]
        else:
            _GIVEN[key] = previous


def production_mapping(production_file: str | Path | None) -> Mapping:
    """The mapping a production uses: one given for it, else ``hie-mapping.yaml`` beside it.

    Raises ``ConfigError`` when that file cannot be read.
    """
    if production_file is None:
        return Mapping()
    given = _GIVEN.get(_key(production_file))
    if given is not None:
        return given
    beside = Path(production_file).resolve().parent / MAPPING_FILE
    return load_mapping(beside) if beside.is_file() else Mapping()


def call_text(key: str) -> str:
    """A ``Context.functions`` key as written in IRIS: ``##class(Demo.Util).Now()``."""
    if key.startswith(".."):
        return f"{key}()"
    cls, _, method = key.rpartition(".")
    return f"##class({cls}).{method}()"


def mapped_target(functions: dict[str, str], key: str) -> str | None:
    """``module:function`` for a class method key: its own entry, else its class's module."""
    target = functions.get(key)
    if target is None and not key.startswith(".."):
        cls, _, method = key.rpartition(".")
        module = functions.get(cls)
        if module is not None and ":" not in module:
            target = f"{module}:{method}"
    return target


def resolve_function(mapping: Mapping, key: str) -> Callable[..., Any] | None:
    """The function ``mapping`` names for a class method key, or None when it names none.

    Raises ``ConfigError`` when the named function cannot be imported or is not callable.
    """
    target = mapped_target(mapping.functions, key)
    if target is None:
        return None
    if mapping.source is not None:
        folder = str(Path(mapping.source).resolve().parent)
        if folder not in sys.path:
            sys.path.append(folder)  # appended: a helper module never shadows the library
    try:
        found = import_object(target)
    except Exception as exc:  # a broken helper module: its own error, whatever it is
        where = f" ({mapping.source})" if mapping.source else ""
        raise ConfigError(
            f"functions{where}: {key}: cannot import {target}: {type(exc).__name__}: {exc}"
        ) from exc
    if not callable(found):
        raise ConfigError(f"functions: {key}: {target} is not a function")
    return found


def _unmapped(key: str, sites: list[str], mapping: Mapping, production_file: str | None) -> str:
    where = "; ".join(sites)
    file = mapping.source or (
        str(Path(production_file).resolve().parent / MAPPING_FILE)
        if production_file
        else MAPPING_FILE
    )
    return (
        f"{call_text(key)} is not mapped to Python (called at {where}); add "
        f"'{key}: module:function' under functions: in {file}"
    )


def bind_helpers(
    transforms: Iterable[Transform],
    production_file: str | None,
    *,
    tables: Any = None,
    rules: RuleDefinition | None = None,
) -> list[str]:
    """Give each transform its helper functions and ``tables``; one problem per call that
    cannot be bound (none mapped, or the mapped one cannot be imported).

    ``rules`` (the router's rule definition) get theirs the same way: IRIS rules call helper
    classes and the methods of a user's function set (``WeekEnd()``) alike.
    """
    try:
        mapping = production_mapping(production_file)
    except ConfigError as exc:
        return [str(exc)]
    problems: list[str] = []

    def bind(owner: str, calls: dict[str, list[str]]) -> dict[str, Callable[..., Any]]:
        functions: dict[str, Callable[..., Any]] = {}
        for key, sites in calls.items():
            try:
                found = resolve_function(mapping, key)
            except ConfigError as exc:
                problems.append(f"{owner}: {exc}")
                continue
            if found is None:
                problems.append(f"{owner}: {_unmapped(key, sites, mapping, production_file)}")
            else:
                functions[key] = found
        return functions

    for transform in transforms:
        transform.functions = bind(f"transform {transform.name}", transform.class_calls)
        if tables is not None:
            transform.tables = tables
    if rules is not None:
        rules.functions = bind(f"rules {rules.name}", rule_calls(rules))
    return problems


def rule_calls(rules: RuleDefinition) -> dict[str, list[str]]:
    """Helper-class methods a rule definition's conditions and assigns call -> call sites."""
    found: dict[str, list[str]] = {}

    def note(text: str, line: int | None) -> None:
        where = f"{rules.source_file}:{line}" if line else rules.source_file
        for key in getattr(compile_expression(text), "class_calls", []):
            found.setdefault(key, []).append(f"{where}: {text}")

    def walk_actions(actions: list[Any], line: int | None) -> None:
        for action in actions:
            if getattr(action, "type", "") == "assign":
                note(action.value, line)
            for rule in getattr(action, "rules", []):
                walk_rule(rule)

    def walk_rule(rule: Any) -> None:
        for when in rule.when:
            note(when.condition, when.line)
            walk_actions(when.actions, when.line)
        walk_actions(rule.otherwise, None)

    for rule_set in rules.rule_sets:
        for rule in rule_set.rules:
            walk_rule(rule)
    return found


def _snake(name: str) -> str:
    out = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()
    out = re.sub(r"\W", "_", out).strip("_") or "helper"
    return f"{out}_" if keyword.iskeyword(out) or out[0].isdigit() else out


def helper_stubs(
    calls: dict[str, list[str]], *, module: str = "helpers", taken: Iterable[str] = ()
) -> tuple[str, dict[str, str]]:
    """Python stubs for ``calls`` (key -> call sites) and the ``functions:`` entries mapping
    them: ``(source code of the functions, {key: "module:function"})``."""
    used = set(taken)
    code: list[str] = []
    entries: dict[str, str] = {}
    for key in sorted(calls):
        cls, _, method = key.rpartition(".")
        name = _snake(method)
        if name in used:
            name = _snake(f"{cls.rsplit('.', 1)[-1]}_{method}") if cls.strip(".") else name
        while name in used:
            name += "_"
        used.add(name)
        entries[key] = f"{module}:{name}"
        sites = "\n".join(f"    - {_docstring_safe(site)}" for site in calls[key])
        code.append(
            f"\n\ndef {name}(*args: Any) -> Any:\n"
            f'    """{_docstring_safe(call_text(key))} in IRIS; called at:\n\n{sites}\n\n'
            "    Gets the argument values in order; returns the value the expression uses.\n"
            '    """\n'
            f"    raise NotImplementedError({f'{key}: write its body in {module}.py'!r})\n"
        )
    return "".join(code), entries


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


_STUB_HEADER = '''"""Python bodies for the IRIS helper class methods the converted transforms call.

Written by `hie import-iris`; hie-mapping.yaml beside this file maps each IRIS method to its
function here. Fill in each body.
"""

from __future__ import annotations

from typing import Any
'''


def write_helper_stubs(
    out_dir: Path, calls: dict[str, list[str]], mapping: Mapping
) -> dict[str, str]:
    """Map ``calls`` (key -> call sites) in ``out_dir/hie-mapping.yaml``: the entries of
    ``mapping`` (or of that file, from an earlier run) where they have one, else a stub in
    ``out_dir/helpers.py`` (appended to, never overwritten). Returns key -> ``module:function``.
    """
    mapping_file = out_dir / MAPPING_FILE
    data: dict[str, Any] = {}
    if mapping_file.is_file():
        loaded = yaml.load(mapping_file.read_text(encoding="utf-8"), Loader=BoundedLoader)
        data = loaded if isinstance(loaded, dict) else {}
    functions = {**(data.get("functions") or {}), **mapping.functions}
    unmapped = {k: v for k, v in calls.items() if mapped_target(functions, k) is None}
    stubs = out_dir / "helpers.py"
    if unmapped:
        old = stubs.read_text(encoding="utf-8") if stubs.is_file() else ""
        code, entries = helper_stubs(unmapped, taken=re.findall(r"^def (\w+)", old, re.M))
        stubs.write_text((old or _STUB_HEADER) + code, encoding="utf-8")
        functions.update(entries)
    data["functions"] = functions
    header = (
        "# IRIS mapping for this folder's production (found beside it as hie-mapping.yaml).\n"
        "# functions: the Python function run for each IRIS helper class method.\n"
    )
    body = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    mapping_file.write_text(header + body, encoding="utf-8")
    return {key: mapped_target(functions, key) or "" for key in calls}
