"""Alerts: what goes wrong in a production, as messages routed to its alert item (IRIS Ens.Alert).

An ``Alert`` is an ordinary message body, so it is stored, traced and retried like any other.
It goes to the production's **alert item**: the enabled item named ``Ens.Alert`` if there is one,
else the first enabled item whose class is ``EmailAlertOperation`` (or a subclass). A production
without either raises no alerts: they are only logged.

Who raises them: the recovery sweeper (``hie recover``, one per production), which watches the
store for suspensions and final failures, and the broker for queue depth and queue wait. One
watcher for every worker keeps alerting off the message path (a broken mail server or broker
can never fail or slow a message) and still sees what a killed worker can no longer report.

Example::

    alerter = Alerter.for_production(dispatcher)
    alerter.raise_alert(Alert(production="Demo", item="ADT.Out", kind="suspended", text="AE"))
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import Field

from hie.messages import Envelope, Message

if TYPE_CHECKING:
    from hie.production import Production
    from hie.tasks.dispatcher import Dispatcher

log = logging.getLogger(__name__)

#: The name that makes an item the production's alert item, as in IRIS.
ALERT_ITEM_NAME = "Ens.Alert"
#: The ``source`` of alert envelopes in the store and in traces.
ALERT_SOURCE = "hie.alerts"


class Alert(Message):
    """Something an engineer should look at: a suspended message, a queue that is not moving."""

    production: str
    #: The item the alert is about (the one that suspended, or whose queue is deep).
    item: str
    #: The message concerned, when there is one.
    message_id: str | None = None
    #: ``suspended``, ``failed``, ``queue_depth``, ``queue_wait`` (free text for user alerts).
    kind: str
    text: str
    at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    def subject(self) -> str:
        """A one-line summary, e.g. for a mail subject."""
        return f"{self.production}/{self.item}: {self.kind}"


def alert_item(production: Production) -> str | None:
    """The item alerts go to (see the module docstring), or None when there is none."""
    from hie.hosts.alert import EmailAlertOperation

    enabled = [i for i in production.items if i.enabled]
    for item in enabled:
        if item.name == ALERT_ITEM_NAME:
            return item.name
    for item in enabled:
        if issubclass(production.host_class(item.name), EmailAlertOperation):
            return item.name
    return None


class Alerter:
    """Publishes alerts to one production's alert item, never raising."""

    def __init__(self, dispatcher: Dispatcher, target: str | None) -> None:
        self.dispatcher = dispatcher
        self.target = target
        self.raised = 0

    @classmethod
    def for_production(cls, dispatcher: Dispatcher) -> Alerter:
        """An alerter for the dispatcher's production and its alert item."""
        return cls(dispatcher, alert_item(dispatcher.production))

    def raise_alert(self, alert: Alert) -> bool:
        """Store and publish ``alert`` to the alert item; False when it could not be sent.

        Always logged, so an alert is never lost silently even without an alert item.
        """
        log.warning("alert %s: %s", alert.subject(), alert.text)
        if self.target is None or alert.item == self.target:
            # An alert about the alert item itself would feed on its own failures.
            return False
        envelope = Envelope.wrap(alert, source=ALERT_SOURCE, target=self.target, priority=9)
        try:
            self.dispatcher.send(envelope)
        except Exception:  # alerting must never take its caller down
            log.exception("could not send alert %s to %s", alert.subject(), self.target)
            return False
        self.raised += 1
        return True
