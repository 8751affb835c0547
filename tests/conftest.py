"""Shared fixtures: every test session runs on its own throwaway instance."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support import require_service

# Settings read SEALMAIL_DATA_DIR at import, which pytest-django does after
# this module runs; every test session gets its own throwaway instance.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="sealmail-test-"))
os.environ["SEALMAIL_DATA_DIR"] = str(_DATA_DIR)
os.environ.setdefault("SEALMAIL_FROM", "billing@provider.test")
os.environ.setdefault("SEALMAIL_BASE_URL", "http://testserver")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _DATA_DIR


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/15"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_DATA_DIR, ignore_errors=True)
