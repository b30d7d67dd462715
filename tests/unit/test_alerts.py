"""The alert grace period: one outage is one mail, and the next mail counts what was held."""

from __future__ import annotations

from hie.hosts.alert import AlertThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_repeats_within_the_grace_period_are_held_and_counted_in_the_next_mail() -> None:
    clock = Clock()
    throttle = AlertThrottle(grace_period=60, clock=clock)
    assert throttle.admit("ADT.Out", "suspended") == 0
    assert [throttle.admit("ADT.Out", "suspended") for _ in range(999)] == [None] * 999
    # Another item or another kind is another outage: mailed at once
    assert throttle.admit("LAB.Out", "suspended") == 0
    assert throttle.admit("ADT.Out", "queue_depth") == 0
    clock.now += 61
    assert throttle.admit("ADT.Out", "suspended") == 999


def test_a_mail_that_could_not_be_sent_is_admitted_again_with_its_count() -> None:
    throttle = AlertThrottle(grace_period=60, clock=Clock())
    throttle.admit("X", "failed")
    assert throttle.admit("X", "failed") is None
    assert throttle.admit("X", "failed") is None
    held = throttle.admit("Y", "failed")
    throttle.undo("Y", "failed", held or 0)
    assert throttle.admit("Y", "failed") == 0


def test_zero_grace_period_mails_every_alert() -> None:
    throttle = AlertThrottle(grace_period=0, clock=Clock())
    assert [throttle.admit("X", "failed") for _ in range(3)] == [0, 0, 0]
