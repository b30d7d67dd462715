"""Which acknowledgements a message gets, per the item's ``ack_mode`` and the message's MSH.

- ``never``: none.
- ``immediate``: a commit ACK once the message is stored and queued (AA, or CA with commit codes).
- ``application``: once the targets finished: AA, AE with the error, AR when rejected, AE when
  they did not finish within ``app_ack_timeout``.
- ``msh``: MSH-15 (accept) and MSH-16 (application) decide, each one of AL (always), NE (never),
  ER (only on error) or SU (only on success). Both empty is original mode: one AA-style ACK.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from uuid import UUID

from hie.hl7 import HL7Message

if TYPE_CHECKING:
    from hie.store import MessageStore

_TERMINAL = {"completed", "error", "suspended", "discarded", "skipped"}
_FAILED = {"error", "suspended"}


@dataclass(frozen=True)
class AckPlan:
    """The ACKs to send: an accept (commit) ACK code, and whether an application ACK follows."""

    accept_code: str | None
    application: bool
    #: For msh mode: which application outcomes are answered (AL / ER / SU).
    application_condition: str = "AL"

    def wants_application(self, code: str) -> bool:
        """Whether an application ACK with ``code`` is sent under the condition."""
        if self.application_condition == "ER":
            return code != "AA"
        if self.application_condition == "SU":
            return code == "AA"
        return True


def plan_acks(message: HL7Message, mode: str, use_commit_codes: bool) -> AckPlan:
    """The plan for ``message`` under ``mode``."""
    if mode == "never":
        return AckPlan(None, False)
    if mode == "immediate":
        return AckPlan("CA" if use_commit_codes else "AA", False)
    if mode == "application":
        return AckPlan(None, True)
    accept, app = message.accept_ack_type.upper(), message.app_ack_type.upper()
    if not accept and not app:
        return AckPlan("CA" if use_commit_codes else "AA", False)
    # Enhanced mode: the commit ACK uses commit codes; stored and queued means accepted.
    accept_code = "CA" if accept in ("AL", "SU") else None
    return AckPlan(accept_code, app in ("AL", "ER", "SU"), app or "AL")


def wait_for_session(
    store: MessageStore, session_id: UUID, timeout: float
) -> tuple[str, str | None]:
    """Wait until every message of the session is finished; return (ACK code, text)."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        headers = store.session(session_id)
        if headers and all(str(h.status) in _TERMINAL for h in headers):
            # Only downstream answers are in the session yet: the gateway records its own ACK
            # after this returns.
            for h in headers:
                if h.ack_code in ("AE", "AR", "CE", "CR"):
                    return ("AR" if h.ack_code in ("AR", "CR") else "AE"), (
                        h.ack_text or f"{h.target or h.source} answered {h.ack_code}"
                    )
            failed = [h for h in headers if str(h.status) in _FAILED]
            if failed:
                return "AE", failed[0].error or f"{failed[0].target} failed"
            return "AA", None
        if time.monotonic() > deadline:
            return "AE", f"targets did not finish within {timeout:g} s"
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)
