from __future__ import annotations

import logging
import os
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.inbound.smtp import RoleAddressHandler, store_raw

logger = logging.getLogger(__name__)


class LMTPController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


class Command(BaseCommand):
    help = "Run the inbound SMTP server (and LMTP with --lmtp) for the role addresses."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--lmtp",
            action="store_true",
            default=os.environ.get("SEALMAIL_SMTPD_PROTOCOL", "smtp").lower() == "lmtp",
            help="speak LMTP instead of SMTP (or set SEALMAIL_SMTPD_PROTOCOL=lmtp)",
        )

    def handle(self, *args, lmtp: bool, **options) -> None:
        host, port = settings.SEALMAIL_SMTPD_ADDR
        handler = RoleAddressHandler(
            settings.SEALMAIL_ROLE_ADDRESSES,
            store_raw,
            settings.SEALMAIL_SMTPD_MAX_BYTES,
        )
        controller_class = LMTPController if lmtp else Controller
        controller = controller_class(
            handler,
            hostname=host,
            port=port,
            data_size_limit=settings.SEALMAIL_SMTPD_MAX_BYTES,
            decode_data=False,
        )
        stopped = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stopped.set())
        signal.signal(signal.SIGTERM, lambda *_: stopped.set())
        try:
            controller.start()
        except OSError as exc:
            raise CommandError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}. Stop the program "
                "that uses this address or set SEALMAIL_SMTPD_ADDR to a free one"
            ) from None
        logger.info(
            "inbound %s server listening on %s:%d for %s",
            "LMTP" if lmtp else "SMTP",
            host,
            port,
            ", ".join(settings.SEALMAIL_ROLE_ADDRESSES),
        )
        stopped.wait()
        controller.stop()
        logger.info("inbound server stopped")
