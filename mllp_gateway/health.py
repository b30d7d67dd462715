"""The gateway's HTTP side: ``/metrics`` (Prometheus), ``/health/live`` and ``/health/ready``.

Live means the process answers. Ready means the broker and the store both answer and every
listener is bound: a load balancer should send HL7 only to a ready gateway. It is a plain
threaded ``http.server`` on its own port (``HIE_METRICS_PORT``, loopback by default), so a slow
scrape never touches the MLLP event loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

#: A readiness check: returns None when fine, else what is wrong.
Check = Callable[[], str | None]


class HealthServer:
    """Serves metrics and health checks in a background thread."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        checks: dict[str, Check],
        before_scrape: Callable[[], Any] | None = None,
    ) -> None:
        self.registry = registry
        self.checks = checks
        self.before_scrape = before_scrape
        self.httpd = ThreadingHTTPServer((host, port), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="health-http", daemon=True
        )

    @property
    def port(self) -> int:
        """The port bound (useful with port 0)."""
        return int(self.httpd.server_address[1])

    def start(self) -> None:
        """Start serving."""
        self.thread.start()
        log.info("metrics and health on http://%s:%s/", *self.httpd.server_address[:2])

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def readiness(self) -> dict[str, str]:
        """Each check's result: "ok" or what is wrong."""
        out = {}
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as exc:  # a failing check is an answer, not a crash
                problem = f"{type(exc).__name__}: {exc}"
            out[name] = problem or "ok"
        return out

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0].rstrip("/")
                if path == "/metrics":
                    if server.before_scrape is not None:
                        server.before_scrape()
                    self._send(200, generate_latest(server.registry), CONTENT_TYPE_LATEST)
                elif path == "/health/live":
                    self._json(200, {"status": "live"})
                elif path == "/health/ready":
                    checks = server.readiness()
                    ready = all(v == "ok" for v in checks.values())
                    self._json(200 if ready else 503, {"ready": ready, "checks": checks})
                else:
                    self._json(404, {"error": "try /metrics, /health/live or /health/ready"})

            def _json(self, code: int, body: dict[str, Any]) -> None:
                self._send(code, json.dumps(body).encode(), "application/json")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("health http: " + format, *args)

        return Handler
