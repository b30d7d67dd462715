"""Tracker: records each hop's status and events in the message store (no store, no record).

One place where the task layer talks to the store, so ``HostTask`` stays thin and the store's
schema can change without touching the tasks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from hie.messages import Envelope
    from hie.store import MessageStore

log = logging.getLogger(__name__)


class Tracker:
    """Writes statuses and events for the messages a process publishes and handles."""

    def __init__(self, store: MessageStore | None) -> None:
        self.store = store

    def queued(self, envelope: Envelope) -> None:
        """A message is about to be published to its target's queue."""
        if self.store is not None:
            self.store.save(envelope, status="queued", item=envelope.target, event="queued")

    def started(self, envelope: Envelope, item: str, attempt: int) -> None:
        """A worker took the message."""
        if self.store is not None:
            self.store.set_status(
                envelope.message_id,
                "in_progress",
                item=item,
                event="started",
                detail=f"attempt {attempt + 1}",
            )

    def completed(
        self,
        envelope: Envelope,
        item: str,
        reply: Envelope | None,
        ms: float,
        *,
        children: list[Envelope] | None = None,
        events: list[tuple[str, str]] | None = None,
    ) -> None:
        """The host handled the message: its status, reply, what it sends on and the delivery
        record, in one transaction (see ``MessageStore.complete_hop``)."""
        if self.store is None:
            return
        from hie.store import NewEvent

        self.store.complete_hop(
            envelope.message_id,
            item,
            duration_ms=ms,
            children=children or [],
            reply=reply,
            events=[
                NewEvent(
                    str(envelope.message_id),
                    e,
                    item=item,
                    detail=d,
                    session_id=str(envelope.session_id),
                )
                for e, d in events or []
            ],
        )

    def failed(self, envelope: Envelope, item: str, error: str, ms: float, *, final: bool) -> None:
        """The host raised; ``final`` when no retry follows."""
        if self.store is None:
            return
        status, event = ("error", "failed") if final else ("queued", "retried")
        self.store.set_status(
            envelope.message_id,
            status,
            item=item,
            event=event,
            error=error,
            duration_ms=ms,
        )

    def suspended(self, envelope: Envelope, item: str, reason: str, ms: float) -> None:
        """The host suspended the message (``Suspend``): kept, not retried, until someone acts."""
        if self.store is not None:
            self.store.set_status(
                envelope.message_id,
                "suspended",
                item=item,
                event="suspended",
                error=reason,
                duration_ms=ms,
            )

    def skipped(self, envelope: Envelope, item: str, reason: str) -> None:
        """A host or hook raised SkipMessage."""
        if self.store is not None:
            self.store.set_status(
                envelope.message_id, "skipped", item=item, event="skipped", detail=reason
            )

    def timed_out(self, request: Envelope) -> None:
        """A synchronous caller gave up waiting; the reply, if it comes, is stored late."""
        if self.store is not None:
            self.store.record_event(
                request.message_id,
                "request_timeout",
                item=request.source,
                detail="caller stopped waiting; a later reply is recorded only",
            )

    def reason_to_skip(self, envelope: Envelope, item: str) -> str | None:
        """Why ``item`` must not handle this message now, or None.

        Already completed by ``item`` (a redelivered or re-published task), or suspended or
        discarded in the store by an operator while its copy waited on the broker.
        """
        if self.store is None:
            return None
        delivered, status = self.store.hop_state(envelope.message_id, item)
        if delivered:
            return "already completed"
        if status is not None and str(status) in ("suspended", "discarded"):
            return f"it is {status}"
        return None

    def possible_duplicate(self, envelope: Envelope, item: str, detail: str) -> None:
        """Flag a message that may already have reached its peer (a redelivered task)."""
        if self.store is not None:
            self.store.mark_possible_duplicate(envelope.message_id, detail, item=item)
