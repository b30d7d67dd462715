"""Alerts end to end: a suspension becomes one mail at a real SMTP server, repeats are held."""

from __future__ import annotations

import email
import time
from collections.abc import Iterator
from email.message import Message
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from hie.alerts import Alert, alert_item
from hie.hl7 import HL7Message
from hie.recovery import RecoverySweeper
from tests.integration.harness import Harness, free_port, wait_for
from tests.peers import MLLPPeer

pytestmark = pytest.mark.integration


class Inbox:
    """aiosmtpd handler that keeps every mail it receives."""

    def __init__(self) -> None:
        self.mails: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append(email.message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def text_of(mail: Message) -> str:
    payload = mail.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload.decode()


def adt(n: int) -> HL7Message:
    return HL7Message(
        f"MSH|^~\\&|A|B|C|D|20260101||ADT^A01^ADT_A01|AL{n}|P|2.5\rPID|1||{n}^^^H^MR||DOE^J\r"
    )


def test_suspensions_raise_one_mail_per_grace_period_with_the_held_count(
    harness: Harness, smtp: tuple[Inbox, int]
) -> None:
    inbox, smtp_port = smtp
    with MLLPPeer("AE", text="unknown patient") as peer:
        # Given an operation that suspends (its peer answers AE) and an Ens.Alert mail item
        harness.write(
            [
                {"name": "Out", "class": "HL7TCPOperation", "pool": "threads", "pool_size": 2,
                 "settings": {"host": "127.0.0.1", "port": peer.port}},
                {"name": "Ens.Alert", "class": "EmailAlertOperation", "pool": "solo",
                 "settings": {"smtp_server": "127.0.0.1", "smtp_port": smtp_port,
                              "recipients": ["oncall@example.org"], "grace_period": 2}},
            ]
        )  # fmt: skip
        assert alert_item(harness.production) == "Ens.Alert"
        harness.start_worker("Out")
        harness.start_worker("Ens.Alert")
        sweeper = RecoverySweeper(
            harness.store, harness.dispatcher, harness.production, stale_after=60
        )
        # When five messages are suspended and the sweeper looks
        sent = [harness.send("Out", adt(n)) for n in range(5)]
        wait_for(
            lambda: all(harness.store.header(e.message_id).status == "suspended" for e in sent),
            30,
            "five suspensions",
        )
        assert sweeper.sweep_once().alerts == 5
        # Then one mail names the item, the kind and the message; four are held back
        wait_for(lambda: len(inbox.mails) == 1, 30, "the first alert mail")
        mail = inbox.mails[0]
        assert mail["Subject"].startswith("[HIE] ") and "Out: suspended" in mail["Subject"]
        body = text_of(mail)
        assert (
            "MSA-1 'AE'" in body
            and any(str(e.message_id) in body for e in sent)  # whichever was recorded first
            and "oncall@example.org" in mail["To"]
        )
        wait_for(
            lambda: len(harness.store.find(target="Ens.Alert", status="completed")) == 5,
            30,
            "every alert handled",
        )
        assert len(inbox.mails) == 1
        # And after the grace period the next alert's mail counts the four held back
        time.sleep(2.1)  # the grace period itself
        sweeper.alerter.raise_alert(
            Alert(production=harness.name, item="Out", kind="suspended", text="again")
        )
        wait_for(lambda: len(inbox.mails) == 2, 30, "the second alert mail")
        assert "4 more suspended alert(s) for Out were held back" in text_of(inbox.mails[1])


def test_queue_depth_threshold_raises_an_alert(harness: Harness, smtp: tuple[Inbox, int]) -> None:
    inbox, smtp_port = smtp
    harness.write(
        [
            {"name": "Slow", "class": "HL7TCPOperation",
             "settings": {"host": "127.0.0.1", "port": 9}},
            {"name": "Keyed", "class": "HL7TCPOperation", "ordering_key": "PID-3.1",
             "partitions": 4, "settings": {"host": "127.0.0.1", "port": 9}},
            {"name": "Ens.Alert", "class": "EmailAlertOperation", "pool": "solo",
             "settings": {"smtp_server": "127.0.0.1", "smtp_port": smtp_port,
                          "recipients": ["oncall@example.org"]}},
        ]
    )  # fmt: skip
    harness.start_worker("Ens.Alert")
    # Given 20 messages waiting in a queue nobody consumes, and 12 spread over the four
    # sub-queues of an item ordered by patient (its own queue stays empty)
    for n in range(20):
        harness.send("Slow", adt(n))
    for n in range(12):
        harness.send("Keyed", adt(100 + n))
    sweeper = RecoverySweeper(
        harness.store, harness.dispatcher, harness.production, stale_after=600, alert_depth=10
    )
    assert sweeper.sweep_once().alerts == 2
    wait_for(lambda: len(inbox.mails) == 2, 30, "the queue depth mails")
    texts = sorted(str(m.get_payload()) for m in inbox.mails)
    assert all("queue_depth" in m["Subject"] for m in inbox.mails)
    assert "queue of Keyed holds 12 messages" in texts[0]
    assert "queue of Slow holds 20 messages" in texts[1]
