"""Scale-out across two hosts: workers on host B against host A's broker and store, the link
between them cut for 10 s mid-run (``bench/two_hosts.py`` builds the hosts in namespaces)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import two_hosts

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

WHY_NOT = two_hosts.missing()


@pytest.mark.skipif(WHY_NOT is not None, reason=f"two hosts cannot be built here: {WHY_NOT}")
def test_workers_on_another_host_survive_a_cut_link_and_lose_nothing() -> None:
    # Given host A (broker, store, gateway, sweeper, sink) and host B (router and operation
    # workers started with `hie worker` against A)
    with two_hosts.TwoHosts() as hosts:
        # When 1,000 messages are sent while the link between them is down for 10 s
        result = hosts.run(messages=1000, rate=50, cut_after=5, cut_for=10)
        print("\n" + result.line())

        # Then the cut held deliveries up (the link was really down) ...
        assert result.longest_pause >= 5, result.line()
        # ... every ACKed message reached the sink, and B's workers are the ones that started
        assert result.acked == result.sent == 1000, hosts.log("load")
        assert result.lost == 0, hosts.log("Router") + hosts.log("Out") + hosts.log("recovery")
        assert all(hosts.alive().values()), hosts.alive()
        # Duplicates are possible (a delivery whose record could not reach the store is sent
        # again by the sweeper), and counted: never more than what the cut left in flight
        assert result.twice <= 20, result.line()
