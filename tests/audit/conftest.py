"""Fixtures for the audit tests.

``questdb`` (tests/conftest.py) is one real server for the whole session.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture
def principal() -> str:
    """A principal unique to the test: rows are counted per principal on the shared server."""
    return f"t-{uuid.uuid4().hex[:12]}"
