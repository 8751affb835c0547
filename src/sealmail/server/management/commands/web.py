from __future__ import annotations

import os
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "Run the web portal, staff UI and API with gunicorn on SEALMAIL_WEB_ADDR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="number of gunicorn worker processes (default 2, or SEALMAIL_WEB_WORKERS)",
        )

    def handle(self, *args, workers: int | None, **options) -> None:
        if workers is None:
            value = os.environ.get("SEALMAIL_WEB_WORKERS", "2")
            try:
                workers = int(value)
            except ValueError:
                raise CommandError(
                    f"SEALMAIL_WEB_WORKERS={value!r} is not a number. Set it to the "
                    "number of gunicorn worker processes, such as 2"
                ) from None
        if workers < 1:
            raise CommandError(f"--workers {workers}: give at least 1 process")
        host, port = settings.SEALMAIL_WEB_ADDR
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # No access log: confirmation and password reset links carry their
        # tokens in the path, and Django's own request log redacts them.
        argv = [
            sys.executable,
            "-m",
            "gunicorn",
            "sealmail.project.wsgi:application",
            "--bind",
            bind,
            "--workers",
            str(workers),
            "--graceful-timeout",
            "5",
            "--no-control-socket",
        ]
        # Static files are served by WhiteNoise from STATIC_ROOT in the data
        # directory, so every web host collects its own copy at start.
        call_command("collectstatic", interactive=False, verbosity=0)
        os.execv(sys.executable, argv)
