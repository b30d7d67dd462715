"""IRIS rule classes (``Ens.Rule.Definition``, ``XData RuleDefinition``) -> ``RuleDefinition``.

Reads a ``.cls`` file, an IRIS export or a bare ``<ruleDefinition>`` (``hie.iris.classfile``).
Errors name the file and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hie.errors import ConfigError
from hie.iris.classfile import Definition, read_definition, tag_name
from hie.rules.model import Constraints, Rule, RuleDefinition, RuleSet, When

__all__ = ["load_iris_rules", "parse_iris_rules"]

_CONSTRAINTS = {
    "source": "source",
    "msgclass": "msg_class",
    "doccategory": "doc_category",
    "docname": "doc_name",
    "doctype": "doc_type",
}
_IGNORED = {"trace", "debug", "comment", "description"}


def load_iris_rules(path: str | Path) -> RuleDefinition:
    """Load an IRIS rule class (``.cls``) or exported rule XML; raises ``ConfigError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read rules {path}: {exc}") from exc
    return parse_iris_rules(data, source=str(path))


def parse_iris_rules(text: str | bytes, *, source: str) -> RuleDefinition:
    """Parse rule class text or rule XML; ``source`` names the file in errors."""
    found = read_definition(text, xdata="RuleDefinition", root="ruleDefinition", source=source)
    return _Reader(found).definition(found.root, found.class_name)


class _Reader:
    def __init__(self, found: Definition) -> None:
        self.source = found.source
        self.line = found.line
        self.error = found.error

    def definition(self, root: Any, name: str) -> RuleDefinition:
        sets = [self.rule_set(el) for el in root if tag_name(el) == "ruleSet"]
        rules = RuleDefinition(
            name=name,
            alias=root.get("alias", ""),
            context=root.get("context", ""),
            production=root.get("production", ""),
            rule_sets=sets,
        )
        rules.source_file = self.source
        return rules.compile()

    def rule_set(self, el: Any) -> RuleSet:
        rules = [self.rule(r) for r in el if tag_name(r) == "rule"]
        return RuleSet(
            name=el.get("name", ""),
            effective_begin=el.get("effectiveBegin", ""),
            effective_end=el.get("effectiveEnd", ""),
            rules=rules,
        )

    def rule(self, el: Any) -> Rule:
        constraints: dict[str, str] = {}
        whens: list[When] = []
        otherwise: list[Any] = []
        for child in el:
            tag = tag_name(child)
            if tag == "constraint":
                key = _CONSTRAINTS.get(child.get("name", "").lower())
                if key is None:
                    raise self.error(child, f"unknown constraint {child.get('name')!r}")
                constraints[key] = child.get("value", "")
            elif tag == "when":
                actions = self.actions(child)
                whens.append(When(condition=child.get("condition", "0"), actions=actions))
                whens[-1].line = self.line(child)
            elif tag == "otherwise":
                otherwise = self.actions(child)
            elif tag and tag not in _IGNORED:
                raise self.error(child, f"<{tag}> is not allowed in a <rule>")
        disabled = el.get("disabled", "false").lower() in ("true", "1")
        return Rule(
            name=el.get("name", ""),
            disabled=disabled,
            constraints=Constraints(**constraints),
            when=whens,
            otherwise=otherwise,
        )

    def actions(self, el: Any) -> list[Any]:
        out: list[Any] = []
        for child in el:
            tag = tag_name(child)
            if tag == "send":
                if not child.get("target"):
                    raise self.error(child, "<send> has no target")
                out.append(
                    {
                        "type": "send",
                        "target": child.get("target"),
                        "transform": child.get("transform", ""),
                    }
                )
            elif tag in ("return", "delete"):
                out.append({"type": tag})
            elif tag == "assign":
                out.append(
                    {
                        "type": "assign",
                        "property": child.get("property", ""),
                        "value": child.get("value", '""'),
                    }
                )
            elif tag == "foreach":
                rules = [self.rule(r) for r in child if tag_name(r) == "rule"]
                out.append(
                    {"type": "foreach", "property": child.get("propertypath", ""), "rules": rules}
                )
            elif tag == "rule":  # a nested rule inside a when: run it as a foreach of one
                out.append({"type": "foreach", "property": "", "rules": [self.rule(child)]})
            elif tag and tag not in _IGNORED:
                raise self.error(child, f"<{tag}> is not a rule action")
        return out
