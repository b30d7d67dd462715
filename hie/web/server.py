"""Running the viewer under uvicorn, with the access log that carries no PHI."""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Sequence

from starlette.types import ASGIApp

log = logging.getLogger("hie.web")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``: only this machine can connect."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def reachable_names(host: str, extra: Sequence[str] = ()) -> list[str]:
    """The names a viewer bound to ``host`` may be reached by, besides loopback's.

    A specific address is one of them. Bound to every address (``0.0.0.0``, ``::``), so is this
    machine's own name (``hostname``, and its fully qualified form), as a user on the network
    types it; other names (a DNS alias, a proxy's) come from ``--allowed-host``.
    """
    names = list(extra)
    if host in ("0.0.0.0", "::", ""):
        names += [socket.gethostname(), socket.getfqdn()]
    elif not is_loopback(host):
        names.append(host)
    return list(dict.fromkeys(n for n in names if n))


def serve(
    app: ASGIApp,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    tls_cert: str | None = None,
    tls_key: str | None = None,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, over TLS when ``tls_cert`` is given.

    uvicorn's own access log is off: it writes the query string, and a search URL holds patient
    identifiers (``field=PID-3=...``). ``hie.web.app.AccessLog`` logs the path only.
    """
    import uvicorn

    scheme = "https" if tls_cert else "http"
    log.info("viewer on %s://%s:%d/", scheme, host, port)
    uvicorn.run(
        app,
        host=host,
        port=port,
        access_log=False,
        log_config=None,
        proxy_headers=False,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
    )
