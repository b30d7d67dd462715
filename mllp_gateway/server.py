"""The MLLP listener of one HL7TCPService item: frame, store, enqueue, then ACK or NAK.

Per connection, messages are handled one after another in the order they arrived. Per message:

1. read one MLLP frame (oversize frames are skipped without holding them in memory: AR);
2. decode it (item charset, else MSH-18, else the default) and read the MSH;
3. give it ids and a session, one envelope per target, wait for room in the targets' queues
   (backpressure), and hand them to the group committer, whose thread commits them to the store
   (synced to disk): **nothing is acknowledged before it is stored**, and the event loop never
   blocks on the store or the broker;
4. answer per ``ack_mode``; meanwhile the committer publishes what it committed (packed with
   whatever else was committed with it, one broker round trip; if the broker does not answer,
   the messages wait in the store as queued and the recovery sweeper publishes them), and the
   ACK's own record rides along in its next batch.
   A malformed message is stored with status error and gets AR with an ERR segment naming the
   problem.

With ``processes: N`` on the item, N gateway processes listen on the same port (``SO_REUSEPORT``:
the kernel spreads new connections over them), each with its own committer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING

from hie.adapters.mllp import Frame, MLLPFrameReader, frame
from hie.errors import HIEError, MLLPFramingError, MLLPTimeoutError, SkipMessage
from hie.hl7 import (
    HL7Message,
    build_ack,
    build_nak_for_unreadable,
    python_codec,
    sniff_charset,
    unreadable_charset,
)
from hie.hosts.hl7_tcp import HL7TCPService, HL7TCPServiceSettings
from hie.messages import BODY_TEXT, Envelope
from hie.store import SaveRequest
from hie.tasks.decision import describe
from mllp_gateway.acks import AckPlan, plan_acks, wait_for_session
from mllp_gateway.listener import Listener

if TYPE_CHECKING:
    from hie.outbox import Outbox
    from hie.store import GroupCommitter, MessageStore

log = logging.getLogger(__name__)

#: How the message in hand was answered, for listeners whose protocol says more than the ACK
#: (HTTP status codes): ``accepted`` (also skipped), ``rejected`` (not HL7: AR), ``refused``
#: (``on_message`` or a hook raised: AE), ``busy`` (a target queue full), ``not stored``, or
#: ``failed`` (an unforeseen error). Set per connection task, read right after ``handle``.
OUTCOME: ContextVar[str] = ContextVar("hie_gateway_outcome", default="accepted")


class GatewayServer(Listener):
    """An asyncio MLLP server for one ``HL7TCPService`` item."""

    settings: HL7TCPServiceSettings
    service: HL7TCPService

    def __init__(
        self,
        service: HL7TCPService,
        *,
        store: MessageStore,
        committer: GroupCommitter,
        outbox: Outbox,
    ) -> None:
        super().__init__(service, store=store, committer=committer, outbox=outbox)
        #: Hooks, or an ``on_message`` of a subclass, run per message off the event loop;
        #: with neither the gateway makes no call (and no thread hop) for them at all.
        self._per_message = bool(service.hooks.hooks) or (
            type(service).on_message is not HL7TCPService.on_message
        )

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        """One accepted connection: MLLP frames in, ACK frames out, until it closes."""
        frames = MLLPFrameReader(
            reader,
            max_size=self.settings.max_message_size,
            idle_timeout=self.settings.idle_timeout,
            frame_timeout=self.settings.read_timeout,
            budget=self.budget,
        )
        try:
            while (item := await frames.read()) is not None:
                for reply in await self._handle_safely(item):
                    writer.write(frame(reply))
                await writer.drain()
        except MLLPTimeoutError as exc:
            log.info("%s closing connection from %s: %s", self.service.item_name, peer, exc)
        except MLLPFramingError as exc:
            # A frame cut off by the peer was never ACKed: the sender still owns it.
            log.warning("%s: %s (from %s)", self.service.item_name, exc, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            await frames.close()

    # -- one message ----------------------------------------------------------------------------
    async def _handle_safely(self, item: Frame) -> list[bytes]:
        """``handle``, and an AR if it fails in a way nobody foresaw: input never ends the
        connection's handler, and the sender keeps what was not accepted."""
        try:
            return await self.handle(item)
        except Exception:
            log.exception("%s failed on a %d-byte frame", self.service.item_name, item.size)
            reason = "the message could not be processed (see the gateway log); send it again"
        try:
            answer = [await self._reject(item.payload, "utf-8", reason)]
            OUTCOME.set("failed")
            return answer
        except Exception:  # no answer at all: the sender times out and sends it again
            log.exception("%s cannot answer a %d-byte frame", self.service.item_name, item.size)
            return []

    async def handle(self, item: Frame) -> list[bytes]:
        """Everything for one frame; returns the ACK frames' payloads to send back (maybe none)."""
        started = time.perf_counter()
        self.stats.received += 1
        codec = self._codec(item.payload)
        if item.oversize:
            return [await self._reject_oversize(item, codec)]
        if not self.settings.charset and (
            unreadable := unreadable_charset(sniff_charset(item.payload))
        ):
            return [await self._reject(item.payload, codec, unreadable)]
        try:
            text = item.payload.decode(codec)
            message = HL7Message(text)
            message.get("MSH-9")  # read the MSH now: a broken header is rejected here
        except (HIEError, UnicodeDecodeError, LookupError) as exc:
            return [await self._reject(item.payload, codec, str(exc))]
        if (count := len(message.segments("MSH"))) > 1:
            # Answering AA once would acknowledge messages nobody routed.
            reason = (
                f"the frame holds {count} messages (MSH segments); MLLP carries one message per "
                "frame: send each in its own frame (batches go as FHS/BHS files)"
            )
            return [await self._reject(item.payload, codec, reason)]
        routed = message
        if self._per_message:
            outcome = await self._on_message(message, codec)
            if not isinstance(outcome, HL7Message):
                return outcome  # skipped or refused: stored as such, these are the answers
            routed = outcome
        envelopes = self._envelopes(routed)
        if not await self._room_for(envelopes):
            self.stats.busy += 1
            OUTCOME.set("busy")
            code = "CE" if self.settings.use_commit_codes else "AE"
            reason = "a target queue is full; the message was not accepted, send it again later"
            return [build_ack(message, code, error=reason).encode(codec)]
        plan = plan_acks(message, self.settings.ack_mode, self.settings.use_commit_codes)
        # The accept ACK goes once this commits: recorded with the message, in its transaction.
        accept = None if plan.accept_code is None else (plan.accept_code, None)
        saves = [
            SaveRequest(
                e,
                "queued",
                event="received",
                item=e.target,
                ack=accept if i == 0 else None,
                new_session=True,
            )
            for i, e in enumerate(envelopes)
        ]
        try:
            await self.committer.submit_many_async(saves)
        except HIEError as exc:
            # Not stored, so not accepted: the sender keeps it and sends again.
            self.stats.errors += 1
            OUTCOME.set("not stored")
            log.error(
                "%s cannot store message %s: %s", self.service.item_name, message.control_id, exc
            )
            return [build_ack(message, "AE", error=f"message not stored: {exc}").encode(codec)]
        replies = await self._acks(message, envelopes[0], plan, codec, accept_recorded=True)
        self.stats.acked += 1
        self.stats.ack_seconds.append(time.perf_counter() - started)
        if len(self.stats.ack_seconds) > 10_000:
            del self.stats.ack_seconds[:5_000]
        return replies

    async def _on_message(self, message: HL7Message, codec: str) -> HL7Message | list[bytes]:
        """The item's hooks and ``on_message``: the message to send on, or the answers.

        They run in a thread (user code may block). A ``SkipMessage`` keeps the message as
        skipped and acknowledges it as usual; any other error keeps it as an error and answers
        AE with the reason, so the sender still owns it.
        """
        service = self.service
        inbound = Envelope.wrap(message, source=service.item_name)
        try:
            routed = await asyncio.to_thread(service._receive, message, inbound)
            if not isinstance(routed, HL7Message):
                raise TypeError(
                    f"{type(service).__name__}.on_message returned {type(routed).__name__}; "
                    "it must return the HL7Message to send on (or raise SkipMessage)"
                )
            return routed
        except SkipMessage as exc:
            log.info("%s skipped message %s: %s", service.item_name, message.control_id, exc)
            if not await self._keep(inbound, "skipped", exc.reason):
                OUTCOME.set("not stored")
                return [build_ack(message, "AE", error="message not stored").encode(codec)]
            plan = plan_acks(message, self.settings.ack_mode, self.settings.use_commit_codes)
            return await self._acks(message, inbound, plan, codec)
        except Exception as exc:
            reason = describe(exc)
            self.stats.errors += 1
            OUTCOME.set("refused")
            log.error("%s refused message %s: %s", service.item_name, message.control_id, reason)
            await self._keep(inbound, "error", reason)
            self._log_ack(inbound, "AE", reason)
            return [build_ack(message, "AE", error=reason).encode(codec)]

    def _codec(self, payload: bytes) -> str:
        s = self.settings
        if s.charset:
            return python_codec(s.charset, s.default_charset)
        return python_codec(sniff_charset(payload), s.default_charset)

    def _envelopes(self, message: HL7Message) -> list[Envelope]:
        """One envelope per target, all in one new session (none: one without a target)."""
        return self.envelopes(message, self.service.message_priority(message))

    async def _acks(
        self,
        message: HL7Message,
        envelope: Envelope,
        plan: AckPlan,
        codec: str,
        *,
        accept_recorded: bool = False,
    ) -> list[bytes]:
        replies: list[bytes] = []
        if plan.accept_code is not None:
            replies.append(build_ack(message, plan.accept_code).encode(codec))
            if not accept_recorded:
                self._log_ack(envelope, plan.accept_code, None)
        if plan.application:
            code, text = await asyncio.to_thread(
                wait_for_session, self.store, envelope.session_id, self.settings.app_ack_timeout
            )
            if plan.wants_application(code):
                error = text if code != "AA" else None
                replies.append(build_ack(message, code, text=text, error=error).encode(codec))
                self._log_ack(envelope, code, text)
        return replies

    def _log_ack(self, envelope: Envelope, code: str, text: str | None) -> None:
        self.committer.record_ack(envelope, code, text, item=self.service.item_name)

    async def _reject(self, payload: bytes, codec: str, reason: str) -> bytes:
        """Store what could not be read (status error) and answer AR with the reason."""
        self.stats.rejected += 1
        OUTCOME.set("rejected")
        text = payload.decode(codec, errors="replace")
        envelope = Envelope(body_type=BODY_TEXT, body=text, source=self.service.item_name)
        try:
            await self.committer.submit_async(
                envelope,
                status="error",
                item=self.service.item_name,
                event="rejected",
                raw_body=payload,
            )
            await asyncio.to_thread(
                self.store.set_status,
                envelope.message_id,
                "error",
                error=reason,
                item=self.service.item_name,
                event="rejected",
            )
        except HIEError as exc:
            log.error("cannot store a rejected message: %s", exc)
        nak = build_nak_for_unreadable(text, reason)
        self._log_ack(envelope, "AR", reason)
        try:
            return nak.encode(codec)
        except HIEError:  # what was recovered of the MSH does not fit the sender's codec
            return nak.to_er7().encode(codec, errors="replace")

    async def _reject_oversize(self, item: Frame, codec: str) -> bytes:
        limit = self.settings.max_message_size
        reason = f"message of {item.size} bytes is larger than the limit of {limit} bytes"
        return await self._reject(item.payload, codec, reason)
