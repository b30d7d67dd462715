"""RoutingEngine: a business process that sends each message on to its targets.

With no rules it forwards every message to every target (fire-and-forget), like an IRIS routing
engine whose rule always matches. Routing rules, when configured, choose targets and transforms.
"""

from __future__ import annotations

from typing import Any, ClassVar

from hie.hosts.base import ItemSettings
from hie.hosts.process import BusinessProcess


class RoutingSettings(ItemSettings):
    """Settings of a routing engine."""

    #: Rules (a path to a rules file, or inline rules) deciding targets; none forwards to all.
    rules: Any = None


class RoutingEngine(BusinessProcess):
    """Forward each request to every target."""

    Settings: ClassVar[type[ItemSettings]] = RoutingSettings

    def on_request(self, request: Any) -> Any:
        """Send the request on to every target; the router itself has no reply."""
        self.send_to_targets(request)
        return None


class HL7RoutingEngine(RoutingEngine):
    """A routing engine for HL7 v2 messages (IRIS ``EnsLib.HL7.MsgRouter.RoutingEngine``)."""
