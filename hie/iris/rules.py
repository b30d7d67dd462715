"""IRIS rule classes (``Ens.Rule.Definition``, ``XData RuleDefinition``) -> ``RuleDefinition``.

Reads a ``.cls`` file (the XData block is cut out, keeping its line numbers), an IRIS export
(``<Export><Class><XData name="RuleDefinition"><Data>``) or a bare ``<ruleDefinition>``.
Errors name the file and line.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lxml import etree

from hie.config.safe_xml import extract_xdata, parse_xml
from hie.errors import ConfigError
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


def _tag(el: Any) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def load_iris_rules(path: str | Path) -> RuleDefinition:
    """Load an IRIS rule class (``.cls``) or exported rule XML; raises ``ConfigError``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(f"cannot read rules {path}: {exc}") from exc
    return parse_iris_rules(text, source=str(path))


def parse_iris_rules(text: str, *, source: str) -> RuleDefinition:
    """Parse rule class text or rule XML; ``source`` names the file in errors."""
    name = ""
    first = 1
    if not text.lstrip().startswith("<"):
        m = re.search(r"^\s*Class\s+([\w.%]+)", text, re.MULTILINE)
        name = m.group(1) if m else ""
        text, first = extract_xdata(text, "RuleDefinition", source=source)
    root = parse_xml(text, source=source, first_line=first)
    if _tag(root) == "Export":
        root, name, first = _from_export(root, source, first)
    if _tag(root) != "ruleDefinition":
        raise ConfigError(f"{source}: expected <ruleDefinition>, found <{_tag(root)}>")
    return _Reader(source, first).definition(root, name)


def _from_export(root: Any, source: str, first: int) -> tuple[Any, str, int]:
    for cls in root.iter("{*}Class", "Class"):
        for xdata in cls.iter("{*}XData", "XData"):
            if xdata.get("name") == "RuleDefinition":
                data = next(iter(xdata.iter("{*}Data", "Data")), None)
                if data is not None and data.text:
                    line = (data.sourceline or 1) + first - 1
                    inner = parse_xml(data.text.strip(), source=source, first_line=line)
                    return inner, cls.get("name", ""), line
    raise ConfigError(f"{source}: the export has no XData RuleDefinition")


class _Reader:
    def __init__(self, source: str, first: int) -> None:
        self.source = source
        self.first = first

    def line(self, el: Any) -> int:
        return (el.sourceline or 1) + self.first - 1

    def error(self, el: Any, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}:{self.line(el)}: {problem}")

    def definition(self, root: Any, name: str) -> RuleDefinition:
        sets = [self.rule_set(el) for el in root if _tag(el) == "ruleSet"]
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
        rules = [self.rule(r) for r in el if _tag(r) == "rule"]
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
            tag = _tag(child)
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
            tag = _tag(child)
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
                rules = [self.rule(r) for r in child if _tag(r) == "rule"]
                out.append(
                    {"type": "foreach", "property": child.get("propertypath", ""), "rules": rules}
                )
            elif tag == "rule":  # a nested rule inside a when: run it as a foreach of one
                out.append({"type": "foreach", "property": "", "rules": [self.rule(child)]})
            elif tag and tag not in _IGNORED:
                raise self.error(child, f"<{tag}> is not a rule action")
        return out
