"""RoutingEngine: a business process that sends each message on to its targets.

With no rules it forwards every message to every target (fire-and-forget), like an IRIS routing
engine whose rule always matches. With ``rules`` (an IRIS rule class/XML, HIE rules YAML, or an
inline dict) the rules choose targets and the ``transforms`` applied first (each on a copy).
Rules, transforms and lookup tables are compiled once per worker process, in ``on_init``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from hie.errors import ConfigError
from hie.hl7 import HL7Message
from hie.hosts.base import ItemSettings
from hie.hosts.process import BusinessProcess
from hie.rules.dtl import TransformRegistry
from hie.rules.loader import LookupTables, load_lookup_tables, load_rules, load_transform
from hie.rules.model import RuleDefinition, rules_from_data

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


class RoutingEngine(BusinessProcess):
    """Send each request to the targets its rules choose (every target when it has none)."""

    Settings: ClassVar[type[ItemSettings]] = RoutingSettings

    rule_definition: RuleDefinition | None = None
    transform_registry: TransformRegistry
    lookup: LookupTables | None = None

    def on_init(self) -> None:
        """Compile rules, transforms and tables once; check every target and transform exists."""
        settings: RoutingSettings = self.settings  # type: ignore[assignment]
        self.transform_registry = TransformRegistry()
        for path in settings.transforms:
            transform = load_transform(path, allow_partial=settings.allow_partial)
            transform.registry = self.transform_registry
            self.transform_registry.add(transform)
        self.lookup = load_lookup_tables(settings.lookup_tables) if settings.lookup_tables else None
        if settings.rules is None:
            return
        if isinstance(settings.rules, dict):
            rules = rules_from_data(settings.rules, source=f"item {self.item_name} rules")
        else:
            rules = load_rules(Path(str(settings.rules)))
        self._check(rules)
        self.rule_definition = rules

    def _check(self, rules: RuleDefinition) -> None:
        items = {item.name for item in getattr(self.production, "items", [])}
        problems = []
        if items:
            missing = sorted(rules.targets() - items)
            problems += [f"target {t!r} is not an item of the production" for t in missing]
        absent = sorted(rules.transforms() - set(self.transform_registry))
        problems += [f"transform {t!r} is not loaded (add it to transforms)" for t in absent]
        if problems:
            raise ConfigError(f"item {self.item_name!r} rules: " + "; ".join(problems))

    def on_request(self, request: Any) -> Any:
        """Route the request; the router itself has no reply."""
        if getattr(self, "rule_definition", None) is None:
            self.send_to_targets(request)
            return None
        msg = request if isinstance(request, HL7Message) else HL7Message(request)
        current = self.current
        outcome = self.rule_definition.evaluate(  # type: ignore[union-attr]
            msg, source=current.source if current else None, tables=self.lookup
        )
        sends = [] if outcome.deleted else outcome.sends
        for send in sends:
            out: Any = msg.copy()
            for name in send.transforms:
                out = self.transform_registry[name].apply(out)
            child = self._child(send.target, out, None, **{"hie-rule": send.rule})
            self.dispatcher.send(child)
        detail = ", ".join(f"{s.rule} -> {s.target}" for s in sends) or "no rule matched"
        self._record(detail)
        return None

    def _record(self, detail: str) -> None:
        log.info("item %s routing: %s", self.item_name, detail)
        tracker = getattr(self._dispatcher, "tracker", None)
        store = getattr(tracker, "store", None)
        record = getattr(store, "record_event", None)
        current = self.current
        if record is not None and current is not None:
            record(current.message_id, "rule", item=self.item_name, detail=detail)


class HL7RoutingEngine(RoutingEngine):
    """A routing engine for HL7 v2 messages (IRIS ``EnsLib.HL7.MsgRouter.RoutingEngine``)."""
