"""The one Settings object: every ``HIE_*`` environment variable, validated once.

Only this module reads ``os.environ``; everything else receives a ``Settings`` through its
constructor. Tests build their own ``Settings(...)`` instead of patching the environment.
"""

from __future__ import annotations

import os

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


class Settings(BaseSettings):
    """Engine-wide settings, from ``HIE_*`` variables or an optional ``.env`` file."""

    model_config = SettingsConfigDict(env_prefix="HIE_", env_file=".env", extra="ignore")

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str | None = Field(
        default=None, description="Celery result backend; the broker when it is Redis."
    )
    database_url: str = "sqlite:///var/hie.db"
    home: Path = Path("var")
    log_level: str = "INFO"
    # Start a private redis-server from a package when the default broker does not answer.
    embedded_broker: bool = True
    # Seconds a Redis-delivered task may stay unacknowledged before the broker redelivers it.
    visibility_timeout: int = 3600
    # Seconds any broker round trip may block before it fails (never block forever).
    broker_socket_timeout: float = 5.0
    # Worker processes run this much nicer (lower priority) than the gateway: a sender waiting
    # for its ACK comes before delivery work that can wait a moment. 0: same priority.
    worker_nice: int = Field(default=5, ge=0, le=19)
    # Task events for every task from the start. Off: they cost the workers a broker write per
    # task state; Flower turns them on itself (it asks the workers) while it watches.
    task_events: bool = False
    # Seconds between a worker's touches of the messages it is running, so that the recovery
    # sweeper (stale after 60 s by default) never takes a long attempt for a lost one.
    heartbeat_interval: float = Field(default=10.0, gt=0)
    # The gateway serves /metrics, /health/live and /health/ready here; unset: not served.
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"

    @field_validator("broker_url")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"redis", "rediss", "amqp", "amqps", "pyamqp", "redis+socket"}:
            raise ValueError(
                f"HIE_BROKER_URL scheme {scheme!r} is not supported; use redis:// or amqp://"
            )
        return value

    @model_validator(mode="after")
    def _default_result_backend(self) -> Settings:
        if self.result_backend is None and self.broker_is_redis:
            self.result_backend = self.broker_url
        return self

    @property
    def broker_is_redis(self) -> bool:
        """True when the broker speaks the Redis protocol (priority order is inverted there)."""
        return self.broker_url.startswith(("redis", "rediss"))

    @property
    def uses_default_broker(self) -> bool:
        """True when the broker URL was left at its default (an embedded one may be started)."""
        return self.broker_url == DEFAULT_BROKER_URL


def make_home_private(home: Path) -> None:
    """Create ``home`` (HIE_HOME) readable by its owner only: it holds the store, the logs and
    the run files, all of which may hold patient data. An existing home of this user that
    others could read is closed to them (0700)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = home.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        home.chmod(0o700)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment.

    With ``HIE_SECRETS_DIR`` set (compose's ``/run/secrets``), a setting may also come from a
    file there named after its variable (``HIE_DATABASE_URL``): a password then never sits in
    an environment value that ``docker inspect`` or ``/proc/PID/environ`` shows. A variable set
    in the environment wins over the file.
    """
    secrets = os.environ.get("HIE_SECRETS_DIR")
    return Settings(_secrets_dir=secrets) if secrets else Settings()
