"""HTTP out: ``HTTPOperation`` (any body, IRIS ``EnsLib.HTTP.GenericOperation``) and
``HL7HTTPOperation`` (HL7 v2, its ACK in the answer; IRIS ``EnsLib.HL7.Operation.HTTPOperation``).

What an answer means:

- ``HTTPOperation``: 2xx is delivered and the answer's body is the reply; 408 and 429 are retried
  after the ``Retry-After`` the peer gave (else ``retry_interval``); any other 4xx fails the
  message at once (sending the same request again would get the same answer); 5xx and
  connection errors are retried per ``retry_interval`` until ``failure_timeout``. A peer's
  ``Retry-After`` is honoured up to ``MAX_RETRY_AFTER`` (an ordered item waits it out in place).
- ``HL7HTTPOperation``: a 2xx answer's body is the ACK, judged by ``reply_code_actions`` exactly
  as ``HL7TCPOperation`` judges one that came over MLLP, and so is the ACK of a 4xx answer that
  carries one (a receiver's AR); any other status is an error retried per ``retry_interval`` /
  ``failure_timeout``.

The bytes of an HL7 message are sent as stored, in its own charset (or ``charset``), never
re-serialised.
"""

from __future__ import annotations

import json
import logging
import ssl
from typing import Any, ClassVar
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator

from hie.adapters.http import HL7_CONTENT_TYPE, HTTPClient, HTTPReply
from hie.adapters.tls import client_context
from hie.errors import ConfigError, DeliveryError, Fail, Retry
from hie.hl7 import HL7Message
from hie.hosts.base import ItemSettings
from hie.hosts.hl7_operation import HL7Operation, HL7OperationSettings
from hie.hosts.operation import BusinessOperation

log = logging.getLogger(__name__)

#: Longest wait a peer's ``Retry-After`` may ask for (seconds).
MAX_RETRY_AFTER = 300.0


class HTTPClientSettings(ItemSettings):
    """Where and how an HTTP operation sends: the URL (or IRIS's server, port and path), headers,
    timeouts and TLS."""

    #: Full URL (``https://lab.example.org/hl7``); or give ``host``, ``port`` and ``path``.
    url: str = ""
    #: IRIS HTTPServer, HTTPPort, URL: the parts of ``url`` when it is not given.
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    path: str = "/"
    method: str = "POST"
    #: Extra request headers (``Authorization``, ``X-Api-Key`` ...).
    headers: dict[str, str] = Field(default_factory=dict)
    #: Content-Type of the body; empty: chosen from the body (JSON, HL7 or text).
    content_type: str = ""
    #: Seconds to wait for the answer once the request is sent (IRIS ResponseTimeout).
    timeout: float = Field(default=30.0, gt=0)
    #: Seconds to open the connection (IRIS ConnectTimeout).
    connect_timeout: float = Field(default=5.0, gt=0)
    #: Largest answer read (bytes); a larger one is an error.
    max_response_size: int = Field(default=4 << 20, gt=0)
    #: TLS: ``tls_ca`` the CA that signed the peer's certificate (default: the system's);
    #: ``tls_cert``/``tls_key`` this side's certificate for peers that want one; ``tls_verify:
    #: false`` skips checking the peer (test peers only: anyone could stand in for it).
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_verify: bool = True

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        method = value.strip().upper()
        if method not in {"POST", "PUT", "PATCH", "DELETE", "GET"}:
            raise ValueError(f"method {value!r} is not one of POST, PUT, PATCH, DELETE, GET")
        return method

    @model_validator(mode="after")
    def _full_url(self) -> HTTPClientSettings:
        if not self.url:
            if not self.host:
                raise ValueError("give url (http://host:port/path), or host, port and path")
            scheme = "https" if self.tls_ca or self.tls_cert else "http"
            port = f":{self.port}" if self.port else ""
            path = self.path if self.path.startswith("/") else f"/{self.path}"
            self.url = f"{scheme}://{self.host}{port}{path}"
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url {self.url!r} is not an http:// or https:// URL")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context (https URLs), or None."""
        if urlsplit(self.url).scheme != "https":
            return None
        return client_context(self.tls_ca, self.tls_cert, self.tls_key, verify=self.tls_verify)

    def client(self, pool_size: int) -> HTTPClient:
        """An ``HTTPClient`` with these timeouts and TLS."""
        return HTTPClient(
            connect_timeout=self.connect_timeout,
            read_timeout=self.timeout,
            ssl_context=self.ssl_context(),
            max_response_size=self.max_response_size,
            pool_size=pool_size,
        )


class _HTTPSender(BusinessOperation):
    """What both HTTP operations share: one pooled client per worker process, and the
    retry decision for answers that are not a success."""

    settings: HTTPClientSettings
    _http: HTTPClient | None = None

    @property
    def peer(self) -> str:
        """The URL messages go to."""
        return self.settings.url

    @property
    def http(self) -> HTTPClient:
        """This process's client, made on first use (after any fork)."""
        if self._http is None:
            self._http = self.settings.client(pool_size=max(4, self.item.pool_size))
        return self._http

    def on_init(self) -> None:
        """Make the client now, so a wrong TLS file stops the worker at start, named, instead
        of failing every message."""
        super().on_init()
        try:
            self._http = self.settings.client(pool_size=max(4, self.item.pool_size))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"item {self.item_name!r}: TLS files: {exc}") from exc

    def on_tear_down(self) -> None:
        """Close the pooled connections."""
        if self._http is not None:
            self._http.close()
            self._http = None

    def post(self, body: bytes | None, content_type: str) -> HTTPReply:
        """Send ``body``; record the status on the message."""
        headers = {"Content-Type": self.settings.content_type or content_type}
        headers.update(self.settings.headers)
        try:
            reply = self.http.request(self.settings.method, self.settings.url, body, headers)
        except DeliveryError as exc:
            self.trail.event("http", f"{self.settings.method} {self.peer}: {exc}")
            raise
        self.trail.event("http", f"{self.settings.method} {self.peer}: {reply.status}")
        return reply

    def retry_after(self, reply: HTTPReply) -> Retry | DeliveryError:
        """The error to raise for a status worth retrying: ``Retry`` with the peer's
        ``Retry-After`` when it gave one, else a ``DeliveryError`` (``retry_interval``)."""
        reason = f"{self.settings.method} {self.peer} answered {reply.status}: {_excerpt(reply)}"
        delay = reply.retry_after()
        if delay is not None:
            # A peer's word, capped: an ordered item sleeps it, holding its whole queue.
            return Retry(reason, delay=min(delay, MAX_RETRY_AFTER))
        return DeliveryError(reason)


def _with_charset(content_type: str, charset: str) -> str:
    """``content_type`` with its charset parameter set to ``charset``."""
    media, *params = (p.strip() for p in content_type.split(";"))
    kept = [p for p in params if p and not p.lower().startswith("charset")]
    return "; ".join([media, *kept, f"charset={charset}"])


def _excerpt(reply: HTTPReply) -> str:
    text = reply.text().strip().replace("\r", " ").replace("\n", " ")
    return text[:200] or "(no body)"


class HTTPOperation(_HTTPSender):
    """Sends each message's body over HTTP (IRIS ``EnsLib.HTTP.GenericOperation``).

    The body goes as JSON for pydantic models (FHIR resources as FHIR JSON), dicts and lists;
    HL7 messages as ER7 (``x-application/hl7-v2+er7``); text as ``text/plain``. The reply is the
    answer's body as text (None when empty).
    """

    Settings: ClassVar[type[ItemSettings]] = HTTPClientSettings

    def on_message(self, request: Any) -> Any:
        """Send ``request``; the answer's body is the reply."""
        body, content_type = encode_request_body(request)
        if isinstance(request, str) and self.current is not None:
            # Text that came in over HTTP goes out as what it was (JSON, XML ...), in the
            # UTF-8 it is encoded in now, whatever charset it arrived in.
            received = self.current.headers.get("content-type")
            if received:
                content_type = _with_charset(received, "utf-8")
        reply = self.post(body, content_type)
        if reply.ok:
            return reply.text() or None
        if reply.status in (408, 429) or reply.status >= 500:
            raise self.retry_after(reply)
        raise Fail(f"{self.settings.method} {self.peer} answered {reply.status}: {_excerpt(reply)}")


def encode_request_body(body: Any) -> tuple[bytes | None, str]:
    """``(bytes, Content-Type)`` for a message body."""
    if body is None:
        return None, "text/plain; charset=utf-8"
    if isinstance(body, HL7Message):
        return body.encode(), f"{HL7_CONTENT_TYPE}; charset={body.codec}"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    if isinstance(body, BaseModel):
        if type(body).__module__.startswith("fhir.resources"):
            from hie.fhir import fhir_json

            return fhir_json(body).encode("utf-8"), "application/fhir+json; charset=utf-8"
        return body.model_dump_json().encode("utf-8"), "application/json"
    if isinstance(body, dict | list):
        return json.dumps(body).encode("utf-8"), "application/json"
    raise ConfigError(f"HTTPOperation cannot send a {type(body).__name__} body")


class HL7HTTPOperationSettings(HTTPClientSettings, HL7OperationSettings):
    """An HTTP operation for HL7 v2: the HTTP settings plus how its ACKs are judged."""


def _carries_ack(reply: HTTPReply) -> bool:
    return reply.body.startswith(b"MSH") and b"\rMSA|" in reply.body


class HL7HTTPOperation(_HTTPSender, HL7Operation):
    """POSTs each HL7 message and applies ``reply_code_actions`` to the ACK in the answer."""

    Settings: ClassVar[type[ItemSettings]] = HL7HTTPOperationSettings
    settings: HL7HTTPOperationSettings

    def on_message(self, request: Any) -> Any:
        """Send ``request``; the reply is the ACK the answer carries."""
        msg = request if isinstance(request, HL7Message) else HL7Message(str(request))
        payload = msg.encode(self.settings.charset)
        codec = self.settings.charset or msg.codec
        try:
            reply = self.post(payload, f"{HL7_CONTENT_TYPE}; charset={codec}")
        except DeliveryError as exc:
            self.unanswered(exc, msg)
            return None
        refused = 400 <= reply.status < 500 and reply.status not in (408, 429)
        if reply.ok or (refused and _carries_ack(reply)):
            # A receiver that refuses a message with 4xx and an AR/AE says why in the ACK: the
            # reply code actions judge it, as over MLLP.
            return self.acknowledged(reply.body, msg)
        raise self.retry_after(reply)
