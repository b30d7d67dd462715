"""HIE's routing-rule model (the shape of an IRIS ``Ens.Rule.Definition``) and its evaluation.

A ``RuleDefinition`` holds rule sets; the first set effective now is used. Its rules run in
order: a rule that is enabled and whose constraints match runs the actions of its first true
``when`` (else its ``otherwise``); routing goes on to the next rule unless an action was
``return``, as in IRIS routing engines.

Example::

    rules = load_rules("routing.yaml")
    outcome = rules.evaluate(msg, source="EMR HL7 Feed")
    for send in outcome.sends: ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from hie.hl7 import HL7Message
from hie.rules.document import validate_document
from hie.rules.expressions import Context, Expression, compile_expression

__all__ = [
    "Action",
    "Constraints",
    "RuleDefinition",
    "RuleOutcome",
    "RuleSet",
    "Send",
    "When",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SendAction(_Model):
    """Send to each target (comma list) after the transforms (comma list), in order."""

    type: Literal["send"]
    target: str
    transform: str = ""


class ReturnAction(_Model):
    """Stop evaluating further rules."""

    type: Literal["return"]


class DeleteAction(_Model):
    """Mark the message deleted (IRIS deletes it; HIE records it and sends nothing more)."""

    type: Literal["delete"]


class AssignAction(_Model):
    """Set a rule variable (``property``) to an expression's value."""

    type: Literal["assign"]
    property: str
    value: str


class ForeachAction(_Model):
    """Run nested rules for a repeating property (see ``RuleDefinition`` notes)."""

    type: Literal["foreach"]
    property: str
    rules: list[Rule] = []


Action = Annotated[
    SendAction | ReturnAction | DeleteAction | AssignAction | ForeachAction,
    Field(discriminator="type"),
]


class Constraints(_Model):
    """Comma lists; an empty one matches anything."""

    source: str = ""
    msg_class: str = ""
    doc_category: str = ""
    doc_name: str = ""
    doc_type: str = ""


class When(_Model):
    """A condition and the actions it runs when true."""

    condition: str
    actions: list[Action] = []
    line: int | None = Field(default=None, exclude=True)


class Rule(_Model):
    """One rule: constraints, ``when`` clauses in order, and ``otherwise`` actions."""

    name: str = ""
    disabled: bool = False
    constraints: Constraints = Constraints()
    when: list[When] = []
    otherwise: list[Action] = []


class RuleSet(_Model):
    """Rules effective between two times (IRIS ``YYYY-MM-DDTHH:MM:SS``; empty is open)."""

    name: str = ""
    effective_begin: str = ""
    effective_end: str = ""
    rules: list[Rule] = []

    def is_effective(self, now: datetime) -> bool:
        """True when ``now`` is within the set's effective interval."""
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S")
        # IRIS compares the text; a date-only bound is padded so it covers its whole day.
        begin = self.effective_begin.strip().replace(" ", "T")
        end = self.effective_end.strip().replace(" ", "T")
        if end and len(end) == 10:
            end += "T23:59:59"
        return (not begin or stamp >= begin) and (not end or stamp <= end)


@dataclass(frozen=True)
class Send:
    """One send chosen by the rules: a target and the transforms to apply first."""

    target: str
    transforms: list[str] = field(default_factory=list)
    rule: str = ""


@dataclass
class RuleOutcome:
    """What the rules decided for one message."""

    sends: list[Send] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    returned: bool = False
    deleted: bool = False


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


_VERSION = re.compile(r"^\d+(\.\d+)*$")


class RuleDefinition(_Model):
    """A routing rule definition; build with ``load_iris_rules`` / ``load_rules``.

    ``foreach`` runs its nested rules once, with ``()`` paths meaning "any repetition"; IRIS
    runs them per repetition, which routes the same unless nested actions differ per element.
    """

    name: str = ""
    alias: str = ""
    context: str = ""
    production: str = ""
    rule_sets: list[RuleSet] = []
    source_file: str = Field(default="", exclude=True)
    _compiled: dict[str, Expression] = PrivateAttr(default_factory=dict)
    _functions: Mapping[str, Callable[..., Any]] = PrivateAttr(default_factory=dict)

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """The Python functions its helper-class and user function-set calls run (set by the
        router from the production's ``hie-mapping.yaml``)."""
        return self._functions

    @functions.setter
    def functions(self, value: Mapping[str, Callable[..., Any]]) -> None:
        self._functions = value

    def compile(self) -> RuleDefinition:
        """Compile every condition now, so a bad expression fails at load, not on a message."""
        for rule_set in self.rule_sets:
            self._compile_rules(rule_set.rules)
        return self

    def _compile_rules(self, rules: list[Rule]) -> None:
        for rule in rules:
            for when in rule.when:
                where = f"{self.source_file}:{when.line}" if when.line else self.source_file
                self._expr(when.condition, where)
                self._compile_actions(when.actions, where)
            self._compile_actions(rule.otherwise, self.source_file)

    def _compile_actions(self, actions: list[Any], where: str) -> None:
        for action in actions:
            if isinstance(action, AssignAction):
                self._expr(action.value, where)
            elif isinstance(action, ForeachAction):
                self._compile_rules(action.rules)

    def _expr(self, text: str, where: str = "") -> Expression:
        found = self._compiled.get(text)
        if found is None:
            found = self._compiled[text] = compile_expression(text, where=where)
        return found

    def targets(self) -> set[str]:
        """Every target any rule may send to, for validation against the production."""
        out: set[str] = set()

        def walk(actions: list[Any]) -> None:
            for a in actions:
                if isinstance(a, SendAction):
                    out.update(_split(a.target))
                elif isinstance(a, ForeachAction):
                    for r in a.rules:
                        walk([x for w in r.when for x in w.actions] + r.otherwise)

        for rs in self.rule_sets:
            for rule in rs.rules:
                walk([x for w in rule.when for x in w.actions] + rule.otherwise)
        return out

    def transforms(self) -> set[str]:
        """Every transform named by a send."""
        out: set[str] = set()
        for rs in self.rule_sets:
            for rule in rs.rules:
                for a in [x for w in rule.when for x in w.actions] + rule.otherwise:
                    if isinstance(a, SendAction):
                        out.update(_split(a.transform))
        return out

    def evaluate(
        self,
        msg: HL7Message | Any,
        *,
        source: str | None = None,
        now: datetime | None = None,
        tables: Any = None,
    ) -> RuleOutcome:
        """Run the rules on ``msg`` from sender ``source``; ``now`` fixes the clock for tests."""
        moment = now or datetime.now()
        ctx = Context(
            source=msg, source_name=source, now=moment, tables=tables, functions=self._functions
        )
        outcome = RuleOutcome()
        rule_set = next((rs for rs in self.rule_sets if rs.is_effective(moment)), None)
        if rule_set is not None:
            self._run_rules(rule_set.rules, ctx, outcome, prefix="")
        if not outcome.fired:
            outcome.fired.append("none")
        return outcome

    def _run_rules(self, rules: list[Rule], ctx: Context, out: RuleOutcome, prefix: str) -> None:
        for number, rule in enumerate(rules, 1):
            if rule.disabled or not _constraints_match(rule.constraints, ctx):
                continue
            label = rule.name or f"{prefix}#{number}"
            actions = None
            for when in rule.when:
                if self._expr(when.condition).is_true(ctx):
                    actions = when.actions
                    break
            if actions is None:
                actions = rule.otherwise
                if not actions:
                    continue
            out.fired.append(label)
            self._run_actions(actions, ctx, out, label)
            if out.returned:
                return

    def _run_actions(self, actions: list[Any], ctx: Context, out: RuleOutcome, label: str) -> None:
        for action in actions:
            if isinstance(action, SendAction):
                transforms = _split(action.transform)
                out.sends.extend(Send(t, transforms, label) for t in _split(action.target))
            elif isinstance(action, ReturnAction):
                out.returned = True
                return
            elif isinstance(action, DeleteAction):
                out.deleted = True
            elif isinstance(action, AssignAction):
                ctx.variables[action.property] = self._expr(action.value).evaluate(ctx)
            elif isinstance(action, ForeachAction):
                self._run_rules(action.rules, ctx, out, prefix=f"{label}.")
                if out.returned:
                    return

    def to_yaml(self) -> str:
        """HIE's YAML form; ``load_rules`` reads it back to the same behaviour."""
        data = {"kind": "rules", **self.model_dump(mode="json", exclude_defaults=True)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _class_names(document: Any) -> set[str]:
    """Names a rule's ``msgClass`` may give a non-HL7 document's class by (IRIS message classes
    are built as ``Demo_Msg_X`` models in module ``iris``)."""
    cls = type(document)
    return {cls.__name__, cls.__name__.replace("_", "."), f"{cls.__module__}.{cls.__qualname__}"}


def _constraints_match(c: Constraints, ctx: Context) -> bool:
    msg: HL7Message = ctx.source
    if c.source and (ctx.source_name or "") not in _split(c.source):
        return False
    if not isinstance(msg, HL7Message):
        # An object document (a general routing engine's message): only its class can be
        # constrained; document names, types and categories are HL7 schema terms.
        if c.msg_class and not _class_names(msg) & set(_split(c.msg_class)):
            return False
        return not (c.doc_name or c.doc_type or c.doc_category)
    if c.msg_class and "hl7" not in c.msg_class.lower():
        return False
    name = f"{msg.message_code}_{msg.trigger_event}"
    if c.doc_name and name not in _split(c.doc_name):
        return False
    if c.doc_type:
        # IRIS knows the structure from the schema; HIE reads MSH-9.3 and, when it is empty,
        # accepts the message name (ADT_A01 is its own structure).
        structure = msg.message_structure or name
        wanted = [t.split(":")[-1] for t in _split(c.doc_type)]
        if structure not in wanted and name not in wanted and msg.message_code not in wanted:
            return False
    if c.doc_category:
        # A version-like category must equal MSH-12; a custom schema name (Demo.Schema) is a
        # parsing choice of the sender in IRIS, with no trace in the message: it matches.
        versions = [v for v in _split(c.doc_category) if _VERSION.match(v)]
        if versions and len(versions) == len(_split(c.doc_category)):
            if msg.version not in versions:
                return False
    return True


def rules_from_data(data: Any, *, source: str) -> RuleDefinition:
    """Validate HIE rules data (from YAML/JSON or an inline dict) and compile it."""
    rules = validate_document(
        RuleDefinition,
        data,
        source=source,
        not_mapping="rules must be a mapping with rule_sets",
        invalid="rules are not valid",
    )
    rules.source_file = source
    return rules.compile()


ForeachAction.model_rebuild()
