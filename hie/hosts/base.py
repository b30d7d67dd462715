"""Host: the base of every business service, process and operation.

Lifecycle hooks (IRIS names), all optional no-ops:

- ``on_init()``: once per worker process, before the first message (open connections here);
- ``on_start()``: the item starts taking messages in this process;
- ``on_stop()``: the item stops taking messages in this process;
- ``on_tear_down()``: once per worker process, at exit (close what ``on_init`` opened).

Requests between hosts: ``send_request_async`` (reply to ``on_response`` of a process),
``send_request_sync`` (wait for the reply), ``send_multi_request_sync`` (fan out and join),
``defer_response`` / ``send_deferred_response`` (answer later, from any host). Session and
correlation ids are carried by the framework on every hop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from hie.errors import ConfigError, RequestError, SelfRequestError
from hie.hosts.context import current_call
from hie.hosts.trail import Trail
from hie.messages import Envelope

if TYPE_CHECKING:
    from pathlib import Path

    from hie.production import Item, Production
    from hie.store import MessageStore
    from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)


class ItemSettings(BaseModel):
    """Settings every item accepts; host classes subclass this for their own (``Settings``)."""

    model_config = ConfigDict(extra="forbid")

    #: Seconds between retries of a failed message (IRIS RetryInterval).
    retry_interval: float = Field(default=5.0, ge=0)
    #: Seconds after the first attempt before a failing message is given up (IRIS
    #: FailureTimeout); -1 retries forever.
    failure_timeout: float = Field(default=15.0, ge=-1)
    #: Default seconds a ``send_request_sync`` waits for its reply.
    response_timeout: float = Field(default=30.0, gt=0)
    #: Circuit breaker: stop calling after this many failures in a row (0: off) ...
    breaker_threshold: int = Field(default=0, ge=0)
    #: ... and probe again after this many seconds.
    breaker_reset: float = Field(default=10.0, gt=0)
    #: Seconds between two messages of one worker process (IRIS ThrottleDelay; 0: none).
    throttle_delay: float = Field(default=0.0, ge=0)
    #: Most messages one task of this item carries (processes and operations): messages sent
    #: to it together travel in one task and are recorded in one transaction. 1 turns it off.
    batch_size: int = Field(default=32, ge=1, le=500)


class Host:
    """Base class of business services, processes and operations (see the module docstring)."""

    Settings: ClassVar[type[ItemSettings]] = ItemSettings
    #: "service", "process" or "operation"; services run in the gateway, the rest as Celery tasks.
    kind: ClassVar[str] = "host"
    #: Whether an exception from the host is retried (operations) or fails the message (processes).
    retry_on_error: ClassVar[bool] = False

    def __init__(
        self,
        item: Item,
        production: Production,
        *,
        dispatcher: Dispatcher | None = None,
    ) -> None:
        self.item = item
        self.item_name = item.name
        self.production = production
        self.settings = self.Settings.model_validate(item.settings)
        self._dispatcher = dispatcher
        #: What this host records about the message in hand (events, ACKs, duplicate flags).
        self.trail = Trail(self)

    @classmethod
    def check_item(cls, item: Item, production: Production) -> list[str]:
        """Load-time checks beyond the settings model (files exist, names resolve); problems.

        Runs when a production is loaded, so a mistake fails at ``validate`` time, not in a
        worker at 3 a.m. Override in host classes that read files or name other items.
        """
        return []

    @classmethod
    def source_files(cls, item: Item, production: Production) -> list[Path]:
        """Files besides the production that make up the item (rules, transforms, tables).

        ``hie update`` compares their content: an edited rule file restarts the item that reads
        it, as a changed setting does. Override in host classes that read files.
        """
        return []

    # -- lifecycle hooks ------------------------------------------------------------------------
    def on_init(self) -> None:
        """Once per worker process, before the first message."""

    def on_start(self) -> None:
        """The item starts taking messages in this process."""

    def on_stop(self) -> None:
        """The item stops taking messages in this process."""

    def on_tear_down(self) -> None:
        """Once per worker process, at exit."""

    # -- the message in hand --------------------------------------------------------------------
    @property
    def current(self) -> Envelope | None:
        """The envelope of the message being handled in this thread, if any."""
        call = current_call.get()
        return call.envelope if call else None

    @property
    def targets(self) -> list[str]:
        """The item's configured targets."""
        return list(self.item.targets)

    @property
    def store(self) -> MessageStore | None:
        """The message store of this process (None when the host is not attached to one)."""
        return self._dispatcher.store if self._dispatcher is not None else None

    @property
    def dispatcher(self) -> Dispatcher:
        """How this host publishes messages; set by the framework."""
        if self._dispatcher is None:
            raise ConfigError(
                f"{type(self).__name__} {self.item_name!r} is not attached to a broker"
            )
        return self._dispatcher

    def _child(self, target: str, msg: object, priority: int | None, **headers: str) -> Envelope:
        """A new envelope for ``target``: a child of the message in hand, or a new session."""
        parent = self.current
        if priority is None:
            priority = self.item.priority
        fields: dict[str, Any] = {"headers": headers}
        if priority is not None:
            fields["priority"] = priority
        if isinstance(msg, Envelope):
            return msg.model_copy(update={"target": target, "source": self.item_name, **fields})
        if parent is None:
            return Envelope.wrap(msg, source=self.item_name, target=target, **fields)
        return parent.child(msg, target=target, source=self.item_name, **fields)

    # -- requests between hosts -----------------------------------------------------------------
    def send_request_async(
        self,
        target: str,
        msg: object,
        priority: int | None = None,
        *,
        response_required: bool = True,
    ) -> Envelope:
        """Send ``msg`` to ``target`` without waiting; returns the envelope sent.

        From a process's ``on_request`` with ``response_required``, the reply comes to its
        ``on_response`` and, once every reply is in, ``on_complete`` runs. Anywhere else the
        request is fire-and-forget.
        """
        call = current_call.get()
        if response_required and call is not None and call.phase == "request":
            child = self._child(target, msg, priority, **{"hie-await": "async"})
            call.pending.append(child)
            return child
        return self._send_child(self._child(target, msg, priority))

    def _send_child(self, child: Envelope) -> Envelope:
        """Send ``child`` fire-and-forget: through the hop's outbox inside a task, else now."""
        call = current_call.get()
        if call is not None and call.in_task and call.phase in ("request", "message"):
            # Saved in the same transaction as this hop's completion and published right after
            # it: a worker that dies mid-hop leaves neither a half-sent set nor a duplicate.
            call.outbox.append(self.dispatcher.prepare(child))
        else:
            self.dispatcher.send(child)
        return child

    def send_request_sync(
        self, target: str, msg: object, timeout: float | None = None, priority: int | None = None
    ) -> Any:
        """Send ``msg`` to ``target`` and return its reply payload.

        Raises ``SelfRequestError`` for a call to this host's own item (it would wait on its own
        pool), ``RequestTimeoutError`` when no reply comes within ``timeout`` seconds (the late
        reply is recorded under its own request, never handed to another caller), and
        ``RequestError`` when the target failed.
        """
        if target == self.item_name:
            raise SelfRequestError(
                f"item {self.item_name!r} sent a synchronous request to itself; that would wait on "
                "its own worker pool. Use send_request_async, or send to another item."
            )
        child = self._child(target, msg, priority, **{"hie-await": "sync"})
        wait = timeout if timeout is not None else self.settings.response_timeout
        reply = self.dispatcher.request(child, timeout=wait)
        return reply.payload() if reply is not None else None

    def send_multi_request_sync(
        self, requests: Sequence[tuple[str, object]], timeout: float | None = None
    ) -> list[Any]:
        """Send several requests at once and return their reply payloads, in request order."""
        for target, _ in requests:
            if target == self.item_name:
                raise SelfRequestError(
                    f"item {self.item_name!r} included itself in a synchronous multi-request"
                )
        children = [self._child(t, m, None, **{"hie-await": "sync"}) for t, m in requests]
        wait = timeout if timeout is not None else self.settings.response_timeout
        replies = self.dispatcher.request_many(children, timeout=wait)
        return [r.payload() if r is not None else None for r in replies]

    def defer_response(self) -> str:
        """Promise to answer the message in hand later; returns the token to answer with.

        Any host (in any process) then calls ``send_deferred_response(token, reply)``.
        """
        call = current_call.get()
        if call is None or call.envelope is None:
            raise RequestError("defer_response() is only possible while handling a message")
        if call.deferred_token is None:
            call.deferred_token = self.dispatcher.new_token()
        return call.deferred_token

    def send_deferred_response(self, token: str, reply: object) -> None:
        """Answer a request deferred with ``defer_response()``."""
        self.dispatcher.answer(token, reply, source=self.item_name)

    def record_event(self, event: str, detail: str) -> None:
        """Add an event to the trail of the message in hand (``self.trail.event``)."""
        self.trail.event(event, detail)

    def send_to_targets(self, msg: object, priority: int | None = None) -> list[Envelope]:
        """Send ``msg`` to every configured target, fire-and-forget."""
        return [
            self.send_request_async(t, msg, priority, response_required=False) for t in self.targets
        ]

    # -- framework plumbing ---------------------------------------------------------------------
    def _dispatch(self, envelope: Envelope) -> Any:
        """Run the host's per-message hook for ``envelope``; implemented by each kind."""
        raise NotImplementedError(f"{type(self).__name__} does not handle messages")
