"""Hosts for the ordering and flow-control tests (imported by worker processes by dotted path)."""

from __future__ import annotations

import random
import time
from typing import Any, ClassVar

from hie.errors import DeliveryError
from hie.hosts.base import ItemSettings
from hie.hosts.operation import BusinessOperation
from tests.hosts import journal


class KeyedSettings(ItemSettings):
    min_delay: float = 0.0
    max_delay: float = 0.0
    #: Messages of this patient always fail (to prove they hold only their own key).
    failing_patient: str = ""


class PatientOperation(BusinessOperation):
    """Journals ``done:<patient>:<MSH-10>`` after a random delay; one patient may always fail."""

    Settings: ClassVar[type[ItemSettings]] = KeyedSettings

    def on_message(self, request: Any) -> Any:
        s: KeyedSettings = self.settings  # type: ignore[assignment]
        patient, control_id = request.get("PID-3.1"), request.control_id
        if patient == s.failing_patient:
            raise DeliveryError(f"patient {patient} cannot be delivered")
        time.sleep(random.uniform(s.min_delay, s.max_delay))
        journal(self, f"done:{patient}:{control_id}")
        return None
