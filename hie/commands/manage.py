"""Commands that run and control a production: start, stop, status, enable, disable, restart,
update, flower.

``start`` runs the supervisor (``hie.supervisor``); every other command talks to it over its control
socket, so they work from another terminal. Without FILE they pick the only production running
under ``HIE_HOME``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hie.errors import ConfigError, ManagerNotRunningError
from hie.settings import Settings
from hie.supervisor.rundir import RunDir, log_dir, pid_alive
from hie.supervisor.state import load_state


def _load(path: str, *, check_files: bool = True) -> Any:
    from hie.config.loader import load_production

    return load_production(path, check_files=check_files)


def _target(
    args: argparse.Namespace, settings: Settings, *, check_files: bool = True
) -> tuple[str, Any]:
    """(production name, Production or None) from FILE or the only running production."""
    from hie.supervisor.control import running_productions

    if getattr(args, "file", None):
        production = _load(args.file, check_files=check_files)
        return production.name, production
    running = running_productions(settings)
    if len(running) == 1:
        return running[0], None
    if not running:
        raise ConfigError(f"no production is running under {settings.home}; name its FILE")
    raise ConfigError(f"several productions are running ({', '.join(running)}); name its FILE")


def _call(settings: Settings, name: str, request: dict[str, Any]) -> dict[str, Any]:
    from hie.supervisor.control import call

    answer = call(RunDir.of(settings, name).socket, request)
    if not answer.get("ok"):
        raise ConfigError(str(answer.get("error")))
    return answer


# -- start ---------------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    """Run the whole production, supervised: in the foreground, or ``--detach``-ed."""
    from hie.broker import ensure_broker

    production = _load(args.file)
    pid = RunDir.of(settings, production.name).manager_pid()
    if pid is not None:
        print(f"production {production.name} is already running (manager pid {pid})")
        return 1
    ensure_broker(settings)
    if args.detach:
        return _detach(args, settings, production.name)
    from hie.supervisor.supervisor import Supervisor

    supervisor = Supervisor(
        production,
        Path(args.file),
        settings,
        drain_timeout=args.drain_timeout,
        gateway_env=_gateway_env(args),
    )
    supervisor.install_signal_handlers()
    supervisor.run(on_tick=None if args.quiet else LiveTable(supervisor))
    return 0


def _gateway_env(args: argparse.Namespace) -> dict[str, str]:
    if args.metrics_port is None:
        return {}
    return {"HIE_METRICS_PORT": str(args.metrics_port), "HIE_METRICS_HOST": args.metrics_host}


def _detach(args: argparse.Namespace, settings: Settings, name: str) -> int:
    """Start the manager in its own session with its output in a log; wait until it runs."""
    logs = log_dir(settings, name)
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "hie.cli", "start", args.file, "--quiet"]
    argv += ["--drain-timeout", str(args.drain_timeout)]
    if args.metrics_port is not None:
        argv += ["--metrics-port", str(args.metrics_port), "--metrics-host", args.metrics_host]
    with (logs / "manager.log").open("ab") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            print(f"the manager exited with {proc.returncode}; see {logs / 'manager.log'}")
            return 1
        try:
            status = _call(settings, name, {"command": "status"})
        except (ManagerNotRunningError, OSError):
            time.sleep(0.2)
            continue
        states = [i["state"] for i in status["items"]]
        if "failed" in states:
            print(f"an item failed to start; see {logs}")
            return 1
        if all(s in ("running", "disabled") for s in states):
            if getattr(args, "json", False):
                items = {i["name"]: i["state"] for i in status["items"]}
                record = {"production": name, "manager_pid": proc.pid, "logs": str(logs)}
                print(json.dumps(record | {"items": items}))
            else:
                print(f"production {name} running (manager pid {proc.pid}); logs in {logs}")
            return 0
        time.sleep(0.2)
    print(f"production {name} did not become ready within {args.wait:.0f}s; see {logs}")
    return 1


class LiveTable:
    """The foreground status table: redrawn on a terminal, printed on change otherwise."""

    def __init__(self, supervisor: Any, every: float = 2.0) -> None:
        self.supervisor = supervisor
        self.every = every
        self.last = 0.0
        self.previous: dict[str, tuple[float, int]] = {}
        self.shown = ""
        self.store: Any = None
        self.tty = sys.stdout.isatty()

    def __call__(self, events: list[str]) -> None:
        for line in events:
            print(f"[{self.supervisor.name}] {line}", flush=True)
        now = time.monotonic()
        if now - self.last < self.every:
            return
        self.last = now
        from hie.supervisor.status import format_table, full_status

        try:
            if self.store is None:
                from hie.startup import open_store

                self.store = open_store(
                    self.supervisor.settings, production=self.supervisor.production.name
                )
            rows = full_status(
                self.supervisor.production,
                self.store,
                self.supervisor.snapshot(),
                self.supervisor.overrides,
            )
        except Exception as exc:  # the broker or store is down: say so, keep supervising
            print(f"[{self.supervisor.name}] status unavailable: {exc}", flush=True)
            return
        rates = {}
        for r in rows:
            t, n = self.previous.get(r.name, (now, r.processed))
            rates[r.name] = (r.processed - n) / (now - t) if now > t else 0.0
            self.previous[r.name] = (now, r.processed)
        if self.tty:
            print("\x1b[H\x1b[2J" + f"production {self.supervisor.name}  (Ctrl-C stops)")
            print(format_table(rows, rates), flush=True)
            return
        states = " ".join(f"{r.name}={r.state}" for r in rows)
        if states != self.shown:
            print(f"[{self.supervisor.name}] {states}", flush=True)
            self.shown = states


# -- commands that talk to a running manager ------------------------------------------------------
def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    """Graceful stop: the gateway stops accepting, queues drain, workers finish, then exit."""
    name, _ = _target(args, settings, check_files=False)  # a broken rule file must not block it
    request: dict[str, Any] = {"command": "stop"}
    if args.drain_timeout is not None:
        request["drain_timeout"] = args.drain_timeout
    answer = _call(settings, name, request)
    pid = int(answer["manager_pid"])
    started = time.monotonic()
    while pid_alive(pid) and time.monotonic() - started < args.wait:
        time.sleep(0.1)
    took = time.monotonic() - started
    stopped = not pid_alive(pid)
    if args.json:
        record = {"production": name, "manager_pid": pid, "stopped": stopped}
        print(json.dumps(record | {"seconds": round(took, 1)}))
    elif stopped:
        print(f"production {name} stopped in {took:.1f}s")
    else:
        print(f"production {name} is still stopping (manager pid {pid})")
    return 0 if stopped else 1


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Per item: enabled, state, pids, queue depth, processed, failed, last error."""
    from hie.startup import open_store
    from hie.supervisor.status import format_table, full_status

    # Status reads the production's items only: a rule file being edited must not stop it.
    name, production = _target(args, settings, check_files=False)
    try:
        running: dict[str, Any] | None = _call(settings, name, {"command": "status"})
    except ManagerNotRunningError:
        running = None
    if production is None:
        assert running is not None
        production = _load(running["file"], check_files=False)
    store = open_store(settings, upgrade=False, production=name)
    try:
        rows = full_status(production, store, running, load_state(settings, name))
    finally:
        store.dispose()
    if args.json:
        out = {
            "production": name,
            "running": running is not None,
            "manager_pid": running and running.get("manager_pid"),
            "items": [r.as_dict() for r in rows],
            "processes": (running or {}).get("processes", []),
        }
        print(json.dumps(out, indent=2))
        return 0
    state = f"running (manager pid {running['manager_pid']})" if running else "not running"
    print(f"production {name}: {state}")
    print(format_table(rows))
    return 0


def _control(command: str) -> Any:
    def run(args: argparse.Namespace, settings: Settings) -> int:
        name, _ = _target(args, settings, check_files=False)
        answer = _call(settings, name, {"command": command, "item": args.item})
        if args.json:
            item = next((i for i in answer.get("items", []) if i["name"] == args.item), None)
            print(json.dumps({"production": name, "command": command, "item": item}))
        else:
            done = {"enable": "enabled", "disable": "disabled", "restart": "restarted"}[command]
            print(f"{args.item}: {done}")
        return 0

    run.__doc__ = f"{command.capitalize()} one item of the running production."
    return run


def cmd_update(args: argparse.Namespace, settings: Settings) -> int:
    """Apply a changed production file, or changed rule, transform and lookup files it names,
    to the running production; with nothing changed nothing restarts."""
    production = _load(args.file)  # refuse a broken file (rules too) before touching anything
    answer = _call(
        settings, production.name, {"command": "update", "file": str(Path(args.file).resolve())}
    )
    return _print_changes(answer["changes"], args.json)


def cmd_reload(args: argparse.Namespace, settings: Settings) -> int:
    """Re-read the running production's files (its rules, transforms and lookup tables too) and
    restart what changed: ``update`` with the file the manager runs."""
    name, production = _target(args, settings)
    if production is None:
        path = RunDir.of(settings, name).production_file.read_text().strip()
    else:
        path = str(Path(args.file).resolve())
    production = _load(path)  # a broken rule file is refused here, with its file and line
    if args.item is not None:
        production.item(args.item)  # an unknown item fails with the items it could be
    answer = _call(settings, name, {"command": "update", "file": path})
    changes = answer["changes"]
    if args.item is not None and args.item not in changes["changed"] and not args.json:
        print(f"{args.item}: its definition and files are unchanged; it keeps running")
    return _print_changes(changes, args.json)


def _print_changes(changes: dict[str, list[str]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(changes, indent=2))
        return 0
    for what, names in changes.items():
        if names:
            print(f"{what}: {', '.join(names)}")
    if not any(changes.values()):
        print("nothing changed")
    return 0


# -- flower --------------------------------------------------------------------------------------
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def cmd_flower(args: argparse.Namespace, settings: Settings) -> int:
    """Run Flower against the production's broker (loopback unless ``--basic-auth``)."""
    production = _load(args.file)
    if args.basic_auth_file:
        # A secret file (compose's /run/secrets): the credentials stay out of argv and env files.
        args.basic_auth = Path(args.basic_auth_file).read_text(encoding="utf-8").strip()
    if args.address not in _LOOPBACK and not args.basic_auth:
        print(
            f"refusing to serve Flower on {args.address} without --basic-auth user:pass: it "
            "shows message ids and can revoke tasks",
            file=sys.stderr,
        )
        return 2
    # Secrets travel in the environment, not in argv (``ps`` shows argv to every local user):
    # Celery reads CELERY_BROKER_URL / CELERY_RESULT_BACKEND, Flower reads FLOWER_BASIC_AUTH.
    env = dict(os.environ, CELERY_BROKER_URL=settings.broker_url)
    if settings.result_backend:
        env["CELERY_RESULT_BACKEND"] = settings.result_backend
    if args.basic_auth:
        env["FLOWER_BASIC_AUTH"] = args.basic_auth
    # Without credentials Flower serves its UI on loopback but no /api/*: an API without
    # authentication answers any web page the operator visits (CORS *), tasks and revokes alike.
    env.pop("FLOWER_UNAUTHENTICATED_API", None)
    argv = [sys.executable, "-m", "celery", "flower", f"--port={args.port}"]
    argv += [f"--address={args.address}"]
    argv += [f"--url_prefix={args.url_prefix}"] if args.url_prefix else []
    print(
        f"Flower for production {production.name}: http://{args.address}:{args.port}/ "
        f"(tasks are named hie.{production.name}.<item>"
        + ("" if args.basic_auth else "; its API needs --basic-auth")
        + ")",
        flush=True,
    )
    # Become Flower: a signal to this process (Ctrl-C, SIGTERM, the manager) stops Flower itself.
    os.execve(sys.executable, argv, env)


def cmd_sink(args: argparse.Namespace, settings: Settings) -> int:
    """Run a small MLLP sink that writes each message to a file and answers AA."""
    from hie.sink import run_sink

    run_sink(Path(args.out), args.host, args.port)
    return 0


def add_commands(sub: Any) -> None:
    """Register the commands of this module."""
    p = sub.add_parser("start", help="run the whole production, supervised")
    p.add_argument("file")
    p.add_argument("--detach", action="store_true", help="run in the background (pid file, logs)")
    p.add_argument("--quiet", action="store_true", help="no live status table")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to drain at stop")
    p.add_argument("--wait", type=float, default=180.0, help="--detach: seconds to wait for ready")
    p.add_argument("--metrics-port", type=int, help="serve /metrics and /health/* on this port")
    p.add_argument("--metrics-host", default="127.0.0.1", help="address of the metrics endpoint")
    p.add_argument("--json", action="store_true", help="--detach: print the started state as JSON")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", help="graceful stop: stop accepting, drain, stop workers")
    p.add_argument("file", nargs="?")
    p.add_argument("--drain-timeout", type=float, help="seconds to let the queues drain")
    p.add_argument("--wait", type=float, default=300.0, help="seconds to wait for the stop")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="per item: state, pids, queue depth, processed, failed")
    p.add_argument("file", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    for command in ("enable", "disable", "restart"):
        p = sub.add_parser(command, help=f"{command} one item of the running production")
        p.add_argument("item")
        p.add_argument("file", nargs="?")
        p.add_argument("--json", action="store_true", help="print the item's new state as JSON")
        p.set_defaults(func=_control(command))

    p = sub.add_parser(
        "reload", help="pick up edited rule, transform and lookup files of the running production"
    )
    p.add_argument("item", nargs="?", help="the item you edited the files of (reported on)")
    p.add_argument("--file", help="the production file (default: the one the manager runs)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_reload)

    p = sub.add_parser("update", help="apply a changed production file to the running one")
    p.add_argument("file")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_update)

    p = sub.add_parser("flower", help="run Flower against the production's broker")
    p.add_argument("file")
    p.add_argument("--port", type=int, default=5555)
    p.add_argument("--address", default="127.0.0.1")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--basic-auth", metavar="USER:PASS", help="required off loopback")
    auth.add_argument("--basic-auth-file", metavar="FILE", help="USER:PASS read from FILE")
    p.add_argument("--url-prefix", help="when served behind a proxy under a path")
    p.set_defaults(func=cmd_flower)

    p = sub.add_parser("sink", help="an MLLP receiver that writes each message to a file, ACKs AA")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6661)
    p.add_argument("--out", default="var/sink", help="folder for the received messages")
    p.set_defaults(func=cmd_sink)
