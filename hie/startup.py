"""What an HIE process opens at start-up: the message store, and the Celery app with the
dispatcher (and its outbox) that publishes messages to the items' queues.

Every process that stores or sends messages (worker, gateway, recovery sweeper, viewer, the
commands) builds these the same way, here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hie.celery_app import create_app
from hie.outbox import Outbox
from hie.store import MessageStore
from hie.tasks.register import configure_queues
from hie.tasks.dispatcher import Dispatcher

if TYPE_CHECKING:
    from hie.production import Production
    from hie.settings import Settings


def open_store(
    settings: Settings,
    *,
    durable: bool = False,
    upgrade: bool = True,
    production: str | None = None,
) -> MessageStore:
    """The message store for ``settings``, at the current schema.

    ``durable``: for processes that take custody of inbound messages (a service deletes its source
    file or answers its sender once the message is stored): each commit survives a power cut.
    ``upgrade``: migrate a store an older HIE made (what runs a production does: ``start``, the
    manager, workers, gateways); commands that only look or make small changes pass False and
    get a ``StoreError`` saying to run ``hie db upgrade`` instead (a new store is set up either
    way). ``production``: the production this process serves (``MessageStore``).
    """
    store = MessageStore(settings.database_url, durable=durable, production=production)
    if upgrade:
        store.migrate()
    else:
        store.ensure_schema()
    return store


def open_dispatcher(production: Production, settings: Settings, store: MessageStore) -> Dispatcher:
    """A Celery app for ``settings`` and the dispatcher of ``production`` on it (``.app``).

    The outbox writes through ``store``; every item queue is declared alike in this process.
    """
    app = create_app(settings)
    configure_queues(app, production)
    outbox = Outbox(app, production, store, redis=settings.broker_is_redis)
    return Dispatcher(app, production, redis=settings.broker_is_redis, outbox=outbox)
