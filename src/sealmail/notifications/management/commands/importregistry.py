"""``sealmail importregistry lines|orders FILE``: load the line or order registry."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.notifications.registry import RegistryError, parse_csv, sync


class Command(BaseCommand):
    help = (
        "Create or update the line or order registry from a CSV file with the "
        "columns line_id (or order_id),account_number,label."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=["lines", "orders"], help="which registry")
        parser.add_argument("file", help="CSV file in UTF-8, or - for standard input")
        parser.add_argument(
            "--replace",
            action="store_true",
            help="delete entries (and their events) that are not in the file",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="check and count, but write nothing"
        )

    def handle(
        self, *args, kind: str, file: str, replace: bool, dry_run: bool, **options
    ) -> None:
        try:
            if file == "-":
                text = sys.stdin.read()
            else:
                with open(file, encoding="utf-8-sig", newline="") as handle:
                    text = handle.read()
        except OSError as exc:
            raise CommandError(f"reading {file!r} failed: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise CommandError(
                f"{file!r} is not UTF-8 (byte {exc.start}); save the CSV as UTF-8"
            ) from None
        try:
            entries = parse_csv(text, kind)
            result = sync(kind, entries, replace=replace, dry_run=dry_run)
        except RegistryError as exc:
            raise CommandError(f"{file}: {exc}; nothing was imported") from None
        prefix = "would import" if dry_run else "imported"
        self.stdout.write(
            f"{prefix} {len(entries)} {kind}: {result.created} created, "
            f"{result.updated} updated, {result.unchanged} unchanged, "
            f"{result.deleted} deleted"
        )
