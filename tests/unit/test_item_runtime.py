"""When a worker looks for more waiting tasks to batch with the one it was handed."""

from __future__ import annotations

import time
from typing import Any, cast

from hie.tasks.base import IDLE_GAP, ItemRuntime


def _runtime() -> ItemRuntime:
    # Only the task bookkeeping is exercised: no host, production or broker is needed.
    nothing = cast(Any, None)
    return ItemRuntime(nothing, nothing, nothing, nothing, nothing)


def test_a_fresh_or_busy_worker_looks_for_company_an_idle_one_does_not() -> None:
    runtime = _runtime()
    # A worker that has run nothing yet looks (tasks may have queued while it started)
    assert runtime.wants_company()
    # A look that found nothing, then a task right after the last one: busy, it looks again
    runtime.task_done(found_company=False)
    assert runtime.wants_company()
    # Idle for longer than IDLE_GAP after finding nothing: its queue was empty a moment ago
    time.sleep(IDLE_GAP * 2)
    assert not runtime.wants_company()
    # A task that did not look (a retry) leaves what the last look found as it was
    runtime.task_done(found_company=None)
    time.sleep(IDLE_GAP * 2)
    assert not runtime.wants_company()
    # Once a look found company, the next task looks whatever the gap
    runtime.task_done(found_company=True)
    time.sleep(IDLE_GAP * 2)
    assert runtime.wants_company()
