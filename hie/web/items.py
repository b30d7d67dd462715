"""The item overview: what the viewer can read for itself about each item of the production.

Queue depth (the messages waiting for each item) and the last hour's counts and rates come from
the store, and the state from the manager when one answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hie.production import Production
    from hie.store import MessageHeader, MessageStore

WINDOW = timedelta(hours=1)


@dataclass
class ItemView:
    """One row of the overview."""

    name: str
    kind: str
    class_name: str
    enabled: bool
    queue_depth: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    last_error: MessageHeader | None = None
    state: str | None = None

    @property
    def per_minute(self) -> float:
        """Messages this item received in the last hour, per minute."""
        return sum(self.counts.values()) / (WINDOW.total_seconds() / 60)


def overview(
    production: Production,
    store: MessageStore,
    states: dict[str, Any] | None = None,
) -> list[ItemView]:
    """Every item with its queue depth (messages waiting for it), last-hour counts, last error
    and (if known) state."""
    names = [i.name for i in production.items]
    depths = store.waiting(names)
    counts = store.recent_counts(datetime.now(UTC) - WINDOW)
    views = []
    for item in production.items:
        kind = production.host_class(item.name).kind
        errors = store.find(target=item.name, status="error", limit=1)
        state = (states or {}).get(item.name)
        views.append(
            ItemView(
                name=item.name,
                kind=kind,
                class_name=item.class_name,
                enabled=item.enabled,
                queue_depth=depths.get(item.name) if kind != "service" else None,
                counts=counts.get(item.name, {}),
                last_error=errors[0] if errors else None,
                state=str(state.get("state")) if isinstance(state, dict) else state,
            )
        )
    return views
