from __future__ import annotations

import os

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Run the Huey worker that composes, delivers and schedules mail."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=int(os.environ.get("SEALMAIL_WORKER_THREADS", "4")),
            help="number of worker threads (default 4, or SEALMAIL_WORKER_THREADS)",
        )

    def handle(self, *args, workers: int, **options) -> None:
        call_command("run_huey", workers=workers, worker_type="thread")
