from __future__ import annotations

import os
import signal
import sys

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.core.allocator import keep_freed_memory
from sealmail.server.supervisor import Child, supervise

# Maximum wait in seconds of an idle consumer thread before it polls the
# queue again. Huey's default of 10 s would delay a confirmation mail that long.
MAX_POLL_DELAY = 1.0


# More consumer processes than this is a typing error, not a deployment.
MAX_PROCESSES = 256


def default_processes() -> int:
    """Return SEALMAIL_WORKER_PROCESSES, or the number of CPUs when it is not set."""
    value = os.environ.get("SEALMAIL_WORKER_PROCESSES", "")
    if not value:
        return os.cpu_count() or 1
    try:
        processes = int(value)
    except ValueError:
        raise CommandError(
            f"SEALMAIL_WORKER_PROCESSES={value!r} is not a number. "
            "Set it to the number of worker processes, such as 2"
        ) from None
    check_counts(processes, 1)
    return processes


def default_threads() -> int:
    """Return SEALMAIL_WORKER_THREADS, or 4 when it is not set."""
    value = os.environ.get("SEALMAIL_WORKER_THREADS", "4")
    try:
        return int(value)
    except ValueError:
        raise CommandError(
            f"SEALMAIL_WORKER_THREADS={value!r} is not a number. "
            "Set it to the number of threads per worker process, such as 4"
        ) from None


def check_counts(processes: int, threads: int) -> None:
    if not 1 <= processes <= MAX_PROCESSES or threads < 1:
        raise CommandError(
            f"{processes} worker processes with {threads} threads each: give 1 to "
            f"{MAX_PROCESSES} processes and at least 1 thread"
        )


class Command(BaseCommand):
    help = (
        "Run the Huey workers that compose, deliver and schedule mail: one "
        "process per CPU by default, each with several threads."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--workers",
            type=int,
            default=None,
            help="threads per worker process (default 4, or SEALMAIL_WORKER_THREADS)",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=None,
            help="worker processes (default: one per CPU, or SEALMAIL_WORKER_PROCESSES)",
        )
        parser.add_argument(
            "--no-periodic",
            action="store_false",
            dest="periodic",
            help="do not schedule the periodic tasks (another process does)",
        )

    def handle(
        self, *args, workers: int | None, processes: int | None, periodic: bool, **options
    ) -> None:
        processes = default_processes() if processes is None else processes
        workers = default_threads() if workers is None else workers
        check_counts(processes, workers)
        if processes == 1:
            keep_freed_memory()
            call_command(
                "run_huey",
                workers=workers,
                worker_type="thread",
                periodic=periodic,
                max_delay=MAX_POLL_DELAY,
            )
            return
        # Threads share one CPU because of the GIL, so each CPU gets a
        # process of its own. Only the first schedules the periodic tasks.
        children = [
            Child(
                f"consumer {number}",
                [
                    "worker",
                    "--processes=1",
                    f"--workers={workers}",
                    *([] if periodic and number == 1 else ["--no-periodic"]),
                ],
                signal.SIGINT,
            )
            for number in range(1, processes + 1)
        ]
        exit_code = supervise(children, pythonpath=options.get("pythonpath"))
        if exit_code:
            sys.exit(exit_code)
