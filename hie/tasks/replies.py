"""Asynchronous replies to a business process: ``on_response`` per reply, ``on_complete`` once.

``send_request_async`` from ``on_request`` becomes a Celery chord (``Dispatcher.
send_with_responses``): each call is chained to the caller's ``.on_response`` task, and the chord's
body is its ``.on_complete`` task, whose result is the process's reply (stored under a token the
caller's own task returned as a deferred marker). A call may itself be deferred by its target
(``defer_response``): ``on_response`` then waits for the deferred answer, polling, until the
process's ``response_timeout``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from hie.hosts.context import CallContext, current_call
from hie.hosts.process import BusinessProcess, ErrorResponse
from hie.messages import Envelope
from hie.tasks.dispatcher import DEFERRED, FAILED, failed_marker

if TYPE_CHECKING:
    from hie.tasks.base import ItemRuntime

#: How often an ``on_response`` waiting for a deferred reply looks again (seconds).
DEFERRED_POLL = 0.2


class NotYet(Exception):
    """A deferred reply is not there yet: look again in ``DEFERRED_POLL`` seconds."""

    def __init__(self, deadline: float) -> None:
        super().__init__("deferred reply not there yet")
        self.deadline = deadline


def on_response(
    runtime: ItemRuntime,
    reply: Any,
    request: dict[str, Any],
    call: dict[str, Any],
    deadline: float | None,
) -> Any:
    """Run the process's ``on_response`` for one async reply.

    Raises ``NotYet`` while a deferred reply is still to come (before ``deadline``).
    """
    host = runtime.host
    assert isinstance(host, BusinessProcess)
    deadline = deadline or time.time() + host.settings.response_timeout
    if isinstance(reply, dict) and DEFERRED in reply:
        value = runtime.dispatcher.ready(reply[DEFERRED])
        if value is None:
            if time.time() <= deadline:
                raise NotYet(deadline)
            value = failed_marker(
                call.get("target") or "?", call["message_id"], "deferred reply timed out"
            )
        reply = value
    request_env = Envelope.from_wire(request)
    token = current_call.set(CallContext(envelope=request_env, phase="response"))
    try:
        value = host.on_response(request_env.payload(), response_payload(reply))
    finally:
        current_call.reset(token)
    return None if value is None else request_env.reply(value, source=host.item_name).to_wire()


def on_complete(runtime: ItemRuntime, results: list[Any], request: dict[str, Any]) -> Any:
    """Run the process's ``on_complete`` once every async reply is in; its reply is final."""
    host = runtime.host
    assert isinstance(host, BusinessProcess)
    request_env = Envelope.from_wire(request)
    responses = [response_payload(r) for r in results]
    token = current_call.set(CallContext(envelope=request_env, phase="complete"))
    try:
        reply = host.on_complete(request_env.payload(), responses)
    finally:
        current_call.reset(token)
    if reply is None:
        return None
    reply_env = request_env.reply(reply, source=host.item_name)
    runtime.dispatcher.store.save(reply_env, status="completed", item=host.item_name, event="reply")
    return reply_env.to_wire()


def response_payload(value: Any) -> Any:
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
