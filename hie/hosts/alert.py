"""``EmailAlertOperation``: mails alerts over SMTP, one mail per outage, not one per message.

Within ``grace_period`` seconds of a mail about an (item, kind), further alerts of that pair are
counted, not sent; the next mail about it says how many were held back. Run the item with
``pool: solo`` (or one process): the count lives in the worker process.

Example::

    - name: Ens.Alert
      class: EmailAlertOperation
      pool: solo
      settings: {smtp_server: mail.hospital.org, recipients: [oncall@hospital.org],
                 grace_period: 300}
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, ClassVar

from pydantic import Field

from hie.alerts import Alert
from hie.hosts.base import ItemSettings
from hie.hosts.operation import BusinessOperation


class EmailAlertSettings(ItemSettings):
    """Where alert mails go (IRIS EnsLib.EMail.AlertOperation: SMTPServer, Recipient ...)."""

    smtp_server: str = "127.0.0.1"
    smtp_port: int = Field(default=25, ge=1, le=65535)
    from_address: str = "hie@localhost"
    recipients: list[str] = Field(min_length=1)
    subject_prefix: str = "[HIE]"
    #: Seconds during which repeats of one (item, kind) are counted, not mailed; 0 mails all.
    grace_period: float = Field(default=300.0, ge=0)
    #: Seconds to connect to and talk with the SMTP server.
    timeout: float = Field(default=10.0, gt=0)


@dataclass
class AlertThrottle:
    """Decides, per (item, kind), whether an alert is mailed or held back within the grace."""

    grace_period: float
    clock: Callable[[], float] = time.monotonic
    _last_sent: dict[tuple[str, str], float] = field(default_factory=dict)
    _held: dict[tuple[str, str], int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def admit(self, item: str, kind: str) -> int | None:
        """None to hold this alert back; else how many were held back before it (to mention)."""
        key, now = (item, kind), self.clock()
        with self._lock:
            last = self._last_sent.get(key)
            if last is not None and now - last < self.grace_period:
                self._held[key] = self._held.get(key, 0) + 1
                return None
            self._last_sent[key] = now
            return self._held.pop(key, 0)

    def undo(self, item: str, kind: str, held: int) -> None:
        """The mail could not be sent: forget it was, so the retry is admitted."""
        with self._lock:
            self._last_sent.pop((item, kind), None)
            if held:
                self._held[(item, kind)] = self._held.get((item, kind), 0) + held


class EmailAlertOperation(BusinessOperation):
    """Mails each ``Alert`` it receives to ``recipients``, with a grace period per (item, kind).

    The reply is a short text saying what happened (sent, or held back), kept in the trace.
    """

    Settings: ClassVar[type[ItemSettings]] = EmailAlertSettings
    settings: EmailAlertSettings

    def on_init(self) -> None:
        """Start with an empty grace-period memory in this worker process."""
        self.throttle = AlertThrottle(self.settings.grace_period)

    def on_message(self, request: Any) -> Any:
        """Mail ``request`` (an ``Alert``, or any text) unless its grace period holds it back."""
        alert = request if isinstance(request, Alert) else _as_alert(request, self)
        held = self.throttle.admit(alert.item, alert.kind)
        if held is None:
            return f"held back: another {alert.kind} alert for {alert.item} was mailed recently"
        try:
            self._send(self._mail(alert, held))
        except (OSError, smtplib.SMTPException):
            self.throttle.undo(alert.item, alert.kind, held)
            raise  # retried per retry_interval / failure_timeout like any delivery
        return f"mailed to {', '.join(self.settings.recipients)}"

    def _mail(self, alert: Alert, held: int) -> EmailMessage:
        s = self.settings
        mail = EmailMessage()
        mail["From"] = s.from_address
        mail["To"] = ", ".join(s.recipients)
        mail["Subject"] = f"{s.subject_prefix} {alert.subject()}".strip()
        lines = [
            alert.text,
            "",
            f"production: {alert.production}",
            f"item:       {alert.item}",
            f"kind:       {alert.kind}",
            f"at:         {alert.at.isoformat()}",
        ]
        if alert.message_id:
            lines.append(f"message:    {alert.message_id}  (hie trace {alert.message_id})")
        if held:
            lines += [
                "",
                f"{held} more {alert.kind} alert(s) for {alert.item} were held back "
                f"during the {s.grace_period:g} s grace period before this one.",
            ]
        mail.set_content("\n".join(lines) + "\n")
        return mail

    def _send(self, mail: EmailMessage) -> None:
        s = self.settings
        with smtplib.SMTP(s.smtp_server, s.smtp_port, timeout=s.timeout) as smtp:
            smtp.send_message(mail)


def _as_alert(request: Any, host: EmailAlertOperation) -> Alert:
    """A plain message sent to the alert item becomes an alert about its sender."""
    current = host.current
    return Alert(
        production=host.production.name,
        item=(current.source if current is not None else None) or host.item_name,
        message_id=str(current.message_id) if current is not None else None,
        kind="message",
        text=str(request),
    )
