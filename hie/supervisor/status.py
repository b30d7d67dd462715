"""What ``status`` shows: per item its state and pids (from the manager), and from the store its
queue depth (the messages waiting for it), received / processed / failed / retried (counters
that never go down) and last error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    from hie.production import Production
    from hie.store import MessageStore


@dataclass
class ItemCounts:
    """What the store's counters say about one item (they never go down) and its last error."""

    received: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None


def item_counts(store: MessageStore, production: Production) -> dict[str, ItemCounts]:
    """Per item: messages received (a service: that it sent in), completed, failed, retried."""
    names = [i.name for i in production.items]
    services = {i.name for i in production.items if production.host_class(i.name).kind == "service"}
    counters = store.counters(names)
    errors = store.last_errors(names)
    out = {}
    for name in names:
        c = counters[name]
        out[name] = ItemCounts(
            received=c.received + (c.sent if name in services else 0),
            processed=c.completed,
            failed=c.failed,
            retried=c.retried,
            last_error=errors[name],
        )
    return out


@dataclass
class ItemStatus:
    """One row of ``status``."""

    name: str
    kind: str
    enabled: bool
    state: str  # starting | running | stopped | disabled | failed | restarting
    pid: int | None = None
    pool_pids: list[int] = field(default_factory=list)
    pool: str | None = None
    pool_size: int | None = None
    restarts: int = 0
    queue_depth: int = 0
    received: int = 0
    processed: int = 0
    failed: int = 0
    retried: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def full_status(
    production: Production,
    store: MessageStore,
    running: dict[str, Any] | None,
    overrides: dict[str, bool],
) -> list[ItemStatus]:
    """Join the manager's snapshot (None: not running) with what waits and what was done.

    Queue depth is the messages waiting for each item in the store (a task on the broker may
    carry several).
    """
    live = {i["name"]: i for i in (running or {}).get("items", [])}
    workers = [i.name for i in production.items if production.host_class(i.name).kind != "service"]
    depths = store.waiting(workers)
    counts = item_counts(store, production)
    rows = []
    for item in production.items:
        kind = production.host_class(item.name).kind
        enabled = overrides.get(item.name, item.enabled)
        info = live.get(item.name, {})
        row = ItemStatus(
            name=item.name,
            kind=kind,
            enabled=info.get("enabled", enabled),
            state=info.get("state", "stopped" if enabled else "disabled"),
            pid=info.get("pid"),
            pool_pids=info.get("pool_pids", []),
            pool=None if kind == "service" else item.pool,
            pool_size=None if kind == "service" else item.pool_size,
            restarts=info.get("restarts", 0),
            queue_depth=depths.get(item.name, 0),
        )
        c = counts.get(item.name)
        if c is not None:
            row.received, row.processed, row.failed = c.received, c.processed, c.failed
            row.retried, row.last_error = c.retried, c.last_error
        rows.append(row)
    return rows


def format_table(rows: list[ItemStatus], rates: dict[str, float] | None = None) -> str:
    """A fixed-width table of ``rows``; ``rates``: processed per second per item."""
    head = f"{'item':<24} {'kind':<9} {'state':<10} {'pids':<22} {'queued':>7} {'done':>7} "
    head += f"{'failed':>6} {'/s':>6}  last error"
    lines = [head]
    for r in rows:
        pids = ",".join(str(p) for p in ([r.pid] if r.pid else []) + r.pool_pids) or "-"
        rate = f"{rates.get(r.name, 0.0):6.1f}" if rates is not None else f"{'':>6}"
        error = (r.last_error or "").splitlines()[0][:40] if r.last_error else ""
        lines.append(
            f"{r.name[:24]:<24} {r.kind:<9} {r.state:<10} {pids[:22]:<22} {r.queue_depth:>7} "
            f"{r.processed:>7} {r.failed:>6} {rate}  {error}"
        )
    return "\n".join(lines)
