"""Shared fixtures: every test session runs on its own throwaway instance."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sealmail.core.pgp import ops
from sealmail.outbox.transport import close_idle_sessions
from tests.environment import DATA_DIR
from tests.support import require_service


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/15"


@pytest.fixture(autouse=True)
def fresh_recipient_checks():
    """Start every test with no recipient checks cached in this process."""
    ops._checks.clear()
    yield
    ops._checks.clear()


@pytest.fixture(autouse=True)
def no_idle_relay_connections():
    """End every test with no relay connection kept open for the next batch."""
    yield
    close_idle_sessions()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(DATA_DIR, ignore_errors=True)
