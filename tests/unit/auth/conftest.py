"""Fixtures for the auth unit tests (helpers live in support.auth_material)."""

from __future__ import annotations

import pytest
from support.auth_material import FakeClock, Material, new_material


@pytest.fixture(scope="session")
def material() -> Material:
    return new_material()  # RSA generation is slow: once per session


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock(1000.0)


@pytest.fixture(autouse=True)
def admin_audit_journal(tmp_path, monkeypatch):
    """Where `tradewire keys` run by these tests audits (not the working directory's tradewire-data)."""
    path = tmp_path / "admin-audit.jsonl"
    monkeypatch.setenv("TRADEWIRE_AUDIT__JOURNAL_PATH", str(path))
    return path
