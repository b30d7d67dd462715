"""BusinessProcess: receives a request, calls other hosts, and replies (IRIS BusinessProcess).

- ``on_request(request)``: required. Return a reply, or call ``send_request_async`` for replies
  that come back later.
- ``on_response(request, response)``: one call per async reply (``ErrorResponse`` when the target
  failed); may return a value that ``on_complete`` receives in its list.
- ``on_complete(request, responses)``: once every async reply is in; its return value is the
  process's reply to whoever called it.

Example::

    class Enrich(BusinessProcess):
        def on_request(self, request):
            self.send_request_async("PatientLookup", request)

        def on_complete(self, request, responses):
            return responses[0]
"""

from __future__ import annotations

from typing import Any, ClassVar

from hie.hosts.base import Host
from hie.messages import Envelope, Message


class ErrorResponse(Message):
    """What ``on_response`` receives when an async request failed in its target."""

    item: str
    error: str
    message_id: str


class BusinessProcess(Host):
    """A host that runs as a Celery task: requests in, replies out, other hosts in between."""

    kind: ClassVar[str] = "process"

    def on_request(self, request: Any) -> Any:
        """Handle one request; required."""
        raise NotImplementedError(f"{type(self).__name__} must implement on_request(request)")

    def on_response(self, request: Any, response: Any) -> Any:
        """Handle one async reply; the return value is passed on to ``on_complete``."""
        return response

    def on_complete(self, request: Any, responses: list[Any]) -> Any:
        """All async replies are in; return this process's reply (default: none)."""
        return None

    def _dispatch(self, envelope: Envelope) -> Any:
        return self.on_request(envelope.payload())
