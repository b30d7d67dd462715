"""Celery settings: the only place they are written. Values come from ``hie.settings``.

``build(settings)`` returns them for a given ``Settings`` (tests build their own); the module-level
names are the same values for ``get_settings()``, for ``celery -A ... --config celeryconfig``.
"""

from __future__ import annotations

from typing import Any

from hie.settings import Settings, get_settings


def build(settings: Settings) -> dict[str, Any]:
    """Celery configuration for ``settings``."""
    timeouts = {
        "socket_timeout": settings.broker_socket_timeout,
        "socket_connect_timeout": settings.broker_socket_timeout,
    }
    transport: dict[str, Any] = {}
    if settings.broker_is_redis:
        # Redis has no native priority: kombu keeps one list per step and serves 0 first.
        transport = {
            "priority_steps": list(range(10)),
            "sep": ":",
            "queue_order_strategy": "priority",
            "visibility_timeout": settings.visibility_timeout,
            **timeouts,
        }
    else:
        transport = {"confirm_publish": True}
    return {
        "broker_url": settings.broker_url,
        # kombu's Redis transport, minus a client object per command (hie/transport.py).
        "broker_transport": "hie.transport:Transport" if settings.broker_is_redis else None,
        "result_backend": settings.result_backend,
        "broker_transport_options": transport,
        "result_backend_transport_options": timeouts
        if (settings.result_backend or "").startswith("redis")
        else {},
        "redis_socket_timeout": settings.broker_socket_timeout,
        "redis_socket_connect_timeout": settings.broker_socket_timeout,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A message is acknowledged only once its task finished: a dead worker's task runs again.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_queue_max_priority": 9,
        "task_default_priority": 4,
        "task_create_missing_queues": True,
        "result_expires": 24 * 3600,
        "result_extended": False,
        # Results are kept only for what a caller waits on (the outbox asks per task).
        "task_ignore_result": True,
        # Task events cost a broker write per task state: off unless HIE_TASK_EVENTS is set or
        # Flower asks the workers for them (it does so itself while it runs). No task-sent
        # events ever: they double the broker writes of every publish.
        "worker_send_task_events": settings.task_events,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
    }


globals().update(build(get_settings()))
