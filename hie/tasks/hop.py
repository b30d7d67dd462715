"""A hop: the messages of one task through one item, recorded together.

A task carries one message or several (``hie.outbox`` packs what is sent to an item at once, up to
its ``batch_size``). For each task:

1. **claim**, one transaction: which messages to skip (the item already completed them, or an
   operator suspended or discarded them) and the others marked ``in_progress`` (one more attempt).
   A business process only reads this (``MessageStore.check``): nothing it does reaches anyone
   before step 3 commits, so its messages are taken in step 3's transaction, one write per hop;
2. each message runs **on its own** through the hooks and the host, in order (hosts do not know
   about batches); a message that fails does not fail the others: it is retried on its own, or
   given up, as ``hie.tasks.decision`` says;
3. what they produced (completions, replies, the messages they send on, events, ACKs, delivery
   records, retries and failures) **commits in one transaction**: at the end of the task, or
   sooner once ``CHECKPOINT`` seconds of work wait to be recorded (so a worker killed mid-batch
   redoes at most that much), and before a FIFO item waits to retry in place;
4. after each commit the outbox **publishes** what was recorded: the children in one broker round
   trip, each retry as a task of its own, due after its delay.

A worker killed before a commit leaves nothing of the uncommitted part: the broker redelivers the
task, the claim skips what was committed, the rest runs again (an operation's copy is flagged as a
possible duplicate). Order holds: a FIFO item retries a failing message in place, holding the ones
behind it; an item ordered by key parks the key (``hie.tasks.ordering``).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hie.errors import Fail, Retry, SkipMessage, Suspend
from hie.hosts.context import CallContext, current_call
from hie.hosts.process import BusinessProcess
from hie.store import HopRecord, Status
from hie.tasks.decision import Ordering, Verdict, decide
from hie.tasks.dispatcher import AWAIT, deferred_marker, failed_marker
from hie.tasks.ordering import PARKED, schedule_resume

if TYPE_CHECKING:
    from hie.messages import Envelope
    from hie.store import Claim
    from hie.tasks.base import ItemRuntime

log = logging.getLogger(__name__)

#: Seconds of work after which a hop records what it has done so far, mid-batch.
CHECKPOINT = 0.05
#: What a message answers when it runs again later (not its final answer).
RETRYING = "hie-retrying"


@dataclass(frozen=True, slots=True)
class Raise:
    """A result the task raises: a synchronous request that failed for good."""

    error: BaseException


class Hop:
    """Runs the messages of one task through ``runtime``'s item (see the module docstring).

    Args:
        runtime: the item's host, hooks and dispatcher in this process.
        first_attempt: when these messages were first tried, for a retry (``failure_timeout``
            counts from it); None: each message's first attempt is now, when its turn comes.
        redelivered: ids of messages whose copy the broker gave out before (never acknowledged:
            the worker died while it ran them).
        resuming: the messages are a parked key's, run by its resume task.
    """

    def __init__(
        self,
        runtime: ItemRuntime,
        *,
        first_attempt: float | None = None,
        redelivered: Collection[str] = (),
        resuming: bool = False,
    ) -> None:
        self.runtime = runtime
        self.item = runtime.item.name
        self.store = runtime.dispatcher.store
        self.outbox = runtime.dispatcher.outbox
        self.first_attempt = first_attempt
        self.redelivered = redelivered
        self.resuming = resuming
        #: Set when the task's one awaited message must run again as the same task (its caller
        #: waits on the task id): (delay in seconds, first attempt).
        self.retry_task: tuple[float, float] | None = None
        self._single = False
        self._records: list[HopRecord] = []
        self._retries: list[tuple[Envelope, float, float]] = []
        self._resumes: list[tuple[str, float]] = []
        self._since = time.monotonic()
        #: Messages run on a read (``MessageStore.check``), taken when recorded: when each began.
        self._unclaimed: dict[str, datetime] = {}

    def run(
        self, envelopes: list[Envelope], on_claimed: Callable[[], None] | None = None
    ) -> list[Any]:
        """Run every message; returns what each one answers (its reply wire, a marker, None,
        or ``RETRYING`` for one that runs again later).

        ``on_claimed`` is called once the claim committed (the messages are recorded as in
        progress).
        """
        host = self.runtime.host  # on_init and on_start on first use in this process
        self._single = len(envelopes) == 1
        # An operation's redelivered copy may already have reached the peer: flag it.
        redelivered = self.redelivered if host.kind == "operation" else ()
        claims = self._check(envelopes) if host.kind == "process" else None
        if claims is None:
            claims = self.store.claim(envelopes, self.item, redelivered=redelivered)
        if on_claimed is not None:
            on_claimed()
        results: list[Any] = []
        running = [m for m, c in claims.items() if c.skip is None]
        # However long an attempt takes, its messages do not look lost to the recovery sweeper.
        with self.runtime.heartbeat.running(running):
            for envelope in envelopes:
                results.append(self._one(envelope, claims[str(envelope.message_id)]))
                if time.monotonic() - self._since >= CHECKPOINT:
                    self._checkpoint()
            self._checkpoint()
        return results

    def _check(self, envelopes: list[Envelope]) -> dict[str, Claim] | None:
        """A business process's claim, as a read: the messages it sends on are published only
        after the commit that records them, so the messages are taken in that same transaction
        (``record_hops(claim=...)``): one write per hop instead of two. A request it makes on
        the way (``send_request_sync``) goes out as it would after a claim."""
        claims = self.store.check(envelopes, self.item)
        if claims is not None:
            began = datetime.now(UTC)
            self._unclaimed = {m: began for m, c in claims.items() if c.skip is None}
        return claims

    # -- one message ----------------------------------------------------------------------------
    def _one(self, envelope: Envelope, claim: Claim) -> Any:
        if claim.skip is not None:
            # A redelivered task whose first run completed (never deliver twice), or a message an
            # operator suspended or discarded while its copy waited on the broker.
            log.info("message %s not handled by %s: %s", envelope.message_id, self.item, claim.skip)
            return None
        first = self.first_attempt or time.time()
        hold, key = self.runtime.hold, envelope.key
        if hold is not None and key and not self.resuming and hold.is_held(key):
            # An earlier message of this key is failing: wait behind it, keep the key's order.
            hold.append(key, envelope.to_wire(), first)
            detail = f"waits behind an earlier message with key {key!r}"
            self._records.append(self._record(envelope, None, 0.0, Status.QUEUED, "held", detail))
            return PARKED
        while True:
            call = CallContext(
                envelope=envelope,
                phase="request" if isinstance(self.runtime.host, BusinessProcess) else "message",
                in_task=True,
            )
            started = time.perf_counter()
            try:
                reply = self._attempt(envelope, call)
            except Exception as exc:
                verdict = decide(
                    exc,
                    elapsed=time.time() - first,
                    failure_timeout=self.runtime.host.settings.failure_timeout,
                    retry_interval=self.runtime.host.settings.retry_interval,
                    retry_on_error=self.runtime.host.retry_on_error,
                    ordering=self._ordering(envelope),
                )
                if (
                    verdict.action == "retry"
                    and verdict.how == "in_place"
                    and self._retry_in_place(envelope, call, started, verdict)
                ):
                    continue
                return self._given_up(envelope, call, started, verdict, exc, first)
            return self._completed(envelope, call, reply, started)

    def _ordering(self, envelope: Envelope) -> Ordering:
        if self.runtime.item.fifo:
            return "fifo"
        if self.runtime.hold is not None and envelope.key:
            return "keyed"
        return "none"

    def _attempt(self, envelope: Envelope, call: CallContext) -> Any:
        """One attempt: circuit breaker and throttle, then the hooks around the host."""
        runtime = self.runtime
        breaker = runtime.breaker
        if breaker is not None and (wait := breaker.wait_time()) > 0:
            raise Retry(f"circuit open after {breaker.failures} failures in a row", delay=wait)
        if runtime.throttle is not None:
            runtime.throttle.wait()
        host = runtime.host
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
        return outcome.reply

    def _retry_in_place(
        self, envelope: Envelope, call: CallContext, started: float, verdict: Verdict
    ) -> bool:
        """FIFO: record the failure and what came before, wait, and claim the message again.

        False when the message must not run again after all (an operator set it aside).
        """
        self._records.append(
            self._record(envelope, call, started, Status.QUEUED, "retried", error=verdict.reason)
        )
        self._checkpoint()
        # Retried in place: requeueing would let later messages overtake this one.
        time.sleep(verdict.delay)
        claim = self.store.claim([envelope], self.item)[str(envelope.message_id)]
        if claim.skip is not None:
            log.info("message %s not retried by %s: %s", envelope.message_id, self.item, claim.skip)
            return False
        return True

    def _completed(self, envelope: Envelope, call: CallContext, reply: Any, started: float) -> Any:
        value: Any = None
        reply_env = None
        if call.pending:
            # on_request sent async requests: their replies come to on_response / on_complete.
            token = self.runtime.dispatcher.send_with_responses(self.item, envelope, call.pending)
            value = deferred_marker(token)
        else:
            reply_env = envelope.reply(reply, source=self.item) if reply is not None else None
            if call.deferred_token is not None:
                value = deferred_marker(call.deferred_token)
            elif reply_env is not None:
                value = reply_env.to_wire()
        self._records.append(
            self._record(
                envelope, call, started, Status.COMPLETED, "completed", delivered=True,
                children=tuple(call.outbox), reply=reply_env,
            )
        )  # fmt: skip
        return value

    def _given_up(
        self,
        envelope: Envelope,
        call: CallContext,
        started: float,
        verdict: Verdict,
        error: BaseException,
        first: float,
    ) -> Any:
        """Record a message that did not complete: skipped, retried later, suspended or failed."""
        awaited = envelope.headers.get(AWAIT)
        mid = str(envelope.message_id)
        if verdict.action == "skip":
            self._records.append(
                self._record(envelope, call, started, Status.SKIPPED, "skipped", verdict.reason)
            )
            return None
        if verdict.action == "retry":
            self._records.append(
                self._record(
                    envelope, call, started, Status.QUEUED, "retried", error=verdict.reason
                )
            )
            return self._schedule_retry(envelope, verdict, awaited, first)
        if verdict.action == "suspend":
            self._records.append(
                self._record(
                    envelope, call, started, Status.SUSPENDED, "suspended", error=verdict.reason
                )
            )
            log.warning("item %s suspended message %s: %s", self.item, mid, verdict.reason)
            if awaited == "async":
                # The caller's on_response must run (with an ErrorResponse) so its chord joins.
                return failed_marker(self.item, mid, f"suspended: {verdict.reason}")
            return None
        self._records.append(
            self._record(envelope, call, started, Status.ERROR, "failed", error=verdict.reason)
        )
        log.error("item %s failed message %s: %s", self.item, mid, verdict.reason)
        if awaited == "async":
            return failed_marker(self.item, mid, verdict.reason)
        return Raise(error) if awaited == "sync" else None

    def _schedule_retry(
        self, envelope: Envelope, verdict: Verdict, awaited: str | None, first: float
    ) -> Any:
        if verdict.how == "park" and envelope.key is not None and self.runtime.hold is not None:
            if not self.resuming:
                self.runtime.hold.append(envelope.key, envelope.to_wire(), first)
            self._resumes.append((envelope.key, verdict.delay))
            return PARKED
        if awaited is not None and self._single:
            # Its caller waits on this task's id: the task itself runs again (Celery's retry).
            self.retry_task = (verdict.delay, first)
        else:
            self._retries.append((envelope, verdict.delay, first))
        return RETRYING

    def _record(
        self,
        envelope: Envelope,
        call: CallContext | None,
        started: float,
        status: Status,
        event: str,
        detail: str | None = None,
        *,
        error: str | None = None,
        delivered: bool = False,
        children: tuple[Envelope, ...] = (),
        reply: Envelope | None = None,
    ) -> HopRecord:
        return HopRecord(
            message_id=str(envelope.message_id),
            session_id=str(envelope.session_id),
            item=self.item,
            status=status,
            event=event,
            detail=detail,
            error=error,
            duration_ms=(time.perf_counter() - started) * 1000 if started else None,
            delivered=delivered,
            children=children,
            reply=reply,
            events=tuple(call.events) if call else (),
            ack=call.ack if call else None,
            possible_duplicate=call.possible_duplicate if call else None,
        )

    # -- recording and publishing ---------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Commit what the hop has done so far in one transaction, then publish it."""
        self._since = time.monotonic()
        if not self._records:
            return
        records, self._records = self._records, []
        children = [c for r in records for c in r.children]
        # Backpressure before the commit: hold while a target is full (the heartbeat keeps the
        # batch's messages from looking lost meanwhile).
        self.outbox.backpressure.wait_for_room(children)
        claim = {r.message_id: b for r in records if (b := self._unclaimed.pop(r.message_id, None))}
        dropped = self.store.record_hops(records, claim=claim)
        retries, self._retries = self._retries, []
        resumes, self._resumes = self._resumes, []
        if dropped:
            log.info(
                "%s: set aside or completed meanwhile, not recorded at %s",
                sorted(dropped),
                self.item,
            )
            children = [c for r in records if r.message_id not in dropped for c in r.children]
            retries = [r for r in retries if str(r[0].message_id) not in dropped]
        self.outbox.backpressure.added(children)
        try:
            self.outbox.publish(children)
            for envelope, delay, first in retries:
                self.outbox.publish([envelope], countdown=delay, first_attempt=first)
            for key, delay in resumes:
                runtime = self.runtime
                queue = runtime.dispatcher.queue(self.item)
                schedule_resume(runtime.dispatcher.app, queue, runtime.item.partitions, key, delay)
        except Exception as exc:
            # Stored as queued: the recovery sweeper publishes them again.
            log.error("%s cannot publish what it recorded now: %r", self.item, exc)
