"""The TLS context an outbound connection (MLLP or HTTP) opens with."""

from __future__ import annotations

import ssl


def client_context(
    ca: str | None, cert: str | None, key: str | None, *, verify: bool = True
) -> ssl.SSLContext:
    """Trust ``ca`` (default: the system's CAs), present ``cert``/``key`` when given; with
    ``verify`` false, check neither the peer's certificate nor its name (test peers only:
    anyone could stand in for it)."""
    context = ssl.create_default_context(cafile=ca)
    if cert:
        context.load_cert_chain(cert, key)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
