"""Shared fixtures: an isolated data directory and access to real services.

A test that needs PostgreSQL, Redis or an external tool calls
``require_service`` or ``require_tool``: outside CI a missing one skips the
test, under ``CI=true`` it fails, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

# Settings read SEALMAIL_DATA_DIR at import, which pytest-django does after
# this module runs; every test session gets its own throwaway instance.
_DATA_DIR = Path(tempfile.mkdtemp(prefix="sealmail-test-"))
os.environ["SEALMAIL_DATA_DIR"] = str(_DATA_DIR)
os.environ.setdefault("SEALMAIL_FROM", "billing@provider.test")
os.environ.setdefault("SEALMAIL_BASE_URL", "http://testserver")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str, fix: str) -> None:
    """Fail under CI, skip elsewhere, naming what is missing and how to get it."""
    message = f"{what} is not available; {fix}"
    if IN_CI:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    if not port_open(host, port):
        missing(f"{name} on {host}:{port}", "start it (.ci/run does) or run the tests under CI")


def require_tool(command: str, package: str) -> str:
    path = shutil.which(command)
    if path is None:
        missing(f"the command {command!r}", f"install the Debian package {package!r} (make test does)")
    return path  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _DATA_DIR


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/15"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_DATA_DIR, ignore_errors=True)
