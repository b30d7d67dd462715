"""RoutingEngine: a business process that sends each message on to its targets.

With no rules it forwards every message to every target (fire-and-forget), like an IRIS routing
engine whose rule always matches. With ``rules`` (an IRIS rule class/XML, HIE rules YAML, or an
inline dict) the rules choose targets and the ``transforms`` applied first (each on a copy).
Rules, transforms and lookup tables are compiled once per worker process, in ``on_init``.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel

from hie.dotted_path import import_object
from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.hosts.base import ItemSettings
from hie.hosts.process import BusinessProcess
from hie.iris.helper_classes import bind_helpers
from hie.rules.transform import Transform, TransformRegistry
from hie.rules.loader import LookupTables, load_lookup_tables, load_rules, load_transform
from hie.rules.model import RuleDefinition, rules_from_data

if TYPE_CHECKING:
    from hie.production import Item, Production

log = logging.getLogger(__name__)


class RoutingSettings(ItemSettings):
    """Settings of a routing engine."""

    #: Rules (a path to a rules file, or inline rules) deciding targets; none forwards to all.
    rules: Any = None
    #: Paths of DTL classes/XML or HIE transform YAML, registered by class name.
    transforms: list[str] = []
    #: Paths of lookup-table files for ``Lookup()`` / ``Exists()``.
    lookup_tables: list[str] = []
    #: Skip DTL ``<code>``/``<sql>`` blocks instead of refusing the transform.
    allow_partial: bool = False


Compiled = tuple[RuleDefinition | None, TransformRegistry, LookupTables | None]


def compile_routing(settings: RoutingSettings, production: Production, item: str) -> Compiled:
    """Rules, transforms and lookup tables of a router, with relative paths taken from the
    production file's folder; ``ConfigError`` naming every target or transform that is missing.
    """
    registry = TransformRegistry()

    def add(path: Path) -> None:
        transform = load_transform(path, allow_partial=settings.allow_partial)
        transform.registry = registry
        registry.add(transform)

    for path in settings.transforms:
        add(production.resolve(path))
    tables = [production.resolve(p) for p in settings.lookup_tables]
    lookup = load_lookup_tables(tables) if tables else None
    if settings.rules is None:
        return None, registry, lookup
    if isinstance(settings.rules, dict):
        rules = rules_from_data(settings.rules, source=f"item {item} rules")
    else:
        rules = load_rules(_rule_file(str(settings.rules), production))
    items = {i.name for i in production.items}
    problems = [
        f"target {t!r} is not an item of the production" for t in sorted(rules.targets() - items)
    ]
    for name in sorted(rules.transforms() - set(registry)):
        # An IRIS production names DTL classes: take them from files exported beside it.
        found = find_class_file(name, production)
        if found is not None:
            add(found)
    for name in sorted(rules.transforms() - set(registry)):
        builtin = builtin_transform(name)
        if builtin is not None:
            registry.add(builtin)
    absent = sorted(rules.transforms() - set(registry))
    problems += [f"transform {t!r} is not loaded (add it to transforms)" for t in absent]
    if problems:
        raise ConfigError(f"item {item!r} rules: " + "; ".join(problems))
    return rules, registry, lookup


#: Transforms HIE provides, found by name without a ``transforms:`` entry (one listed there, or
#: exported beside the production, of the same name wins). Imported on first use, so a router
#: that does not send through them never loads their libraries (fhir.resources).
BUILTIN_TRANSFORMS: dict[str, str] = {"HL7ToFHIR": "hie.fhir:HL7ToFHIR"}


def builtin_transform(name: str) -> Transform | None:
    """A new instance of the built-in transform called ``name``, or None if there is none."""
    path = BUILTIN_TRANSFORMS.get(name)
    if path is None:
        return None
    cls = import_object(path)
    assert isinstance(cls, type) and issubclass(cls, Transform)  # the table above names them
    return cls()


def find_class_file(class_name: str, production: Production) -> Path | None:
    """An exported IRIS class (``Name.cls``/``.xml``, or ``*__Name.cls``) near the production.

    Looked for in the production file's folder, its parent, and the folders beside it
    (``../rules``, ``../dtl``, ...), which is how an IRIS export is usually laid out.
    """
    if production.source is None:
        return None
    here = Path(production.source).resolve().parent
    beside = sorted(p for p in here.parent.iterdir() if p.is_dir() and p != here)
    folders = [here, here.parent, *beside]
    for folder in folders:
        for suffix in (".cls", ".xml"):
            for candidate in (
                folder / f"{class_name}{suffix}",
                *folder.glob(f"*__{class_name}{suffix}"),
            ):
                if candidate.is_file():
                    return candidate
    return None


def _rule_file(rules: str, production: Production) -> Path:
    """The file of a router's ``rules``: a path, or an IRIS rule class exported near it."""
    path = production.resolve(rules)
    if path.exists() or path.suffix.lower() in (".yaml", ".yml", ".json", ".cls", ".xml"):
        return path
    found = find_class_file(rules, production)
    if found is None:
        raise ConfigError(
            f"rules {rules!r}: no such file, and no exported IRIS class {rules}.cls beside the "
            "production; export the rule class there or set rules: to its file"
        )
    return found


class RoutingEngine(BusinessProcess):
    """Send each request to the targets its rules choose (every target when it has none)."""

    Settings: ClassVar[type[ItemSettings]] = RoutingSettings

    rule_definition: RuleDefinition | None = None
    transform_registry: TransformRegistry
    lookup: LookupTables | None = None

    @classmethod
    def check_item(cls, item: Item, production: Production) -> list[str]:
        """Load-time check: rules, transforms and tables compile, and name known items; every
        helper class method a transform calls is mapped to Python, every subtransform found."""
        try:
            settings = cls.Settings.model_validate(item.settings)
            rules, registry, lookup = compile_routing(
                settings,  # type: ignore[arg-type]
                production,
                item.name,
            )
        except (ConfigError, OSError, ValueError) as exc:
            return [str(exc)]
        problems = bind_helpers(registry.values(), production.source, tables=lookup, rules=rules)
        for transform in registry.values():
            problems += [
                f"transform {transform.name}: subtransform {name} is not loaded (export it beside "
                "the production or list it in transforms)"
                for name in transform.missing_subtransforms()
            ]
        return problems

    @classmethod
    def source_files(cls, item: Item, production: Production) -> list[Path]:
        """The rule file, transforms (named ones exported beside the production too) and
        lookup tables this router reads."""
        settings = cls.Settings.model_validate(item.settings)
        assert isinstance(settings, RoutingSettings)
        files = [production.resolve(p) for p in [*settings.transforms, *settings.lookup_tables]]
        if settings.rules is None or isinstance(settings.rules, dict):
            return files
        rule_file = _rule_file(str(settings.rules), production)
        files.append(rule_file)
        for name in sorted(load_rules(rule_file).transforms()):
            found = find_class_file(name, production)
            if found is not None:
                files.append(found)
        return files

    def on_init(self) -> None:
        """Compile rules, transforms and tables once per worker process."""
        settings: RoutingSettings = self.settings  # type: ignore[assignment]
        self.rule_definition, self.transform_registry, self.lookup = compile_routing(
            settings, self.production, self.item_name
        )
        # Transforms get their helper functions and the router's lookup tables.
        problems = bind_helpers(
            self.transform_registry.values(),
            self.production.source,
            tables=self.lookup,
            rules=self.rule_definition,
        )
        if problems:
            raise ConfigError(f"item {self.item_name!r}: " + "; ".join(problems))

    def on_request(self, request: Any) -> Any:
        """Route the request; the router itself has no reply."""
        if getattr(self, "rule_definition", None) is None:
            self.send_to_targets(request)
            return None
        # HL7 text is read as a message; an object body (a general routing engine's message)
        # is routed as it is, its properties read by the rules (``Document.Info.System``).
        msg = HL7Message(request) if isinstance(request, str | bytes) else request
        current = self.current
        outcome = self.rule_definition.evaluate(  # type: ignore[union-attr]
            msg, source=current.source if current else None, tables=self.lookup
        )
        sends = [] if outcome.deleted else outcome.sends
        for send in sends:
            out: Any = msg.copy() if isinstance(msg, HL7Message) else _copy(msg)
            for name in send.transforms:
                out = self.transform_registry[name].apply(out)
            self._send_child(self._child(send.target, out, None, **{"hie-rule": send.rule}))
        detail = ", ".join(f"{s.rule} -> {s.target}" for s in sends) or "no rule matched"
        self._record(detail)
        return None

    def _record(self, detail: str) -> None:
        log.debug("item %s routing: %s", self.item_name, detail)
        self.record_event("rule", detail)


def _copy(document: Any) -> Any:
    """A copy of an object document each send's transforms may change on their own."""
    if isinstance(document, BaseModel):
        return document.model_copy(deep=True)
    return copy.deepcopy(document)


class HL7RoutingEngine(RoutingEngine):
    """A routing engine for HL7 v2 messages (IRIS ``EnsLib.HL7.MsgRouter.RoutingEngine``)."""
