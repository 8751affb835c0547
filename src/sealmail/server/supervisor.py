"""Run child processes, restart the ones that crash, and stop them all in order.

``sealmail serve`` supervises the portal, the worker and the inbound server;
``sealmail worker`` supervises one Huey consumer per CPU.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# A child that dies is restarted, unless it died this often within the
# window. In that case the setup is broken and every process stops.
MAX_RESTARTS = 3
RESTART_WINDOW = 60
STOP_TIMEOUT = 10
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Child:
    """One supervised process: a name for the log, its sealmail arguments and its stop signal."""

    name: str
    arguments: Sequence[str]
    stop_signal: signal.Signals


def ordinal(number: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(number, f"{number}th")


def describe_exit(code: int) -> str:
    """Describe a child's return code as "exited with status N" or "was killed by SIGNAME"."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


def supervise(children: Sequence[Child], *, pythonpath: str | None = None) -> int:
    """Run ``children`` until SIGINT or SIGTERM and return the exit status for this process.

    ``pythonpath`` (Django's ``--pythonpath`` option) is passed on to the
    children through PYTHONPATH.

    A child that exits is restarted. When one exits for the
    ``MAX_RESTARTS + 1``-th time within ``RESTART_WINDOW`` seconds, all
    others are stopped and its status is returned.
    """
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    environment = None
    if pythonpath:
        inherited = os.environ.get("PYTHONPATH", "")
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(part for part in (pythonpath, inherited) if part),
        }
    running = {child.name: (child, start(child, environment)) for child in children}
    restarts: dict[str, list[float]] = {child.name: [] for child in children}
    exit_code = 0
    while not stopping:
        for name, (child, process) in running.items():
            code = process.poll()
            if code is None:
                continue
            now = time.monotonic()
            recent = [t for t in restarts[name] if now - t < RESTART_WINDOW]
            if len(recent) >= MAX_RESTARTS:
                logger.error(
                    "%s %s, the %s time within %d s, so the others are stopped",
                    name,
                    describe_exit(code),
                    ordinal(len(recent) + 1),
                    RESTART_WINDOW,
                )
                exit_code = code if code > 0 else 1
                if code < 0:
                    exit_code = 128 - code  # as a shell reports death by signal N
                stopping = True
                break
            logger.log(
                logging.WARNING if code == 0 else logging.ERROR,
                "%s %s; restarting it",
                name,
                describe_exit(code),
            )
            restarts[name] = [*recent, now]
            running[name] = (child, start(child, environment))
        time.sleep(0.2)
    terminate(list(running.values()))
    return exit_code


def _stop_with_parent(stop_signal: signal.Signals) -> Callable[[], None] | None:
    """Return a function that makes the calling process get ``stop_signal`` when its parent dies.

    Without it, children of a supervisor that was killed (SIGKILL, the OOM
    killer) would keep running next to the ones its replacement starts.
    Linux only; elsewhere returns None.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    def set_parent_death_signal() -> None:
        libc.prctl(PR_SET_PDEATHSIG, int(stop_signal))

    return set_parent_death_signal


def start(child: Child, environment: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # A session of its own keeps a terminal's Ctrl-C away from the child, so
    # that the children stop in order when the supervisor signals them.
    process = subprocess.Popen(
        [sys.executable, "-m", "sealmail", *child.arguments],
        env=environment,
        start_new_session=True,
        preexec_fn=_stop_with_parent(child.stop_signal),
    )
    logger.info("started %s (pid %d)", child.name, process.pid)
    return process


def terminate(running: list[tuple[Child, subprocess.Popen[bytes]]]) -> None:
    for child, process in running:
        if process.poll() is None:
            process.send_signal(child.stop_signal)
    deadline = time.monotonic() + STOP_TIMEOUT
    for child, process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop within %d s; killing it", child.name, STOP_TIMEOUT)
            process.kill()
            process.wait()
        logger.info("stopped %s", child.name)
