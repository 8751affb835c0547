"""Access to real services and tools for tests.

A test that needs PostgreSQL, Redis or an external tool calls
``require_service`` or ``require_tool``: outside CI a missing one skips the
test, under ``CI=true`` it fails, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket

import pytest

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
