from __future__ import annotations

import logging
import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from sealmail.server.management.commands.worker import (
    check_counts,
    default_processes,
    default_threads,
)
from sealmail.server.supervisor import Child, supervise

logger = logging.getLogger(__name__)

# Each child gets the signal that stops it gracefully: gunicorn finishes open
# requests on SIGTERM, the worker lets Huey finish running tasks on SIGINT.
CHILDREN = (
    Child("web", ["web"], signal.SIGTERM),
    Child("worker", ["worker"], signal.SIGINT),
    Child("smtpd", ["smtpd"], signal.SIGTERM),
)


class Command(BaseCommand):
    help = (
        "Run the web portal, the worker and the inbound SMTP/LMTP server together "
        "on one machine; stop all three with Ctrl-C."
    )

    def handle(self, *args, **options) -> None:
        # Check the worker's settings before anything listens, so that a
        # typing error stops serve at once instead of after a restart loop.
        check_counts(default_processes(), default_threads())
        smtp_host, smtp_port = settings.SEALMAIL_SMTPD_ADDR
        logger.info(
            "sealmail serving: portal %s, inbound SMTP/LMTP on %s:%d",
            settings.SEALMAIL_BASE_URL,
            smtp_host,
            smtp_port,
        )
        exit_code = supervise(CHILDREN, pythonpath=options.get("pythonpath"))
        if exit_code:
            sys.exit(exit_code)
