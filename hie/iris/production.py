"""Load an IRIS production definition (``.cls`` or exported ``.xml``) as a HIE ``Production``.

Accepted inputs:

- a class file extending ``Ens.Production`` with ``XData ProductionDefinition { <Production> }``;
- an XML file whose root is ``<Production>``, or an export wrapping it (``<Export><Class>
  <XData><Data><![CDATA[<Production ...>]]>``, Ens.Deployment documents): the first
  ``<Production>`` element, or element text that is one, is used.

Every problem names the file, the line in the *original* file and the item, and all of them are
raised together in one ``ProductionError``.

Unmapped items. An item whose class has no HIE host (custom ObjectScript classes, a HIE class
not available in this version, a required setting IRIS left empty) is not an error in the file,
but it cannot run either. So:

- ``read_iris_production()`` returns the production of the items that map *and* a report of
  every item, mapped or not (``IrisProduction.report()``);
- ``load_iris_production(path, strict=True)`` (what ``start``/``worker`` use through
  ``load_production``) refuses a production with unmapped items, listing each with its line;
  ``strict=False`` (what ``validate`` and ``import-iris --allow-partial`` use) returns the
  mappable items and drops targets that point at the rest; the report says what was dropped.

Settings that do not map are never dropped silently: each is in the item's
``unmapped_settings`` with the reason. Item names are made valid HIE names (spaces and other
characters become ``_``) and targets follow the renaming.

The mapping (custom classes, settings, helper functions) is the one given, else
``hie-mapping.yaml`` beside the production file (``hie.iris.helper_classes``), so ``start``
finds what ``validate`` and ``import-iris`` were given.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hie.errors import ConfigError, Problem, ProductionError
from hie.iris.classfile import read_definition, tag_name
from hie.iris.helper_classes import production_mapping, use_mapping
from hie.iris.mapping import ItemReport, Mapping, load_mapping, map_item_settings
from hie.production import Item, Production, collect_problems

if TYPE_CHECKING:
    from lxml import etree

__all__ = [
    "IrisProduction",
    "ItemReport",
    "hie_name",
    "load_iris_production",
    "migration_report",
    "read_iris_production",
]

_TRUE = {"1", "true", "yes"}
_FALSE = {"0", "false", "no", ""}


def hie_name(name: str) -> str:
    """``name`` made a valid HIE production/item name: other characters become ``_``."""
    clean = re.sub(r"[^A-Za-z0-9_.\-]", "_", name.strip())
    return clean if re.match(r"^[A-Za-z0-9_]", clean) else f"_{clean}"


@dataclass
class IrisProduction:
    """An IRIS production read for HIE: the runnable part and a report of every item."""

    source: str
    name: str
    production: Production
    items: list[ItemReport]
    notes: list[str] = field(default_factory=list)
    #: Items that map but would not start as they are (a rule class that cannot be found ...).
    blocked: list[Problem] = field(default_factory=list)

    @property
    def unmapped(self) -> list[ItemReport]:
        """The items that have no HIE host class."""
        return [item for item in self.items if item.hie_class is None]

    @property
    def rules(self) -> dict[str, str]:
        """Item name -> IRIS rule class (BusinessRuleName), for converting the rules too."""
        return {item.name: item.rule for item in self.items if item.rule}

    def unmapped_problems(self) -> list[Problem]:
        """One problem per unmapped item, for refusing to run the production."""
        return [
            Problem(
                self.source,
                item.line,
                item.name,
                f"not runnable: {item.reason}",
                "name a host class in a mapping file (--mapping FILE), or remove the item",
            )
            for item in self.unmapped
        ]

    def report(self) -> dict[str, Any]:
        """The migration report: per item its IRIS and HIE class, settings and what did not map."""
        return {
            "production": self.name,
            "source": self.source,
            "notes": list(self.notes),
            "items": [asdict(item) for item in self.items],
            "unmapped_items": [item.name for item in self.unmapped],
            "rules": self.rules,
        }


def _flag(value: str | None, default: bool) -> bool | None:
    if value is None:
        return default
    low = value.strip().lower()
    return True if low in _TRUE else False if low in _FALSE else None


@dataclass
class _Raw:
    """An ``<Item>`` as written, before mapping."""

    iris_name: str
    name: str
    iris_class: str
    line: int
    enabled: bool
    pool_size: int
    element: etree._Element


def _read_raw_items(
    prod: etree._Element, offset: int, source: str
) -> tuple[list[_Raw], list[Problem]]:
    """Every ``<Item>`` with its attributes checked; problems for the ones that are broken."""
    raws: list[_Raw] = []
    problems: list[Problem] = []
    for element in prod:
        if tag_name(element) != "Item":
            continue
        line = (element.sourceline or 1) + offset
        iris_name = (element.get("Name") or "").strip()
        iris_class = (element.get("ClassName") or "").strip()
        label = iris_name or None
        if not iris_name:
            problems.append(Problem(source, line, None, "item has no Name", 'add Name="..."'))
        if not iris_class:
            problems.append(
                Problem(source, line, label, "item has no ClassName", 'add ClassName="..."')
            )
        enabled = _flag(element.get("Enabled"), True)
        if enabled is None:
            problems.append(
                Problem(
                    source, line, label, f"Enabled={element.get('Enabled')!r}", "use true or false"
                )
            )
        pool_text = (element.get("PoolSize") or "1").strip()
        pool_size = int(pool_text) if re.fullmatch(r"\d{1,3}", pool_text) else -1
        if not 0 <= pool_size <= 256:
            problems.append(
                Problem(
                    source,
                    line,
                    label,
                    f"PoolSize={pool_text!r} is not a whole number from 0 to 256",
                    "PoolSize=1 keeps messages in order (FIFO); more runs them in parallel",
                )
            )
        if iris_name and iris_class and enabled is not None and 0 <= pool_size <= 256:
            raws.append(
                _Raw(iris_name, hie_name(iris_name), iris_class, line, enabled, pool_size, element)
            )
    return raws, problems


def _dedupe(raws: list[_Raw], source: str) -> tuple[list[_Raw], list[Problem], list[str]]:
    """Drop duplicate names IRIS allows (one enabled at a time); report the rest as problems."""
    problems: list[Problem] = []
    notes: list[str] = []
    by_name: dict[str, list[_Raw]] = {}
    for raw in raws:
        by_name.setdefault(raw.name, []).append(raw)
    keep: list[_Raw] = []
    for raw in raws:
        group = by_name[raw.name]
        enabled = [r for r in group if r.enabled]
        if len(enabled) > 1 and raw is not group[0]:
            first = group[0]
            same = raw.iris_name == first.iris_name
            what = "duplicate item name" if same else f"item name {raw.name!r} (after renaming)"
            problems.append(
                Problem(
                    source,
                    raw.line,
                    raw.iris_name,
                    f"{what}: also defined at line {first.line}",
                    "item names must be unique among enabled items; rename or disable one",
                )
            )
            continue
        chosen = enabled[0] if enabled else group[0]
        if raw is chosen:
            keep.append(raw)
        elif len(enabled) <= 1:
            notes.append(
                f"line {raw.line}: item {raw.iris_name!r} ({raw.iris_class}) left out: IRIS "
                f"allows one enabled item per name and the one at line {chosen.line} is used"
            )
    return keep, problems, notes


def _actor_pool_size(prod: etree._Element) -> int:
    for element in prod:
        if tag_name(element) == "ActorPoolSize" and (element.text or "").strip().isdigit():
            return max(1, min(256, int((element.text or "1").strip())))
    return 2  # the IRIS default actor pool


def _production_notes(prod: etree._Element) -> list[str]:
    notes = []
    if _flag(prod.get("TestingEnabled"), False):
        notes.append("TestingEnabled: use `hie send` or a test production instead")
    if _flag(prod.get("LogGeneralTraceEvents"), False):
        notes.append("LogGeneralTraceEvents: use --log-level DEBUG")
    return notes


def read_iris_production(
    path: str | Path, mapping: Mapping | str | Path | None = None
) -> IrisProduction:
    """Read an IRIS production and map what can be mapped; report every item.

    Raises ``ProductionError`` for mistakes in the file itself (bad XML, an item without a
    ClassName, duplicate names, a bad PoolSize), never for items that merely do not map.
    """
    path = Path(path)
    source = str(path)
    try:
        if mapping is None:
            mapping = production_mapping(path)
        elif not isinstance(mapping, Mapping):
            mapping = load_mapping(mapping)
    except ConfigError as exc:
        raise ProductionError([Problem(source, None, None, str(exc))]) from exc
    try:
        found = read_definition(
            path.read_bytes(), xdata="ProductionDefinition", root="Production", source=source
        )
    except ConfigError as exc:
        line_match = re.search(r":(\d+)", str(exc).removeprefix(source))
        line = int(line_match.group(1)) if line_match else None
        raise ProductionError([Problem(source, line, None, str(exc))]) from exc
    prod, offset = found.root, found.line_offset
    name = hie_name(prod.get("Name") or found.class_name or path.stem)
    raws, problems = _read_raw_items(prod, offset, source)
    raws, duplicates, notes = _dedupe(raws, source)
    problems.extend(duplicates)
    if problems:
        raise ProductionError(problems)
    actor_pool = _actor_pool_size(prod)
    reports = [map_item_settings(raw.element, raw.name, raw.line, offset, mapping) for raw in raws]
    items = _runnable_items(raws, reports, actor_pool)
    description = next((e.text for e in prod if tag_name(e) == "Description"), None)
    production = Production(name=name, items=items, description=(description or "").strip() or None)
    production.source = source
    result = IrisProduction(source, name, production, reports, [*_production_notes(prod), *notes])
    problems = collect_problems(production, {}, check_only_shape=True)
    if problems:
        raise ProductionError(problems)
    with use_mapping(path, mapping):  # routers bind helper functions from it, too
        result.blocked = [
            Problem(source, item.line, item.name, message)
            for item in production.items
            for message in production.host_class(item.name).check_item(item, production)
        ]
    for problem in result.blocked:
        report = next(r for r in reports if r.name == problem.item)
        report.notes.append(f"will not start as it is: {problem.message}")
    return result


def _runnable_items(raws: list[_Raw], reports: list[ItemReport], actor_pool: int) -> list[Item]:
    """HIE items for the mapped reports; targets to unknown or unmapped items are dropped."""
    runnable = {r.name for r in reports if r.hie_class is not None}
    renamed = {raw.iris_name: raw.name for raw in raws}
    items = []
    for raw, report in zip(raws, reports, strict=True):
        targets = []
        for target in report.iris_targets:
            name = renamed.get(target, hie_name(target))
            if name in runnable:
                targets.append(name)
            elif target in renamed:
                report.notes.append(f"target {target!r} dropped: that item is not mapped")
            else:
                report.notes.append(f"target {target!r} dropped: no item of that name")
        report.targets = targets
        if report.hie_class is None:
            continue
        pool_size, fifo = _pool(raw.pool_size, report, actor_pool)
        element = raw.element
        items.append(
            Item(
                name=raw.name,
                class_name=report.hie_class,
                enabled=raw.enabled,
                targets=targets,
                pool_size=pool_size,
                fifo=fifo,
                settings=dict(report.settings),
                category=(element.get("Category") or "").strip() or None,
                comment=(element.get("Comment") or "").strip() or None,
                line=raw.line,
            )
        )
    return items


def _pool(pool_size: int, report: ItemReport, actor_pool: int) -> tuple[int, bool]:
    """IRIS PoolSize -> (pool_size, fifo). PoolSize=1 is IRIS's strict-order (FIFO) setting."""
    if report.kind == "service":
        if pool_size == 0:
            report.notes.append("PoolSize=0: the service runs in the HIE gateway")
        elif pool_size > 1:
            report.notes.append(f"PoolSize={pool_size}: HIE services run once, in the gateway")
        return 1, pool_size == 1
    if pool_size == 0:
        # IRIS runs PoolSize=0 processes in the shared actor pool, in no particular order.
        report.notes.append(f"PoolSize=0 (shared actor pool): pool_size {actor_pool}, not FIFO")
        return actor_pool, False
    return pool_size, pool_size == 1


def load_iris_production(
    path: str | Path, *, mapping: Mapping | str | Path | None = None, strict: bool = True
) -> Production:
    """Load an IRIS production; ``strict`` refuses one with unmapped items (see the module doc)."""
    result = read_iris_production(path, mapping)
    if strict and (result.unmapped or result.blocked):
        raise ProductionError([*result.unmapped_problems(), *result.blocked])
    return result.production


def migration_report(
    production_path: str | Path, mapping: Mapping | str | Path | None = None
) -> dict[str, Any]:
    """Per item: name, IRIS class, HIE class (or None), settings mapped and what did not map."""
    return read_iris_production(production_path, mapping).report()
