"""The message viewer: search, message pages, visual traces, resend/suspend/discard, items.

Example::

    app = create_web_app(settings, load_production("demo.yaml"))
    serve(app, host="127.0.0.1", port=8080)

``hie web FILE`` runs it; off loopback it requires a login (see ``hie.web.auth``).
"""

from __future__ import annotations

from hie.web.app import create_web_app
from hie.web.server import is_loopback, serve

__all__ = ["create_web_app", "is_loopback", "serve"]
