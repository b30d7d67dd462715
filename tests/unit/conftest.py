"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hie.store import MessageStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MessageStore]:
    """A migrated store on a new SQLite file, in a folder the store has to create."""
    s = MessageStore(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'hie.db'}")
    s.migrate()
    yield s
    s.dispose()
