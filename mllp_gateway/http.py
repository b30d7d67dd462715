"""The HTTP listeners of the gateway: ``HL7HTTPService`` and ``HTTPService`` items.

HTTP/1.1 is spoken with h11 (the protocol state machine uvicorn uses) over the same asyncio
streams, limits, TLS and backpressure as the MLLP listeners, in the same event loop and process.
Per request:

1. read the head (idle connections close after ``idle_timeout``; a request must arrive whole
   within ``read_timeout``); another path gets 404, another method 405 (``Allow: POST``);
2. read the body, counted against ``max_message_size`` (413 and the connection closes) and the
   listener's ``max_bytes_in_flight`` (a sender waits while the budget is spent);
3. store it and answer: the HL7 listener runs the very steps of the MLLP one
   (``GatewayServer.handle``) and answers with the ACK; the generic one answers 202 with the
   message id.

Keep-alive and ``Expect: 100-continue`` work as HTTP/1.1 says; anything h11 cannot parse gets 400
and the connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import h11
from pydantic import ValidationError

from hie.adapters.http import HL7_CONTENT_TYPE, charset_of
from hie.adapters.mllp import Frame
from hie.errors import HIEError, SkipMessage
from hie.hl7 import python_codec
from hie.hosts.http_service import HTTPService, HTTPServiceSettings
from hie.messages import Envelope
from hie.store import SaveRequest
from hie.tasks.decision import describe
from mllp_gateway.listener import Listener
from mllp_gateway.server import OUTCOME, GatewayServer

log = logging.getLogger(__name__)

#: Largest request head (request line and headers) read before answering 431.
MAX_HEAD = 64 * 1024
#: Seconds a 503 asks the sender to wait (``Retry-After``) when a target queue is full.
BUSY_RETRY_AFTER = 5

#: The charset the request's Content-Type names, for the HL7 listener's decoding.
_REQUEST_CHARSET: ContextVar[str | None] = ContextVar("hie_http_charset", default=None)


@dataclass
class Answer:
    """What goes back for one request."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, status: int, text: str, **headers: str) -> Answer:
        """A plain-text answer (errors)."""
        extra = [(k.replace("_", "-"), v) for k, v in headers.items()]
        return cls(status, text.encode("utf-8") + b"\n", headers=extra)

    @classmethod
    def json(cls, status: int, data: dict[str, Any]) -> Answer:
        """A JSON answer."""
        return cls(status, json.dumps(data).encode("utf-8"), "application/json")


class _Refused(Exception):
    """The request ends here with ``answer``; the connection closes when ``close``."""

    def __init__(self, answer: Answer, *, close: bool = False) -> None:
        super().__init__(answer.status)
        self.answer = answer
        self.close = close


class HTTPListener(Listener):
    """HTTP/1.1 over one listener's connections; subclasses answer each body (``answer``)."""

    @property
    def path(self) -> str:
        """The path messages are POSTed to."""
        return str(getattr(self.settings, "path", "/"))

    async def answer(self, body: bytes, content_type: str) -> Answer:
        """Store ``body`` and say how it went."""
        raise NotImplementedError

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: object
    ) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except TimeoutError as exc:
            log.info("%s closing connection from %s: %s", self.service.item_name, peer, exc)
        except h11.RemoteProtocolError as exc:
            # Unparseable HTTP (431 for a head over MAX_HEAD): answer when h11 still lets us.
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                answer = Answer.text(exc.error_status_hint, f"bad request: {exc}")
                with contextlib.suppress(ConnectionError, h11.LocalProtocolError):
                    await self._send(conn, writer, answer, close=True)
                    await self._linger(reader)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass

    async def _exchange(
        self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """One request and its answer; False when the connection is to close."""
        loop = asyncio.get_running_loop()
        if not conn.trailing_data[0]:
            # Between requests the connection may idle; once a request's first bytes arrive,
            # all of it (head and body) must come within read_timeout: a sender trickling a
            # byte at a time cannot hold a connection for ever.
            conn.receive_data(await self._read(reader, self.settings.idle_timeout, "idle"))
        deadline = loop.time() + self.settings.read_timeout
        fed = len(conn.trailing_data[0])
        while (event := conn.next_event()) is h11.NEED_DATA:
            data = await self._read(
                reader, max(0.0, deadline - loop.time()), "request not received in time"
            )
            fed += len(data)
            conn.receive_data(data)
        if not isinstance(event, h11.Request):
            return False  # the client closed (ConnectionClosed) between requests
        held = 0
        try:
            if fed - len(conn.trailing_data[0]) > MAX_HEAD:
                # h11 bounds a head still arriving; one that came whole is measured here.
                raise _Refused(Answer.text(431, "request head over 64 KiB"), close=True)
            body, held = await self._body(conn, reader, writer, event, deadline)
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in event.headers}
            answer = await self._answer_safely(body, headers.get("content-type", ""))
            close = False
        except _Refused as refused:
            answer, close = refused.answer, refused.close
        finally:
            await self.budget.give_back(held)
        await self._send(conn, writer, answer, close=close)
        if close:
            await self._linger(reader)
        return not close and conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _answer_safely(self, body: bytes, content_type: str) -> Answer:
        """``answer``, and a 500 if it fails in a way nobody foresaw: a request always gets an
        answer, and the sender keeps what was not accepted."""
        try:
            return await self.answer(body, content_type)
        except Exception:
            log.exception("%s failed on a %d-byte request", self.service.item_name, len(body))
            return Answer.text(500, "the message could not be processed; send it again")

    async def _linger(self, reader: asyncio.StreamReader) -> None:
        """Read and drop what the client still sends (the rest of a refused body) for a while
        before closing: closing at once would reset the connection under a client still
        sending, and it would never read the answer that says why."""
        left = 4 * self.settings.max_message_size
        deadline = time.monotonic() + self.settings.read_timeout
        while left > 0 and (wait := deadline - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(1 << 16), wait)
            except (TimeoutError, ConnectionError):
                return
            if not data:
                return
            left -= len(data)

    async def _body(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: h11.Request,
        deadline: float,
    ) -> tuple[bytes, int]:
        """The request's body; ``_Refused`` for a wrong path, method or size."""
        target = request.target.decode("latin-1").split("?", 1)[0]
        if target != self.path:
            answer = Answer.text(404, f"no service at {target}; POST to {self.path}")
            raise _Refused(answer, close=True)  # its body, if any, is not read
        if request.method != b"POST":
            method = request.method.decode("latin-1")
            answer = Answer.text(405, f"{method} is not accepted; POST", Allow="POST")
            raise _Refused(answer, close=True)
        limit = self.settings.max_message_size
        length = next((int(v) for k, v in request.headers if k == b"content-length"), None)
        if length is not None and length > limit:
            too_big = f"message of {length} bytes is larger than the limit of {limit} bytes"
            raise _Refused(Answer.text(413, too_big), close=True)
        if conn.client_is_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        chunks: list[bytes] = []
        held = 0
        try:
            while True:
                event = await self._next_event(conn, reader, deadline)
                if isinstance(event, h11.EndOfMessage):
                    return b"".join(chunks), held
                if not isinstance(event, h11.Data):
                    raise h11.RemoteProtocolError("the request ended before its body")
                if held + len(event.data) > limit:
                    too_big = f"message is larger than the limit of {limit} bytes"
                    raise _Refused(Answer.text(413, too_big), close=True)
                try:
                    # Waiting for room in the budget counts against the request's deadline
                    # too: connections each holding part of a body cannot wait on each other
                    # for ever.
                    async with asyncio.timeout_at(deadline):
                        await self.budget.take(len(event.data))
                except TimeoutError:
                    raise TimeoutError("no room for the request's body in time") from None
                held += len(event.data)
                chunks.append(event.data)
        except BaseException:
            await self.budget.give_back(held)
            raise

    async def _next_event(
        self, conn: h11.Connection, reader: asyncio.StreamReader, deadline: float
    ) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            wait = max(0.0, deadline - asyncio.get_running_loop().time())
            conn.receive_data(await self._read(reader, wait, "request not received in time"))

    @staticmethod
    async def _read(reader: asyncio.StreamReader, timeout: float | None, what: str) -> bytes:
        try:
            # asyncio.timeout, not wait_for: no task per read on the hot path.
            async with asyncio.timeout(timeout):
                return await reader.read(1 << 16)
        except TimeoutError:
            raise TimeoutError(what) from None

    async def _send(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        answer: Answer,
        *,
        close: bool = False,
    ) -> None:
        headers = [
            ("Content-Type", answer.content_type),
            ("Content-Length", str(len(answer.body))),
            ("Server", "HIE"),
            *answer.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        out = conn.send(h11.Response(status_code=answer.status, headers=headers))
        out = (out or b"") + (conn.send(h11.Data(data=answer.body)) or b"")
        out += conn.send(h11.EndOfMessage()) or b""
        writer.write(out)
        await writer.drain()


class HL7HTTPServer(HTTPListener, GatewayServer):
    """The listener of one ``HL7HTTPService``: each POSTed body goes through the same steps as
    an MLLP frame; the last ACK is the answer's body."""

    async def answer(self, body: bytes, content_type: str) -> Answer:
        """Store and acknowledge one HL7 message."""
        OUTCOME.set("accepted")
        _REQUEST_CHARSET.set(charset_of(content_type))
        acks = await self._handle_safely(Frame(body, len(body)))
        outcome = OUTCOME.get()
        codec = self._codec(body)
        ack = acks[-1] if acks else b""
        answer = Answer(200, ack, f"{HL7_CONTENT_TYPE}; charset={codec}")
        if outcome == "rejected":
            answer.status = getattr(self.settings, "reject_status", 400)
        elif outcome in ("busy", "not stored"):
            answer.status = 503
            answer.headers.append(("Retry-After", str(BUSY_RETRY_AFTER)))
        elif outcome == "failed":
            answer.status = 500
        return answer

    def _codec(self, payload: bytes) -> str:
        # The Content-Type's charset is the sender's word on it, before MSH-18's.
        named = _REQUEST_CHARSET.get()
        if named and not self.settings.charset:
            try:
                return python_codec(named, self.settings.default_charset)
            except HIEError:
                pass
        return super()._codec(payload)


class HTTPServer(HTTPListener):
    """The listener of one ``HTTPService``: stores each body and answers 202 with its id."""

    settings: HTTPServiceSettings
    service: HTTPService

    async def answer(self, body: bytes, content_type: str) -> Answer:
        """Store one body (text, or the ``body_class`` model) for every target."""
        service = self.service
        charset = charset_of(content_type) or self.settings.default_charset
        try:
            text = body.decode(python_codec(charset, self.settings.default_charset))
        except (UnicodeDecodeError, HIEError) as exc:
            reason = f"the body cannot be read as {charset}: {exc}"
            text = body.decode("utf-8", errors="replace")
            return await self._refuse(text, 400, reason, raw_body=body)
        data: Any = text
        if service.body_model is not None:
            try:
                data = service.body_model.model_validate_json(body)
            except ValidationError as exc:
                reason = f"the body is not a valid {service.body_model.__name__}: {exc}"
                return await self._refuse(text, 400, reason, raw_body=body)
        if service.hooks.hooks or type(service).on_message is not HTTPService.on_message:
            inbound = Envelope.wrap(data, source=service.item_name)
            try:
                data = await asyncio.to_thread(service._receive, data, inbound)
            except SkipMessage as exc:
                if not await self._keep(inbound, "skipped", exc.reason):
                    return Answer.text(503, "message not stored; send it again")
                return Answer.json(202, {"message_id": str(inbound.message_id), "skipped": True})
            except Exception as exc:
                return await self._refuse(data, 422, describe(exc), inbound)
        headers = {"content-type": content_type} if content_type else {}
        envelopes = self.envelopes(data, self.service.item.priority, headers)
        if not await self._room_for(envelopes):
            self.stats.busy += 1
            reason = "a target queue is full; the message was not accepted, send it again later"
            return Answer.text(503, reason, Retry_After=str(BUSY_RETRY_AFTER))
        saves = [
            SaveRequest(e, "queued", event="received", item=e.target, new_session=True)
            for e in envelopes
        ]
        try:
            await self.committer.submit_many_async(saves)
        except HIEError as exc:
            self.stats.errors += 1
            return Answer.text(503, f"message not stored: {exc}; send it again")
        self.stats.acked += 1
        first = envelopes[0]
        return Answer.json(
            202, {"message_id": str(first.message_id), "session_id": str(first.session_id)}
        )

    async def _refuse(
        self,
        data: Any,
        status: int,
        reason: str,
        inbound: Envelope | None = None,
        *,
        raw_body: bytes | None = None,
    ) -> Answer:
        """Keep what was refused as an error (its bytes as they came, when given), with the
        reason, and say why."""
        self.stats.rejected += 1
        envelope = inbound or Envelope.wrap(data, source=self.service.item_name)
        log.warning("%s refused a message: %s", self.service.item_name, reason)
        stored = await self._keep(envelope, "error", reason, raw_body=raw_body)
        body = {"error": reason, "message_id": str(envelope.message_id) if stored else None}
        return Answer.json(status, body)
