"""Hosts and hooks used by the integration tests; workers import them by dotted path.

Evidence is returned in replies (pid, thread, timing) or pushed to a Redis list named after the
production, so tests assert on what really ran in the worker processes.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, ClassVar

import redis

from hie.errors import RequestTimeoutError, Retry, SkipMessage
from hie.hl7 import HL7Message
from hie.hooks import MessageHook
from hie.hosts.base import Host, ItemSettings
from hie.hosts.hl7_tcp import HL7TCPService
from hie.hosts.operation import BusinessOperation
from hie.hosts.process import BusinessProcess
from hie.messages import Message
from hie.settings import get_settings


def journal_key(production: str) -> str:
    """The Redis list where test hosts and hooks record what happened."""
    return f"hie-test:{production}:journal"


def journal(host: Host, entry: str) -> None:
    """Append ``entry`` to the production's journal (in the result backend's Redis)."""
    url = get_settings().result_backend or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url)
    try:
        client.rpush(journal_key(host.production.name), entry)
    finally:
        client.close()


class Evidence(Message):
    """Where and when a message was handled."""

    item: str
    body: str
    pid: int
    thread: int
    started: float
    ended: float
    session_id: str
    correlation_id: str | None = None


class Work(Message):
    """A test request: what to do and how long to take."""

    label: str
    delay: float = 0.0
    fail_times: int = 0


class DelaySettings(ItemSettings):
    delay: float = 0.0


class RecordingOperation(BusinessOperation):
    """Sleeps for the request's delay, journals the label, replies with evidence."""

    Settings: ClassVar[type[ItemSettings]] = DelaySettings
    _failures: ClassVar[dict[str, int]] = {}

    def on_message(self, request: Any) -> Any:
        label = request.label if isinstance(request, Work) else str(request)
        delay = request.delay if isinstance(request, Work) else self.settings.delay  # type: ignore[attr-defined]
        current = self.current
        assert current is not None
        key = str(current.message_id)
        if isinstance(request, Work) and self._failures.get(key, 0) < request.fail_times:
            self._failures[key] = self._failures.get(key, 0) + 1
            journal(self, f"fail:{label}")
            raise RuntimeError(f"planned failure {self._failures[key]} of {label}")
        started = time.time()
        time.sleep(delay)
        journal(self, f"done:{label}")
        return Evidence(
            item=self.item_name,
            body=label,
            pid=os.getpid(),
            thread=threading.get_ident(),
            started=started,
            ended=time.time(),
            session_id=str(current.session_id),
            correlation_id=str(current.correlation_id) if current.correlation_id else None,
        )


class CallOutcome(Message):
    """What a caller process saw of its calls."""

    mode: str
    request_id: str
    replies: list[Any] = []
    correlations_ok: bool = False
    error: str | None = None


class CallerSettings(ItemSettings):
    mode: str = "sync"
    call_timeout: float = 5.0


class CallerProcess(BusinessProcess):
    """Calls its targets as the ``mode`` setting says and reports what came back."""

    Settings: ClassVar[type[ItemSettings]] = CallerSettings

    def on_request(self, request: Any) -> Any:
        current = self.current
        assert current is not None
        mode = self.settings.mode  # type: ignore[attr-defined]
        timeout = self.settings.call_timeout  # type: ignore[attr-defined]
        if mode == "sync":
            try:
                reply = self.send_request_sync(self.targets[0], request, timeout=timeout)
            except RequestTimeoutError as exc:
                return CallOutcome(mode=mode, request_id=str(current.message_id), error=str(exc))
            return CallOutcome(
                mode=mode, request_id=str(current.message_id), replies=[reply.model_dump()]
            )
        if mode == "self":
            try:
                self.send_request_sync(self.item_name, request)
            except Exception as exc:
                return CallOutcome(
                    mode=mode,
                    request_id=str(current.message_id),
                    error=f"{type(exc).__name__}: {exc}",
                )
        if mode == "multi":
            replies = self.send_multi_request_sync([(t, request) for t in self.targets], timeout)
            return CallOutcome(
                mode=mode,
                request_id=str(current.message_id),
                replies=[r.model_dump() for r in replies],
            )
        # async: every target; replies come to on_response, joined in on_complete
        for target in self.targets:
            self.send_request_async(target, request)
        return None

    def on_response(self, request: Any, response: Any) -> Any:
        current = self.current
        assert current is not None
        journal(self, f"response:{getattr(response, 'item', '?')}")
        return response

    def on_complete(self, request: Any, responses: list[Any]) -> Any:
        current = self.current
        assert current is not None
        ok = all(
            isinstance(r, Evidence) and r.session_id == str(current.session_id) for r in responses
        )
        return CallOutcome(
            mode="async",
            request_id=str(current.message_id),
            replies=[r.model_dump() for r in responses],
            correlations_ok=ok,
        )


class DeferringOperation(BusinessOperation):
    """Defers its reply and asks the item in its ``answerer`` setting to answer it."""

    class Settings(ItemSettings):
        answerer: str

    def on_message(self, request: Any) -> Any:
        token = self.defer_response()
        self.send_request_async(
            self.settings.answerer,
            Work(label=f"token:{token}"),  # type: ignore[attr-defined]
            response_required=False,
        )
        return None


class AnsweringOperation(BusinessOperation):
    """Answers the deferred request whose token it receives."""

    def on_message(self, request: Any) -> Any:
        token = request.label.split(":", 1)[1]
        self.send_deferred_response(token, Work(label=f"answered {token}"))
        return None


class RecordingHook(MessageHook):
    """Journals every hook call as ``<name>.<event>``."""

    tag = "A"

    def before_process(self, host: Host, message: Any) -> None:
        journal(host, f"{self.tag}.before")
        if isinstance(message.payload(), Work) and message.payload().label == f"skip-{self.tag}":
            raise SkipMessage(f"hook {self.tag} skips this one")

    def after_process(
        self, host: Host, message: Any, *, result: Any = None, error: Any = None
    ) -> None:
        journal(host, f"{self.tag}.after:{'error' if error else 'ok'}")

    def on_error(self, host: Host, message: Any, error: BaseException) -> None:
        journal(host, f"{self.tag}.on_error")


class RecordingHookB(RecordingHook):
    tag = "B"


class HookedOperation(BusinessOperation):
    """Journals ``host``; label ``boom`` raises, ``retry-once`` asks for one retry."""

    retry_on_error = False
    _retried: ClassVar[set[str]] = set()

    def on_message(self, request: Any) -> Any:
        journal(self, "host")
        if request.label == "boom":
            raise ValueError("boom")
        current = self.current
        assert current is not None
        if request.label == "retry-once" and str(current.message_id) not in self._retried:
            self._retried.add(str(current.message_id))
            raise Retry("try again", delay=0.1)
        return Work(label=f"ok {request.label}")


class TaskJournalOperation(BusinessOperation):
    """Journals ``done:<label>:<task id>`` (or ``fail:...``): which task carried each message.

    A ``Work`` label fails ``fail_times`` times in this process before it succeeds.
    """

    _failures: ClassVar[dict[str, int]] = {}

    def on_message(self, request: Any) -> Any:
        from celery import current_task

        task_id = current_task.request.id if current_task else "?"
        if self._failures.get(request.label, 0) < request.fail_times:
            self._failures[request.label] = self._failures.get(request.label, 0) + 1
            journal(self, f"fail:{request.label}:{task_id}")
            raise RuntimeError(f"planned failure of {request.label}")
        time.sleep(request.delay)
        journal(self, f"done:{request.label}:{task_id}")
        return None


class StampingTCPService(HL7TCPService):
    """Journals ``service:<MSH-10>`` and sends on a copy whose MSH-4 is ``STAMPED``.

    Patient (PID-3.1) ``SKIP`` is skipped; ``BOOM`` raises.
    """

    def on_message(self, data: Any) -> Any:
        journal(self, f"service:{data.control_id}")
        patient = data.get("PID-3.1")
        if patient == "SKIP":
            raise SkipMessage("a test patient")
        if patient == "BOOM":
            raise ValueError("no route for this patient")
        stamped = data.copy()
        stamped.set("MSH-4", "STAMPED")
        return stamped


class SkipTestPatients(MessageHook):
    """Journals ``skip-hook:<MSH-10>`` and skips HL7 messages of patient (PID-3.1) ``SKIP``."""

    def before_process(self, host: Host, message: Any) -> None:
        payload = message.payload()
        if isinstance(payload, HL7Message):
            journal(host, f"skip-hook:{payload.control_id}")
            if payload.get("PID-3.1") == "SKIP":
                raise SkipMessage("a test patient")
