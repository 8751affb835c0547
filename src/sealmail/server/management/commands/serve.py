from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)

# Each child gets the signal that stops it gracefully: gunicorn finishes open
# requests on SIGTERM, Huey finishes running tasks on SIGINT.
PROCESSES = {"web": signal.SIGTERM, "worker": signal.SIGINT, "smtpd": signal.SIGTERM}
# A child that dies is restarted, unless it died this often within the window:
# then something is wrong with the setup and every process stops.
MAX_RESTARTS = 3
RESTART_WINDOW = 60


def ordinal(number: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(number, f"{number}th")


class Command(BaseCommand):
    help = (
        "Run the web portal, the worker and the inbound SMTP/LMTP server together "
        "on one machine; stop all three with Ctrl-C."
    )

    def handle(self, *args, **options) -> None:
        children: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def stop(signum: int, frame: object) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        for name in PROCESSES:
            children[name] = self.start(name)
        smtp_host, smtp_port = settings.SEALMAIL_SMTPD_ADDR
        logger.info(
            "sealmail serving: portal %s, inbound SMTP/LMTP on %s:%d",
            settings.SEALMAIL_BASE_URL,
            smtp_host,
            smtp_port,
        )
        exit_code = 0
        restarts: dict[str, list[float]] = {name: [] for name in PROCESSES}
        while not stopping:
            for name, child in children.items():
                code = child.poll()
                if code is None:
                    continue
                now = time.monotonic()
                recent = [t for t in restarts[name] if now - t < RESTART_WINDOW]
                if len(recent) >= MAX_RESTARTS:
                    logger.error(
                        "%s exited with status %d, the %s time within %d s; "
                        "stopping the others",
                        name,
                        code,
                        ordinal(len(recent) + 1),
                        RESTART_WINDOW,
                    )
                    exit_code = code or 1
                    stopping = True
                    break
                logger.error("%s exited with status %d; restarting it", name, code)
                restarts[name] = [*recent, now]
                children[name] = self.start(name)
            time.sleep(0.2)
        self.terminate(children)
        if exit_code:
            sys.exit(exit_code)

    @staticmethod
    def start(name: str) -> subprocess.Popen[bytes]:
        # A session of its own keeps a terminal's Ctrl-C away from the
        # children, so they stop in order when this process signals them.
        child = subprocess.Popen(
            [sys.executable, "-m", "sealmail", name], start_new_session=True
        )
        logger.info("started %s (pid %d)", name, child.pid)
        return child

    @staticmethod
    def terminate(children: dict[str, subprocess.Popen[bytes]]) -> None:
        for name, child in children.items():
            if child.poll() is None:
                child.send_signal(PROCESSES[name])
        deadline = time.monotonic() + 10
        for name, child in children.items():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within 10 s; killing it", name)
                child.kill()
                child.wait()
            logger.info("stopped %s", name)
