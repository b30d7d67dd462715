"""Tasks waiting on the broker, read by ``QueueDepth`` (the recovery sweeper, a graceful stop)."""

from __future__ import annotations

import secrets

import pytest
import redis

from hie.flow import QueueDepth, redis_lists
from hie.settings import Settings

pytestmark = pytest.mark.integration


def test_read_many_sums_every_priority_list_of_each_queue(redis_settings: Settings) -> None:
    # Given a queue with tasks at priority steps 0 and 5, and a queue nothing was sent to yet
    busy, empty = f"hie.test-{secrets.token_hex(4)}.Out", f"hie.test-{secrets.token_hex(4)}.In"
    client = redis.Redis.from_url(redis_settings.broker_url)
    lists = redis_lists(busy)
    client.rpush(lists[0], "a", "b")
    client.rpush(lists[5], "c")
    depths = QueueDepth(redis_settings.broker_url, timeout=redis_settings.broker_socket_timeout)
    try:
        # Then both are read at once: every list of the busy one counted, 0 for the other
        assert depths.read_many([busy, empty]) == {busy: 3, empty: 0}
        assert depths.read(busy) == 3
        assert depths.read_many([]) == {}
    finally:
        depths.close()
        client.delete(*lists)
        client.close()
