"""Production and Item: the validated definition of what runs, and its item graph.

A production is a set of items (business services, processes and operations) joined by targets.
``Production.check()`` resolves every item's host class and validates its settings, collecting
every problem (file, line, item, what is wrong, what to do) into one ``ProductionError``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from hie.errors import ConfigError, Problem, ProductionError
from hie.hooks import hook_class

if TYPE_CHECKING:
    from hie.hosts.base import Host

Pool = Literal["prefork", "threads", "solo"]
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _checked_name(what: str, value: str) -> str:
    """``value`` if it is a valid ``what`` (item or production) name; ``ValueError`` otherwise."""
    if not _NAME.match(value):
        raise ValueError(f"{what} name {value!r} may only contain letters, digits, '_', '.', '-'")
    return value


class Item(BaseModel):
    """One item of a production: a host class, its targets, its workers and its settings."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    class_name: str = Field(alias="class")
    enabled: bool = True
    targets: list[str] = Field(default_factory=list)
    pool: Pool = "prefork"
    pool_size: int = Field(default=1, ge=1, le=256)
    #: Strict order through this item, even across failures (IRIS PoolSize=1 semantics).
    fifo: bool = False
    #: HL7 path (e.g. ``PID-3.1``) whose value orders messages: one key's messages are handled
    #: in order, different keys in parallel over ``partitions`` sub-queues.
    ordering_key: str | None = None
    partitions: int = Field(default=1, ge=1, le=64)
    #: Most messages allowed waiting in this item's queue; senders slow down (or refuse) beyond.
    max_queue_depth: int | None = Field(default=None, ge=1)
    #: Default priority (0-9, 9 most urgent) of the messages this item sends.
    priority: int | None = Field(default=None, ge=0, le=9)
    hooks: list[str] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict)
    category: str | None = None
    comment: str | None = None
    #: Where the item was defined: kept for error messages, never written out.
    line: int | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _checked_name("item", value)


class Production(BaseModel):
    """A whole production: items, production-wide hooks and where it was loaded from."""

    model_config = ConfigDict(extra="forbid")

    name: str
    items: list[Item] = Field(default_factory=list)
    hooks: list[str] = Field(default_factory=list)
    description: str | None = None
    #: The file it came from, for error messages.
    source: str | None = Field(default=None, exclude=True)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return _checked_name("production", value)

    def item(self, name: str) -> Item:
        """The item called ``name``; ``ConfigError`` naming the known items otherwise."""
        for item in self.items:
            if item.name == name:
                return item
        known = ", ".join(i.name for i in self.items) or "none"
        raise ConfigError(f"production {self.name!r} has no item {name!r} (items: {known})")

    def host_class(self, name: str) -> type[Host]:
        """The host class of item ``name``."""
        from hie.hosts.registry import resolve_host_class

        return resolve_host_class(self.item(name).class_name)

    def resolve(self, path: str | Path) -> Path:
        """``path`` as written in the production: relative paths start at the file's folder."""
        candidate = Path(path).expanduser()
        if candidate.is_absolute() or self.source is None:
            return candidate
        return Path(self.source).resolve().parent / candidate

    def edges(self) -> list[tuple[str, str]]:
        """Every (item, target) pair of the graph, in definition order."""
        return [(item.name, target) for item in self.items for target in item.targets]

    def check(self, lines: dict[tuple[str, ...], int] | None = None) -> None:
        """Resolve classes, validate settings and targets; raise one ``ProductionError`` for all."""
        problems = collect_problems(self, lines or {})
        if problems:
            raise ProductionError(problems)


def collect_problems(
    production: Production,
    lines: dict[tuple[str, ...], int],
    *,
    indices: list[int] | None = None,
    names: set[str] | None = None,
    check_only_shape: bool = False,
) -> list[Problem]:
    """Every problem of ``production``: duplicates, unknown classes, targets and bad settings.

    ``indices`` are the items' positions in the file (when some items were left out because they
    did not validate) and ``names`` every item name in the file, so lines and targets stay right.
    """
    from hie.hosts.registry import resolve_host_class

    source = production.source or "<production>"
    problems: list[Problem] = []
    seen: dict[str, int | None] = {}
    names = names if names is not None else {item.name for item in production.items}
    positions = indices if indices is not None else list(range(len(production.items)))
    for index, item in zip(positions, production.items, strict=True):
        where = item.line
        if item.name in seen:
            problems.append(
                Problem(
                    source,
                    where,
                    item.name,
                    "duplicate item name",
                    f"first defined at line {seen[item.name]}; item names must be unique",
                )
            )
        seen.setdefault(item.name, where)
        try:
            host_class = resolve_host_class(item.class_name)
        except ConfigError as exc:
            line = lines.get(("items", str(index), "class"), where)
            problems.append(
                Problem(
                    source,
                    line,
                    item.name,
                    str(exc),
                    "use a built-in host name or a dotted path to a Host class",
                )
            )
            host_class = None
        for target in item.targets:
            if target not in names:
                line = lines.get(("items", str(index), "targets"), where)
                problems.append(
                    Problem(
                        source,
                        line,
                        item.name,
                        f"unknown target {target!r}",
                        f"known items: {', '.join(sorted(names))}",
                    )
                )
        if host_class is not None:
            found = _settings_problems(source, index, item, host_class, lines)
            if not found and not check_only_shape:
                found = [
                    Problem(source, item.line, item.name, message)
                    for message in host_class.check_item(item, production)
                ]
            problems.extend(found)
        problems.extend(_flow_problems(source, item))
        problems.extend(_hook_problems(source, item.hooks, lines, ("items", str(index)), item))
    problems.extend(_hook_problems(source, production.hooks, lines, (), None))
    return problems


def _hook_problems(
    source: str,
    paths: list[str],
    lines: dict[tuple[str, ...], int],
    where: tuple[str, ...],
    item: Item | None,
) -> list[Problem]:
    """Hook paths (the production's, or one item's) that do not name a ``MessageHook`` class."""
    out = []
    for position, path in enumerate(paths):
        try:
            hook_class(path)
        except ConfigError as exc:
            line = lines.get((*where, "hooks", str(position)), item.line if item else None)
            out.append(
                Problem(
                    source,
                    line,
                    item.name if item else None,
                    str(exc),
                    "use package.module:Class, a MessageHook subclass importable here",
                )
            )
    return out


def _settings_problems(
    source: str, index: int, item: Item, host_class: type[Host], lines: dict[tuple[str, ...], int]
) -> list[Problem]:
    try:
        host_class.Settings.model_validate(item.settings)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            line = lines.get(("items", str(index), "settings", str(err["loc"][0])), item.line)
            out.append(
                Problem(
                    source,
                    line,
                    item.name,
                    f"setting {key!r}: {err['msg']}",
                    f"see {host_class.__name__}.Settings for the allowed settings",
                )
            )
        return out
    return []


def _flow_problems(source: str, item: Item) -> list[Problem]:
    """Ordering settings that contradict each other."""
    out = []
    if item.fifo and item.pool_size > 1:
        out.append(
            Problem(
                source,
                item.line,
                item.name,
                f"fifo items handle one message at a time, but pool_size is {item.pool_size}",
                "set pool_size: 1, or use ordering_key with partitions for ordered parallelism",
            )
        )
    if item.partitions > 1 and not item.ordering_key:
        out.append(
            Problem(
                source,
                item.line,
                item.name,
                "partitions need an ordering_key",
                "for example ordering_key: PID-3.1",
            )
        )
    if item.ordering_key:
        from hie.hl7.path import parse_path

        try:
            parse_path(item.ordering_key)
        except ValueError as exc:
            out.append(Problem(source, item.line, item.name, f"ordering_key: {exc}"))
    return out
