"""The ``manage.py`` / ``hie`` commands (the README's "Commands" table lists them).

Exit status: 0 ok, 1 a failure the output explains, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from hie.errors import ConfigError, HIEError, ProductionError
from hie.settings import Settings, get_settings, make_home_private
from hie.supervisor.rundir import RunDir

if TYPE_CHECKING:
    from hie.tasks.lease import ConsumerLease

log = logging.getLogger("hie")


def _production(path: str) -> Any:
    from hie.config.loader import load_production

    return load_production(path)


def cmd_validate(args: argparse.Namespace, settings: Settings) -> int:
    """Load and check a production; print its items and graph."""
    migration = None
    try:
        if Path(args.file).suffix.lower() in {".cls", ".xml"}:
            # IRIS files load without their unmapped items; the report explains each one.
            from hie.iris.production import read_iris_production

            iris = read_iris_production(args.file, args.mapping)
            production, migration = iris.production, iris.report()
        else:
            production = _production(args.file)
    except ProductionError as exc:
        if args.json:
            print(
                json.dumps({"ok": False, "problems": [p.__dict__ for p in exc.problems]}, indent=2)
            )
        else:
            print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
            for problem in exc.problems:
                print(f"  {problem}", file=sys.stderr)
        return 1
    items = []
    for item in production.items:
        host_class = production.host_class(item.name)
        items.append(
            {
                "name": item.name,
                "class": item.class_name,
                "kind": host_class.kind,
                "enabled": item.enabled,
                "pool": item.pool,
                "pool_size": item.pool_size,
                "targets": item.targets,
            }
        )
    if args.json:
        out = {"ok": True, "production": production.name, "items": items}
        if migration is not None:
            out["migration"] = migration
        print(json.dumps(out, indent=2))
        return 0
    print(f"production {production.name}: {len(items)} item(s), valid")
    for it in items:
        state = "" if it["enabled"] else " (disabled)"
        workers = "" if it["kind"] == "service" else f" [{it['pool']} x{it['pool_size']}]"
        print(f"  {it['kind']:<9} {it['name']}: {it['class']}{workers}{state}")
    print("graph:")
    for source, target in production.edges():
        print(f"  {source} -> {target}")
    if migration is not None:
        from hie.commands.iris import format_report

        print("migration report:")
        print(format_report(migration))
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    """Run the Celery worker(s) of one item with its pool and pool_size."""
    from hie.broker import ensure_broker

    production = _production(args.file)
    item = production.item(args.item)
    if production.host_class(item.name).kind == "service":
        print(
            f"item {item.name!r} is a business service; it runs in `gateway`, not `worker`",
            file=sys.stderr,
        )
        return 1
    ensure_broker(settings)
    if item.partitions > 1 and args.partition is None:
        return _run_partitions(args, settings, production)
    return _run_worker(args, settings, production, item)


def _run_partitions(args: argparse.Namespace, settings: Settings, production: Any) -> int:
    """One worker process per sub-queue of an item ordered by key, run as one unit.

    The manager watches this process: it says it is ready (its own ready file) once every
    sub-queue's worker is, and it exits as soon as one of them does (stopping the others), so
    the manager restarts them together instead of leaving a sub-queue without its consumer.
    """
    import signal
    import subprocess
    import time

    from hie.supervisor.rundir import ready_file

    item = production.item(args.item)
    ready_dir = RunDir.of(settings, production.name).item(item.name)
    base = [sys.executable, "-m", "hie.cli", "worker", args.file, args.item]
    children = [subprocess.Popen([*base, "--partition", str(k)]) for k in range(item.partitions)]
    mine = ready_file(ready_dir, os.getpid())
    stopping: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        stopping.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    failed: int | None = None
    try:
        announced = False
        while not stopping:
            exited = [c for c in children if c.poll() is not None]
            if exited:
                failed = exited[0].returncode
                log.error(
                    "%s: the worker of sub-queue %d exited with %s; stopping the others",
                    item.name, children.index(exited[0]), exited[0].returncode,
                )  # fmt: skip
                forward(signal.SIGTERM, None)
                break
            if not announced and all(ready_file(ready_dir, c.pid).exists() for c in children):
                ready_dir.mkdir(parents=True, exist_ok=True)
                pids = [c.pid for c in children]
                mine.write_text(json.dumps({"pid": os.getpid(), "partitions": pids}))
                announced = True
            time.sleep(0.2)
        codes = [child.wait() for child in children]
    finally:
        mine.unlink(missing_ok=True)
    if failed is not None:
        return abs(failed) or 1  # a sub-queue lost its worker: the manager restarts the unit
    stopped = (0, -signal.SIGTERM, -signal.SIGINT)
    return 0 if all(code in stopped for code in codes) else 1


def _run_worker(args: argparse.Namespace, settings: Settings, production: Any, item: Any) -> int:
    from celery import signals

    from hie.hosts.service import BusinessService
    from hie.startup import open_dispatcher, open_store
    from hie.tasks.dispatcher import queue_name
    from hie.tasks.ordering import partition_queue, resume_parked
    from hie.tasks.register import install_lifecycle, register_production

    if settings.worker_nice:
        os.nice(settings.worker_nice)  # the gateway's ACKs first (Settings.worker_nice)
    # A service's first commit is its custody of the message; a hop's records can be replayed.
    durable = issubclass(production.host_class(item.name), BusinessService)
    store = open_store(settings, durable=durable, production=production.name)
    dispatcher = open_dispatcher(production, settings, store)
    app = dispatcher.app
    runtimes = register_production(app, production, dispatcher, only=[item.name])
    queue = queue_name(production.name, item.name)
    pool, size = args.pool or item.pool, args.concurrency or item.pool_size
    if item.fifo or args.partition is not None:
        # One message at a time: strict order through this item (or this sub-queue).
        pool, size = "solo", 1
    node = f"{item.name}@{production.name}.%h"
    if args.partition is not None:
        partition, hold, item_queue = args.partition, runtimes[item.name].hold, queue
        node = f"{item.name}.p{partition}@{production.name}.%h"

        def resume_held(**_: Any) -> None:
            # Keys parked before a restart: pick them up again (their messages are in Redis).
            if hold is not None:
                resume_parked(app, hold, item_queue, item.partitions, partition)

        signals.worker_ready.connect(resume_held, weak=False)
        queue = partition_queue(queue, partition)
    if item.fifo or args.partition is not None:
        from hie.tasks.lease import LeaseHeld

        lease = _consumer_lease(app, queue)
        if lease is None:
            log.warning(
                "no Redis for the consumer lease: one consumer of %s is not enforced", queue
            )
        else:
            try:
                lease.acquire()
            except LeaseHeld as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            signals.worker_shutdown.connect(lambda **_: lease.release(), weak=False)
    ready_dir = RunDir.of(settings, production.name).item(item.name)
    install_lifecycle(runtimes, pool=pool, run_dir=ready_dir)
    argv = [
        "worker",
        "-Q",
        queue,
        "-P",
        pool,
        "-c",
        str(size),
        "-n",
        node,
        "--loglevel",
        settings.log_level,
        "--without-gossip",
        "--without-mingle",
    ]
    if settings.task_events:
        argv.append("-E")  # else task events start when Flower asks the workers for them
    app.worker_main(argv)
    return 0


def _consumer_lease(app: Any, queue: str) -> ConsumerLease | None:
    """The lease that keeps ``queue`` (ordered) to one consumer; None without a Redis for it."""
    from hie.tasks.lease import ConsumerLease
    from hie.tasks.register import state_url

    url = state_url(app)
    return ConsumerLease(url, queue) if url else None


def cmd_gateway(args: argparse.Namespace, settings: Settings) -> int:
    """Run the inbound items (MLLP listeners, file pollers) until SIGINT/SIGTERM."""
    from hie.broker import ensure_broker
    from mllp_gateway.app import run_gateway

    production = _production(args.file)
    ensure_broker(settings)
    run_gateway(production, settings, args.process)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Set up and run the demo production (what `make demo` runs)."""
    from hie.demo import run_demo

    return run_demo(settings, args)


#: Modules that add commands of their own: each has ``add_commands(subparsers)``.
COMMAND_MODULES: list[str] = [
    "hie.commands.iris",
    "hie.commands.send",
    "hie.commands.manage",
    "hie.commands.web",
    "hie.commands.messages",
    "hie.commands.db",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(prog="hie", description="HIE: run and manage productions.")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING ...")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="load and check a production; print its items and graph")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.add_argument("--mapping", metavar="FILE", help="IRIS class/setting mapping (YAML)")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("worker", help="run the Celery worker(s) of one item")
    p.add_argument("file")
    p.add_argument("item")
    p.add_argument(
        "--pool", choices=["prefork", "threads", "solo"], help="override the item's pool"
    )
    p.add_argument("--concurrency", type=int, help="override the item's pool_size")
    p.add_argument(
        "--partition", type=int, help="run only this sub-queue of an item ordered by key"
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("gateway", help="run the inbound services of a production")
    p.add_argument("file")
    p.add_argument(
        "--process",
        type=int,
        default=0,
        metavar="K",
        help="run gateway process K of the items with `processes` > K (the manager does this)",
    )
    p.set_defaults(func=cmd_gateway)

    p = sub.add_parser("demo", help="set up and run the demo production")
    p.add_argument("--port", type=int, default=2575, help="MLLP port of the demo's inbound feed")
    p.add_argument("--sink-port", type=int, default=6661, help="port of the bundled MLLP sink")
    p.add_argument("--metrics-port", type=int, default=9464, help="/metrics; 0 turns it off")
    p.add_argument("--flower-port", type=int, default=5555, help="printed Flower address")
    p.set_defaults(func=cmd_demo)

    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``manage.py`` and the ``hie`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = get_settings()
    except ValidationError as exc:
        # A bad HIE_* variable: say which and why, one line each, no traceback.
        for error in exc.errors():
            name = "HIE_" + "_".join(str(part) for part in error["loc"]).upper()
            reason = str(error["msg"]).removeprefix("Value error, ")
            print(f"error: {reason if name in reason else f'{name}: {reason}'}", file=sys.stderr)
        return 1
    logging.basicConfig(
        level=(args.log_level or settings.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        make_home_private(settings.home)
    except OSError as exc:
        print(f"error: cannot create HIE_HOME {settings.home}: {exc}", file=sys.stderr)
        return 1
    try:
        return int(args.func(args, settings))
    except ProductionError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (ConfigError, HIEError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # one line for the user; the traceback at --log-level DEBUG
        log.debug("%s failed", args.command, exc_info=True)
        print(
            f"error: {type(exc).__name__}: {exc} (run with --log-level DEBUG for the traceback)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
