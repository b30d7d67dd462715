"""create_app(settings): the Celery application every HIE process uses."""

from __future__ import annotations

from types import SimpleNamespace

from celery import Celery

import celeryconfig
from hie.settings import Settings


def create_app(settings: Settings, *, name: str = "hie") -> Celery:
    """A Celery app configured from ``settings`` (through ``celeryconfig.build``)."""
    app = Celery(name, set_as_current=False)
    app.config_from_object(SimpleNamespace(**celeryconfig.build(settings)))
    return app
