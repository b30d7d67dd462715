"""Shared test settings: where the repository and the shared samples are, which services to use."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO.parent / "shared" / "samples"
#: CI sets this: a service that does not answer is a failure there, not a skip.
REQUIRE_SERVICES = os.environ.get("HIE_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip with ``reason`` on a laptop; fail in CI, where every service must run."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} (HIE_REQUIRE_SERVICES=1: CI must run this test)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared public sample corpus; tests using it skip where it is absent (a user's clone)."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present beside this clone (public sample corpus)")
    return SAMPLES
