"""One Celery task per business process / operation, bound to the item's own queue.

A business process also gets ``.on_response`` and ``.on_complete`` tasks on the same queue, which
carry its asynchronous replies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import signals

from hie.hooks import hooks_for
from hie.supervisor.rundir import ready_file
from hie.tasks.base import HostTask, ItemRuntime
from hie.tasks.dispatcher import Dispatcher, item_queue, queue_name

if TYPE_CHECKING:
    from celery import Celery

    from hie.production import Item, Production


def task_items(production: Production) -> list[Item]:
    """The items that run as Celery tasks (processes and operations, enabled or not)."""
    return [i for i in production.items if production.host_class(i.name).kind != "service"]


def configure_queues(app: Celery, production: Production) -> None:
    """Declare every item queue alike in this process, with each task routed to its queue."""
    queues = []
    for item in task_items(production):
        queues.append(item_queue(production.name, item.name))
        queues.extend(
            item_queue(production.name, item.name, partition=k)
            for k in range(item.partitions)
            if item.partitions > 1
        )
    app.conf.task_queues = queues
    app.conf.task_default_queue = queues[0].name if queues else "celery"
    app.amqp.queues  # noqa: B018 - materialise the queue map with the new definitions


def register_production(
    app: Celery,
    production: Production,
    dispatcher: Dispatcher,
    *,
    only: list[str] | None = None,
) -> dict[str, ItemRuntime]:
    """Register the tasks of ``production``'s items (or only those named); return runtimes."""
    runtimes: dict[str, ItemRuntime] = {}
    for item in task_items(production):
        if only is not None and item.name not in only:
            continue
        runtime = ItemRuntime(
            production=production,
            item=item,
            host_class=production.host_class(item.name),
            hooks=hooks_for(production, item),
            dispatcher=dispatcher,
            state_url=state_url(app),
        )
        _register_item(app, runtime)
        runtimes[item.name] = runtime
    return runtimes


def state_url(app: Celery) -> str | None:
    """A Redis URL for engine state (per-key holds): the result backend, else a Redis broker."""
    for url in (app.conf.result_backend, app.conf.broker_url):
        if isinstance(url, str) and url.startswith(("redis://", "rediss://")):
            return url
    return None


def _register_item(app: Celery, runtime: ItemRuntime) -> None:
    name = queue_name(runtime.production.name, runtime.item.name)
    options: dict[str, Any] = {"bind": True, "base": HostTask, "queue": name, "runtime": runtime}

    @app.task(name=name, **options)  # type: ignore[untyped-decorator]
    def run_item(
        self: HostTask, batch: list[dict[str, Any]], first_attempt: float | None = None
    ) -> Any:
        return self.handle(batch, first_attempt)

    if runtime.item.partitions > 1:

        @app.task(name=f"{name}.resume", **options)  # type: ignore[untyped-decorator]
        def resume(self: HostTask, key: str) -> int:
            return self.handle_resume(key)

    if runtime.host_class.kind == "process":

        @app.task(name=f"{name}.on_response", **options)  # type: ignore[untyped-decorator]
        def on_response(
            self: HostTask,
            reply: Any,
            request: dict[str, Any],
            call: dict[str, Any],
            deadline: float | None = None,
        ) -> Any:
            return self.handle_response(reply, request, call, deadline)

        @app.task(name=f"{name}.on_complete", **options)  # type: ignore[untyped-decorator]
        def on_complete(self: HostTask, results: list[Any], request: dict[str, Any]) -> Any:
            return self.handle_complete(results, request)


def install_lifecycle(runtimes: dict[str, ItemRuntime], *, pool: str, run_dir: Path | None) -> None:
    """Start hosts in the processes that run tasks, stop them at exit, and announce readiness.

    Prefork runs tasks in forked children (``worker_process_init``); threads and solo run them in
    the worker process itself, where hosts start once the worker is ready (``worker_ready``).
    """

    def start_hosts(**_: Any) -> None:
        for runtime in runtimes.values():
            runtime.host  # noqa: B018 - on_init + on_start

    def stop_hosts(**_: Any) -> None:
        for runtime in runtimes.values():
            runtime.shutdown()

    if pool == "prefork":
        signals.worker_process_init.connect(start_hosts, weak=False)
        signals.worker_process_shutdown.connect(stop_hosts, weak=False)
    else:
        signals.worker_ready.connect(start_hosts, weak=False)
        signals.worker_shutdown.connect(stop_hosts, weak=False)

    if run_dir is not None:

        def announce(**_: Any) -> None:
            run_dir.mkdir(parents=True, exist_ok=True)
            info = {"pid": os.getpid(), "items": sorted(runtimes), "pool": pool}
            ready_file(run_dir, os.getpid()).write_text(json.dumps(info))

        signals.worker_ready.connect(announce, weak=False)
