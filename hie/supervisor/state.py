"""Run-time overrides of items' ``enabled``: what ``enable`` and ``disable`` changed.

They are kept in the run directory's ``state.json`` so that they outlive a restart of the manager,
and the gateway applies them when it starts.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hie.supervisor.rundir import RunDir

if TYPE_CHECKING:
    from hie.production import Production
    from hie.settings import Settings


def load_state(settings: Settings, production: str) -> dict[str, bool]:
    """Run-time enable/disable overrides: item name -> enabled."""
    path = RunDir.of(settings, production).state_file
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): bool(v) for k, v in data.get("enabled", {}).items()}


def save_state(settings: Settings, production: str, enabled: dict[str, bool]) -> None:
    """Persist the overrides atomically (a crash mid-write must not lose every override)."""
    run = RunDir.of(settings, production)
    run.path.mkdir(parents=True, exist_ok=True)
    tmp = run.state_file.with_name("state.json.tmp")
    tmp.write_text(json.dumps({"enabled": enabled}, indent=2, sort_keys=True))
    tmp.replace(run.state_file)


def effective_production(production: Production, overrides: dict[str, bool]) -> Production:
    """``production`` with the run-time overrides applied to each item's ``enabled``."""
    items = [
        i.model_copy(update={"enabled": overrides[i.name]}) if i.name in overrides else i
        for i in production.items
    ]
    return production.model_copy(update={"items": items})
