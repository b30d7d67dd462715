"""HostTask: the Celery base task that runs hooks and the host for one production item.

Celery builds a task object once per process, so the host instance lives on it: ``on_init`` and
``on_start`` run once per worker process, lazily or from the worker's process-init signal.
Only ids and small envelopes travel; the task body stays as thin as a web view.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task

from hie.errors import Fail, Retry, SkipMessage, StoreError, Suspend
from hie.flow import CircuitBreaker, Throttle
from hie.hooks import HookChain
from hie.hosts.context import CallContext, current_call
from hie.hosts.process import BusinessProcess, ErrorResponse
from hie.messages import Envelope
from hie.tasks.ordering import KeyHold
from hie.tasks.routing import DEFERRED, FAILED, deferred_marker, failed_marker

if TYPE_CHECKING:
    from hie.hosts.base import Host
    from hie.production import Item, Production
    from hie.tasks.routing import Dispatcher

log = logging.getLogger(__name__)

#: How often an ``on_response`` waiting for a deferred reply looks again (seconds).
DEFERRED_POLL = 0.2
#: What a task returns when its message was parked behind an earlier one of the same key.
PARKED = "hie-parked"
_AGAIN = object()


@dataclass
class ItemRuntime:
    """Everything a task needs about its item, built once per process by ``register``."""

    production: Production
    item: Item
    host_class: type[Host]
    hooks: HookChain
    dispatcher: Dispatcher
    #: Redis URL for per-key holds of ordered items (None: no holds).
    state_url: str | None = None
    _host: Host | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _breaker: CircuitBreaker | None = None
    _throttle: Throttle | None = None
    _hold: KeyHold | None = None
    _extras_ready: bool = False

    def _extras(self) -> None:
        if self._extras_ready:
            return
        settings = self.host.settings
        if settings.breaker_threshold > 0:
            self._breaker = CircuitBreaker(settings.breaker_threshold, settings.breaker_reset)
        if settings.throttle_delay > 0:
            self._throttle = Throttle(settings.throttle_delay)
        if self.item.partitions > 1 and self.state_url:
            self._hold = KeyHold(self.state_url, self.dispatcher.queue(self.item.name))
        self._extras_ready = True

    @property
    def breaker(self) -> CircuitBreaker | None:
        """This process's circuit breaker for the item's peer, when configured."""
        self._extras()
        return self._breaker

    @property
    def throttle(self) -> Throttle | None:
        """This process's throttle, when ``throttle_delay`` is set."""
        self._extras()
        return self._throttle

    @property
    def hold(self) -> KeyHold | None:
        """Per-key holds of an item ordered by key over partitions."""
        self._extras()
        return self._hold

    @property
    def host(self) -> Host:
        """The host instance of this process, created (on_init, on_start) on first use."""
        if self._host is None:
            with self._lock:
                if self._host is None:
                    host = self.host_class(self.item, self.production, dispatcher=self.dispatcher)
                    host.on_init()
                    host.on_start()
                    self._host = host
        return self._host

    def shutdown(self) -> None:
        """Stop and tear down the host of this process, if it was started."""
        with self._lock:
            host, self._host = self._host, None
        if host is not None:
            try:
                host.on_stop()
            finally:
                host.on_tear_down()


class HostTask(Task):  # type: ignore[misc]
    """Base task of every item: load the envelope, run hooks around the host, record the hop."""

    acks_late = True
    reject_on_worker_lost = True
    # failure_timeout decides when retrying stops. Celery reads retry(max_retries=None) as "the
    # task's default", which is 3: without this, a 4th failure ended the task with the message
    # still "queued" in the store.
    max_retries = None
    runtime: ItemRuntime

    @property
    def tracker(self) -> Any:
        return self.runtime.dispatcher.tracker

    def handle(
        self, wire: dict[str, Any], first_attempt: float | None, *, resuming: bool = False
    ) -> Any:
        """Run the item's host for one message and return the reply for the broker."""
        envelope = Envelope.from_wire(wire)
        item = self.runtime.item.name
        first_attempt = first_attempt or time.time()
        hold = self.runtime.hold
        if hold is not None and envelope.key and not resuming and hold.is_held(envelope.key):
            # An earlier message of this key is failing: wait behind it, keep the key's order.
            hold.append(envelope.key, wire, first_attempt)
            if self.tracker and self.tracker.store is not None:
                self.tracker.store.record_event(
                    envelope.message_id,
                    "held",
                    item=item,
                    detail=f"waits behind an earlier message with key {envelope.key!r}",
                )
            return PARKED
        if self.tracker and (reason := self.tracker.reason_to_skip(envelope, item)):
            # A redelivered task whose first run completed (never deliver twice), or a message an
            # operator suspended or discarded while its copy waited on the broker.
            log.info("message %s not handled by %s: %s", envelope.message_id, item, reason)
            return None
        delivery = self.request.delivery_info or {}
        if delivery.get("redelivered") and self.tracker and self.runtime.host.kind == "operation":
            # The broker gave this task out before and never got its ack: the worker died while
            # it ran, possibly after the peer already had the message.
            self.tracker.possible_duplicate(envelope, item, "redelivered by the broker")
        error: BaseException
        delay: float | None
        while True:
            if self.tracker:
                self.tracker.started(envelope, item, self.request.retries or 0)
            started = time.perf_counter()
            try:
                call, reply = self._attempt(envelope)
            except SkipMessage as exc:
                if self.tracker:
                    self.tracker.skipped(envelope, item, exc.reason)
                return None
            except Fail as exc:
                if not exc.after_retries or self._exhausted(first_attempt):
                    return self._fail(envelope, exc, started)
                delay, error = None, exc
            except Suspend as exc:
                if not exc.after_retries or self._exhausted(first_attempt):
                    return self._suspend(envelope, exc, started)
                delay, error = None, exc
            except Retry as exc:
                delay, error = exc.delay, exc
            except Exception as exc:
                if not self.runtime.host.retry_on_error and not _transient(exc):
                    return self._fail(envelope, exc, started)
                delay, error = None, exc
            else:
                try:
                    return self._finish(envelope, call, reply, started)
                except StoreError as exc:
                    # The hop's record could not be written: nothing of it was sent yet (the
                    # outbox publishes after the commit), so running it again is safe.
                    log.warning(
                        "cannot record message %s at %s: %s", envelope.message_id, item, exc
                    )
                    raise self.retry(
                        args=(wire,),
                        kwargs={"first_attempt": first_attempt},
                        countdown=self.runtime.host.settings.retry_interval,
                        max_retries=None,
                        exc=exc,
                    ) from exc
            outcome = self._after_failure(
                envelope, wire, first_attempt, error, started, delay, resuming
            )
            if outcome is not _AGAIN:
                return outcome

    def _attempt(self, envelope: Envelope) -> tuple[CallContext, Any]:
        """One attempt: circuit breaker and throttle, then the hooks around the host."""
        runtime = self.runtime
        breaker = runtime.breaker
        if breaker is not None and (wait := breaker.wait_time()) > 0:
            raise Retry(f"circuit open after {breaker.failures} failures in a row", delay=wait)
        if runtime.throttle is not None:
            runtime.throttle.wait()
        host = runtime.host
        call = CallContext(
            envelope=envelope,
            phase="request" if isinstance(host, BusinessProcess) else "message",
            in_task=True,
        )
        token = current_call.set(call)
        try:
            with runtime.hooks.processing(host, envelope) as outcome:
                outcome.reply = host._dispatch(envelope)
        except (SkipMessage, Retry, Suspend, Fail):
            raise
        except Exception:
            if breaker is not None:
                breaker.failure()
            raise
        finally:
            current_call.reset(token)
        if breaker is not None:
            breaker.success()
        return call, outcome.reply

    def _after_failure(
        self,
        envelope: Envelope,
        wire: dict[str, Any],
        first_attempt: float,
        exc: BaseException,
        started: float,
        delay: float | None,
        resuming: bool,
    ) -> Any:
        """Retry, in the way the item's ordering allows, or give the message up."""
        item = self.runtime.item
        if self._exhausted(first_attempt):
            if isinstance(exc, Fail):
                return self._fail(envelope, exc, started)
            # IRIS semantics: past FailureTimeout the message is suspended (kept for an operator
            # to resend or discard, an alert raised) and, in a FIFO item, the next one goes.
            reason = exc.reason if isinstance(exc, Suspend) else _describe(exc)
            return self._suspend(
                envelope, Suspend(f"gave up after failure_timeout: {reason}"), started
            )
        if self.tracker:
            self.tracker.failed(
                envelope,
                item.name,
                _describe(exc),
                (time.perf_counter() - started) * 1000,
                final=False,
            )
        countdown = self.runtime.host.settings.retry_interval if delay is None else delay
        if item.fifo:
            # Retried in place: requeueing would let later messages overtake this one.
            time.sleep(countdown)
            return _AGAIN
        hold = self.runtime.hold
        if hold is not None and envelope.key is not None:
            if not resuming:
                hold.append(envelope.key, wire, first_attempt)
            self._schedule_resume(envelope.key, countdown)
            return PARKED
        raise self.retry(
            args=(wire,),
            kwargs={"first_attempt": first_attempt},
            countdown=countdown,
            max_retries=None,
            exc=exc,
        )

    def _schedule_resume(self, key: str, countdown: float) -> None:
        from hie.tasks.ordering import partition_of, partition_queue

        item = self.runtime.item
        queue = self.runtime.dispatcher.queue(item.name)
        self.app.signature(
            f"{queue}.resume",
            args=(key,),
            queue=partition_queue(queue, partition_of(key, item.partitions)),
        ).apply_async(countdown=countdown)

    def handle_resume(self, key: str) -> int:
        """Work through the parked messages of ``key`` in order; returns how many completed."""
        hold = self.runtime.hold
        assert hold is not None
        done = 0
        while (head := hold.head(key)) is not None:
            wire, first_attempt = head
            try:
                outcome = self.handle(wire, first_attempt, resuming=True)
            except Exception:  # recorded as failed by _fail; the key moves on
                outcome = None
            if outcome is PARKED:
                return done  # still failing: a later resume tries again
            hold.pop(key)
            done += 1
        return done

    def _finish(self, envelope: Envelope, call: CallContext, reply: Any, started: float) -> Any:
        item = self.runtime.item.name
        ms = (time.perf_counter() - started) * 1000
        if call.pending:
            token = self.runtime.dispatcher.send_with_responses(item, envelope, call.pending)
            if self.tracker:
                self.tracker.completed(envelope, item, None, ms, events=call.events)
            self._flush(call)
            return deferred_marker(token)
        reply_env = envelope.reply(reply, source=item) if reply is not None else None
        if self.tracker:
            self.tracker.completed(
                envelope, item, reply_env, ms, children=call.outbox, events=call.events
            )
        self._flush(call)
        if call.deferred_token is not None:
            return deferred_marker(call.deferred_token)
        return reply_env.to_wire() if reply_env is not None else None

    def _flush(self, call: CallContext) -> None:
        """Publish the hop's fire-and-forget sends, now that they are stored.

        A publish that fails here loses nothing: the message is stored as queued, and the
        recovery sweeper publishes it again.
        """
        dispatcher = self.runtime.dispatcher
        for child in call.outbox:
            try:
                dispatcher.wait_for_room(child)
                if self.tracker and self.tracker.store is not None:
                    dispatcher.publish(child)
                else:
                    dispatcher.send(child)  # no store: nothing was saved, send as usual
            except Exception as exc:  # the sweeper re-publishes it
                log.error(
                    "cannot publish message %s to %s now: %r", child.message_id, child.target, exc
                )

    def _retry(
        self,
        envelope: Envelope,
        wire: dict[str, Any],
        first_attempt: float,
        exc: BaseException,
        started: float,
        delay: float | None,
    ) -> Any:
        settings = self.runtime.host.settings
        if self._exhausted(first_attempt):
            if isinstance(exc, Suspend):
                return self._suspend(envelope, exc, started)
            return self._fail(envelope, exc, started)
        if self.tracker:
            self.tracker.failed(
                envelope,
                self.runtime.item.name,
                _describe(exc),
                (time.perf_counter() - started) * 1000,
                final=False,
            )
        countdown = settings.retry_interval if delay is None else delay
        raise self.retry(
            args=(wire,),
            kwargs={"first_attempt": first_attempt},
            countdown=countdown,
            max_retries=None,
            exc=exc,
        )

    def _exhausted(self, first_attempt: float) -> bool:
        """True once ``failure_timeout`` has passed since the first attempt (-1: never)."""
        timeout = self.runtime.host.settings.failure_timeout
        return timeout >= 0 and time.time() - first_attempt >= timeout

    def _suspend(self, envelope: Envelope, exc: Suspend, started: float) -> Any:
        item = self.runtime.item.name
        if self.tracker:
            self.tracker.suspended(
                envelope, item, exc.reason, (time.perf_counter() - started) * 1000
            )
        log.warning("item %s suspended message %s: %s", item, envelope.message_id, exc.reason)
        if envelope.headers.get("hie-await") == "async":
            # As for a failure: the caller's on_response must run so its chord joins.
            return failed_marker(item, str(envelope.message_id), f"suspended: {exc.reason}")
        return None

    def _fail(self, envelope: Envelope, exc: BaseException, started: float) -> Any:
        item = self.runtime.item.name
        text = _describe(exc)
        if self.tracker:
            self.tracker.failed(
                envelope, item, text, (time.perf_counter() - started) * 1000, final=True
            )
        log.error("item %s failed message %s: %s", item, envelope.message_id, text)
        if envelope.headers.get("hie-await") == "async":
            # The caller's on_response must still run (with an ErrorResponse) so its chord joins.
            return failed_marker(item, str(envelope.message_id), text)
        raise exc

    # -- business process callbacks -------------------------------------------------------------
    def handle_response(
        self, reply: Any, request: dict[str, Any], call: dict[str, Any], deadline: float | None
    ) -> Any:
        """Run the process's ``on_response`` for one async reply (waiting out a deferral)."""
        deadline = deadline or time.time() + self.runtime.host.settings.response_timeout
        if isinstance(reply, dict) and DEFERRED in reply:
            value = self.runtime.dispatcher.ready(reply[DEFERRED])
            if value is None:
                if time.time() > deadline:
                    value = failed_marker(
                        call.get("target") or "?", call["message_id"], "deferred reply timed out"
                    )
                else:
                    raise self.retry(
                        args=(reply,),
                        kwargs={"request": request, "call": call, "deadline": deadline},
                        countdown=DEFERRED_POLL,
                        max_retries=None,
                    )
            reply = value
        request_env = Envelope.from_wire(request)
        response = _response_payload(reply)
        host = self.runtime.host
        assert isinstance(host, BusinessProcess)
        token = current_call.set(CallContext(envelope=request_env, phase="response"))
        try:
            return _to_wire_value(
                host.on_response(request_env.payload(), response), request_env, host.item_name
            )
        finally:
            current_call.reset(token)

    def handle_complete(self, results: list[Any], request: dict[str, Any]) -> Any:
        """Run the process's ``on_complete`` once every async reply is in; its reply is final."""
        request_env = Envelope.from_wire(request)
        host = self.runtime.host
        assert isinstance(host, BusinessProcess)
        responses = [_response_payload(r) for r in results]
        token = current_call.set(CallContext(envelope=request_env, phase="complete"))
        try:
            reply = host.on_complete(request_env.payload(), responses)
        finally:
            current_call.reset(token)
        if reply is None:
            return None
        reply_env = request_env.reply(reply, source=host.item_name)
        if self.tracker and self.tracker.store is not None:
            self.tracker.store.save(
                reply_env, status="completed", item=host.item_name, event="reply"
            )
        return reply_env.to_wire()


def _response_payload(value: Any) -> Any:
    """Turn what a target task returned into what ``on_response``/``on_complete`` receive."""
    if value is None:
        return None
    if isinstance(value, dict) and FAILED in value:
        return ErrorResponse(
            item=value["item"], error=value[FAILED], message_id=value["message_id"]
        )
    if isinstance(value, dict) and "message_id" in value and "body_type" in value:
        return Envelope.from_wire(value).payload()
    return value


def _to_wire_value(value: Any, request: Envelope, item: str) -> Any:
    """A value ``on_response`` returned, made JSON-ready for the chord's result list."""
    if value is None:
        return None
    return request.reply(value, source=item).to_wire()


def _transient(exc: BaseException) -> bool:
    """Broker or store trouble: worth retrying in any item, not a fault of the message."""
    from kombu.exceptions import OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, OperationalError | RedisConnectionError | RedisTimeoutError | StoreError)


def _describe(exc: BaseException) -> str:
    notes = "; ".join(getattr(exc, "__notes__", []) or [])
    text = f"{type(exc).__name__}: {exc}"
    return f"{text} ({notes})" if notes else text
