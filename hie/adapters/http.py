"""HTTP out: the blocking client every HTTP operation sends through (urllib3 underneath).

One ``HTTPClient`` per operation instance (that is, per worker process); urllib3's pool is
thread-safe and keeps connections alive between messages, so a threads pool shares it.

Errors are ``DeliveryError`` subclasses, split by whether the request may have reached the peer:
``PeerUnreachableError`` when no connection was made (nothing was sent: a plain retry), and
``ConnectionLostError`` when the connection broke or timed out after the request went out (the
peer may have it already: a retry may deliver it twice). Any answer, whatever its status, is an
``HTTPReply``: what a status means is the operation's decision.
"""

from __future__ import annotations

import email.utils
import ssl
import time
from dataclasses import dataclass, field

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
)

from hie.errors import ConnectionLostError, DeliveryError, PeerUnreachableError

#: The media type of HL7 v2 ER7 over HTTP (IRIS's and most receivers').
HL7_CONTENT_TYPE = "x-application/hl7-v2+er7"


def charset_of(content_type: str) -> str | None:
    """The charset a Content-Type names, or None."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return None


@dataclass(frozen=True)
class HTTPReply:
    """The peer's answer: status, headers (names lower-case) and body."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300

    def charset(self, default: str = "utf-8") -> str:
        """The charset the Content-Type names, else ``default``."""
        return charset_of(self.headers.get("content-type", "")) or default

    def text(self, default_charset: str = "utf-8") -> str:
        """The body decoded with its charset (undecodable bytes replaced)."""
        try:
            return self.body.decode(self.charset(default_charset), errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode(default_charset, errors="replace")

    def retry_after(self, now: float | None = None) -> float | None:
        """Seconds the peer asked to wait (``Retry-After``: seconds or an HTTP date), or None."""
        value = self.headers.get("retry-after", "").strip()
        if not value:
            return None
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - (time.time() if now is None else now))


class HTTPClient:
    """Sends requests with fixed timeouts and TLS; never retries or follows redirects itself
    (the operation decides what to do, so a retry is recorded and counted)."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        read_timeout: float,
        ssl_context: ssl.SSLContext | None = None,
        max_response_size: int = 1 << 20,
        pool_size: int = 4,
    ) -> None:
        self.max_response_size = max_response_size
        self.pool = urllib3.PoolManager(
            num_pools=4,
            maxsize=pool_size,
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            retries=False,
            ssl_context=ssl_context,
        )

    def request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str]
    ) -> HTTPReply:
        """One request; the reply whatever its status, or a ``DeliveryError``."""
        try:
            response = self.pool.request(
                method,
                url,
                body=body,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
            )
        except (NewConnectionError, ConnectTimeoutError, NameResolutionError) as exc:
            raise PeerUnreachableError(f"cannot connect to {url}: {exc}") from exc
        except MaxRetryError as exc:  # urllib3 wraps connection errors even with retries=False
            if isinstance(exc.reason, NewConnectionError | ConnectTimeoutError):
                raise PeerUnreachableError(f"cannot connect to {url}: {exc.reason}") from exc
            raise ConnectionLostError(f"{method} {url}: {exc.reason}") from exc
        except HTTPError as exc:
            raise ConnectionLostError(f"{method} {url}: no answer: {exc}") from exc
        try:
            data = response.read(self.max_response_size + 1, decode_content=True)
        except HTTPError as exc:
            response.close()
            raise ConnectionLostError(f"{method} {url}: the answer broke off: {exc}") from exc
        if len(data) > self.max_response_size:
            response.close()  # the rest is still on the wire: this connection cannot be reused
            raise DeliveryError(
                f"{method} {url}: the answer is larger than max_response_size "
                f"({self.max_response_size} bytes)"
            )
        response.release_conn()
        headers = {k.lower(): v for k, v in response.headers.items()}
        return HTTPReply(response.status, data, headers)

    def close(self) -> None:
        """Close every pooled connection."""
        self.pool.clear()
