"""Gateway ACK rate with the message store on, and off (a no-op committer), in the same run.

"Off" is a baseline only: nothing is stored, so nothing could be recovered; HIE never runs so.
Both runs publish to the real broker (a queue of a throwaway production, deleted at the end).

    .venv/bin/python bench/store_on_off.py [--messages 3000] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from hie.adapters.mllp import BlockingMLLPClient
from hie.celery_app import create_app
from hie.production import Production
from hie.settings import Settings
from hie.store import GroupCommitter, MessageStore
from hie.tasks.register import make_dispatcher
from mllp_gateway.publisher import Publisher
from mllp_gateway.server import GatewayServer


class NoopCommitter:
    """Accepts every save at once and stores nothing (the "store off" baseline)."""

    async def submit_async(self, *_: Any, **__: Any) -> None:
        return None

    def close(self, timeout: float | None = None) -> None:
        return None


class NoopStore:
    """Every store call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def adt(n: int) -> bytes:
    return (
        f"MSH|^~\\&|S|F|R|F|20260101||ADT^A01^ADT_A01|B{n:06d}|P|2.5\r"
        f"EVN|A01|20260101\rPID|1||{n}^^^H^MR||DOE^JANE||19800101|F\r"
    ).encode()


def blast(port: int, count: int, connections: int) -> float:
    """Send ``count`` messages over ``connections`` clients; return ACKs per second."""

    def run(numbers: range) -> None:
        with BlockingMLLPClient("127.0.0.1", port) as client:
            for n in numbers:
                client.send(adt(n))

    threads = [
        threading.Thread(target=run, args=(range(k, count, connections),))
        for k in range(connections)
    ]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count / (time.perf_counter() - start)


def measure(production: Production, settings: Settings, *, store_on: bool, args: Any) -> float:
    store = MessageStore(settings.database_url)
    store.migrate()
    dispatcher = make_dispatcher(create_app(settings), production, settings, store)
    publisher = Publisher(dispatcher)
    committer: Any = GroupCommitter(store) if store_on else NoopCommitter()
    service_item = production.item("In")
    service = production.host_class("In")(service_item, production, dispatcher=dispatcher)
    service.on_init()
    server = GatewayServer(
        service,  # type: ignore[arg-type]
        store=store if store_on else NoopStore(),  # type: ignore[arg-type]
        committer=committer,
        publisher=publisher,
    )
    loop = asyncio.new_event_loop()
    ready: Future[None] = Future()

    async def serve() -> None:
        await server.start()
        ready.set_result(None)
        while True:
            await asyncio.sleep(3600)

    thread = threading.Thread(target=lambda: loop.run_until_complete(serve()), daemon=True)
    thread.start()
    ready.result(30)
    blast(server.port, 200, args.connections)  # warm up
    rate = blast(server.port, args.messages, args.connections)
    committer.close()
    publisher.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    name = f"bench{uuid.uuid4().hex[:8]}"
    production = Production.model_validate(
        {
            "name": name,
            "items": [
                {"name": "In", "class": "HL7TCPService", "targets": ["Sink"],
                 "settings": {"port": 0}},
                {"name": "Sink", "class": "HL7FileOperation",
                 "settings": {"file_path": str(tmp)}},
            ],
        }
    )  # fmt: skip
    settings = Settings(database_url=f"sqlite:///{tmp / 'hie.db'}", home=tmp)
    on = measure(production, settings, store_on=True, args=args)
    off = measure(production, settings, store_on=False, args=args)
    print(f"store on:  {on:8.0f} ACKs/s")
    print(f"store off: {off:8.0f} ACKs/s")
    print(f"ratio on/off: {on / off:.2f}")
    import redis

    client = redis.Redis.from_url(settings.broker_url)
    client.delete(*(client.keys(f"hie.{name}.*") or [f"hie.{name}.Sink"]))


if __name__ == "__main__":
    main()
