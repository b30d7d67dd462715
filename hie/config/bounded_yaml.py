"""A YAML loader that refuses documents whose aliases expand past a bound ("billion laughs").

Anchors and aliases are legitimate YAML (a production may share settings with ``&defaults`` and
``<<: *defaults``), but a few hundred bytes of nested aliases can stand for millions of values,
and every reader that walks the data (line numbers, validation, rules) expands them again. The
loader counts each value once per place it appears, aliases included, while it composes the
document, and stops with the line of the alias that crossed ``MAX_VALUES``.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import ComposerError

#: Values one document may hold once its aliases are expanded.
MAX_VALUES = 100_000


class BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with the bound above (use as ``Loader=`` of compose or load)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._values = 0
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            anchored = self.anchors.get(event.anchor)
            size = self._size(anchored) if anchored is not None else 1
        else:
            event, size = self.peek_event(), 1  # type: ignore[no-untyped-call]
        self._values += size
        if self._values > MAX_VALUES:
            raise ComposerError(
                None,
                None,
                f"the document expands to more than {MAX_VALUES:,} values through its aliases",
                event.start_mark,
            )
        return super().compose_node(parent, index)

    def _size(self, node: yaml.Node) -> int:
        """Values ``node`` stands for, its own included (memoised: aliases share nodes)."""
        known = self._sizes.get(id(node))
        if known is not None:
            return known
        size = 1
        if isinstance(node, yaml.SequenceNode):
            size += sum(self._size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            size += sum(self._size(k) + self._size(v) for k, v in node.value)
        self._sizes[id(node)] = size
        return size
