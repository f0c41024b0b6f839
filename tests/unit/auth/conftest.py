"""Fixtures for the auth unit tests (helpers live in authtest_support)."""

from __future__ import annotations

import pytest
from authtest_support import FakeClock, Material, new_material


@pytest.fixture(scope="session")
def material() -> Material:
    return new_material()  # RSA generation is slow: once per session


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(1000.0)
