"""A real production under test: its YAML file, its worker processes, a dispatcher and the store."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import yaml
from kombu import Connection

from hie.broker import answers
from hie.config.loader import load_production
from hie.messages import Envelope
from hie.production import Production
from hie.settings import Settings
from hie.startup import open_dispatcher, open_store
from hie.supervisor.rundir import RunDir
from hie.store import MessageStore
from hie.tasks.dispatcher import Dispatcher, queue_name
from tests.conftest import REPO


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Harness:
    """Owns one production under test and everything it starts."""

    settings: Settings
    tmp: Path
    name: str = field(default_factory=lambda: f"t{uuid.uuid4().hex[:10]}")
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    path: Path | None = None
    production: Production | None = None
    _dispatcher: Dispatcher | None = None
    _store: MessageStore | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HIE_BROKER_URL": self.settings.broker_url,
                "HIE_RESULT_BACKEND": self.settings.result_backend or "",
                "HIE_DATABASE_URL": self.settings.database_url,
                "HIE_HOME": str(self.settings.home),
                "PYTHONPATH": f"{REPO}{os.pathsep}{env.get('PYTHONPATH', '')}",
            }
        )
        return env

    def write(self, items: list[dict[str, Any]], **extra: Any) -> Production:
        """Write the production YAML and load it."""
        self.path = self.tmp / f"{self.name}.yaml"
        self.path.write_text(yaml.safe_dump({"name": self.name, **extra, "items": items}))
        self.production = load_production(self.path)
        return self.production

    @property
    def store(self) -> MessageStore:
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    @property
    def dispatcher(self) -> Dispatcher:
        if self._dispatcher is None:
            assert self.production is not None
            self._dispatcher = open_dispatcher(self.production, self.settings, self.store)
        return self._dispatcher

    def start_worker(
        self, item: str, *extra: str, wait: bool = True, expect: int = 1
    ) -> subprocess.Popen[bytes]:
        """Start ``hie worker FILE ITEM`` as a real OS process and wait until it is ready.

        ``expect``: how many Celery workers it starts (one per partition of a keyed item).
        """
        assert self.path is not None
        run_dir = RunDir.of(self.settings, self.name).item(item)
        before = set(run_dir.glob("worker.*.ready")) if run_dir.exists() else set()
        proc = self._spawn_cli(["worker", str(self.path), item, *extra], log=item)
        if wait:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"worker {item} exited {proc.returncode}: {self.log(item)}"
                    )
                return (
                    bool(set(run_dir.glob("worker.*.ready")) - before)
                    if run_dir.exists()
                    else False
                )

            wait_for(ready, 60, f"worker {item} to be ready")
        return proc

    def start_gateway(self, port: int, timeout: float = 60.0) -> subprocess.Popen[bytes]:
        """Start ``hie gateway FILE`` as an OS process; wait until ``port`` accepts connections."""
        assert self.path is not None
        proc = self._spawn_cli(["gateway", str(self.path)], log="gateway")

        def listening() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"gateway exited {proc.returncode}: {self.log('gateway')}")
            return answers(f"redis://127.0.0.1:{port}", timeout=0.2)

        wait_for(listening, timeout, "the gateway to listen")
        return proc

    def _spawn_cli(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        """Start ``hie ARGS`` with output to ``log``.log; stopped by ``stop_workers``."""
        with (self.tmp / f"{log}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "hie.cli", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env(),
                cwd=self.tmp,
            )
        self.workers.append(proc)
        return proc

    def log(self, item: str) -> str:
        path = self.tmp / f"{item}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def send(self, target: str, body: object, **fields: Any) -> Envelope:
        """Publish a new message to ``target`` as a service would; returns its envelope."""
        envelope = Envelope.wrap(body, target=target, source="test", **fields)
        self.dispatcher.send(envelope)
        return envelope

    def send_many(self, target: str, bodies: list[object], **fields: Any) -> list[Envelope]:
        """Publish several messages to ``target`` at once: they travel packed, up to the target's
        ``batch_size`` per task, as a hop's children or a gateway's commit do."""
        envelopes = [Envelope.wrap(body, target=target, source="test", **fields) for body in bodies]
        self.dispatcher.outbox.send(envelopes)
        return envelopes

    def request(self, target: str, body: object, timeout: float = 30.0, **fields: Any) -> Any:
        """Send and wait for the reply payload."""
        envelope = Envelope.wrap(body, target=target, source="test", **fields)
        reply = self.dispatcher.request(envelope, timeout=timeout)
        return reply.payload() if reply else None

    def request_all(self, target: str, bodies: list[object], timeout: float = 30.0) -> list[Any]:
        """Send every request at once, then wait for the replies (in order) from this thread.

        One thread: Celery keeps a result backend per thread, whose sockets a test's short-lived
        threads would leave to the garbage collector.
        """
        envelopes = [Envelope.wrap(b, target=target, source="test") for b in bodies]
        replies = self.dispatcher.request_many(envelopes, timeout=timeout)
        return [r.payload() if r else None for r in replies]

    def journal(self) -> list[str]:
        from tests.hosts import journal_key

        client = redis.Redis.from_url(self.settings.result_backend or "")
        try:
            return [v.decode() for v in client.lrange(journal_key(self.name), 0, -1)]
        finally:
            client.close()

    def stop_workers(self, timeout: float = 20.0) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.workers:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.workers.clear()

    def cleanup(self) -> None:
        """Stop workers and remove this production's queues and journal from the broker."""
        self.stop_workers()
        if self.production is None:
            return
        names = [queue_name(self.name, i.name) for i in self.production.items]
        with Connection(self.settings.broker_url) as conn:
            channel = conn.channel()
            for name in names:
                try:
                    channel.queue_delete(name)
                except Exception:
                    channel = conn.channel()
        from tests.hosts import journal_key

        client = redis.Redis.from_url(self.settings.result_backend or "")
        try:
            keys = [journal_key(self.name)]
            for name in names:
                keys.extend(client.keys(f"{name}*"))
            client.delete(*keys)
        finally:
            client.close()
        if self._dispatcher is not None:
            self._close_app(self._dispatcher.app)
            self._dispatcher = None
        if self._store is not None:
            self._store.dispose()

    @staticmethod
    def _close_app(app: Any) -> None:
        """Close this test's Celery app and its result backend, so no socket outlives the test.

        Results still to be collected unsubscribe as they go, so they go first.
        """
        gc.collect()
        backend = app.backend
        consumer = getattr(backend, "result_consumer", None)
        if consumer is not None:
            consumer.stop()
        client = getattr(backend, "client", None)
        if client is not None:
            client.connection_pool.disconnect()
        app.close()


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ready_files(settings: Settings, production: str, item: str) -> list[dict[str, Any]]:
    """What the workers of ``item`` announced when they became ready."""
    folder = RunDir.of(settings, production).item(item)
    return [json.loads(p.read_text()) for p in folder.glob("worker.*.ready")]
