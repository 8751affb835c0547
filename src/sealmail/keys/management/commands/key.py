"""``sealmail key inspect``: check a public key the way the portal does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import MAX_INPUT_BYTES, inspect_key
from sealmail.core.text import printable


class Command(BaseCommand):
    help = (
        "Inspect a customer's public key. Exit status: 0 usable, 1 rejected, 2 usage error."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        inspect = sub.add_parser("inspect", help="check a public key file, or - for stdin")
        inspect.add_argument("file", help="armored or binary public key; - reads stdin")
        inspect.add_argument("--json", action="store_true", help="print a JSON object")

    def handle(self, *args, action: str, **options) -> None:
        source = options["file"]
        try:
            if source == "-":
                data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1)
            else:
                with Path(source).open("rb") as handle:
                    data = handle.read(MAX_INPUT_BYTES + 1)
        except OSError as exc:
            raise CommandError(f"cannot read {source!r}: {exc.strerror}", returncode=2) from None
        try:
            report = inspect_key(data)
        except KeyRejected as exc:
            if options["json"]:
                result = {
                    "usable": False,
                    "reason": exc.reason,
                    "message": exc.message,
                    "fingerprint": None,
                    "version": None,
                    "usable_until": None,
                    "user_ids": [],
                    "warnings": [],
                }
                self.stdout.write(json.dumps(result, indent=2))
            else:
                self.stdout.write(f"rejected ({exc.reason}): {exc.message}")
            sys.exit(1)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
            return
        self._print(report)

    def _print(self, report) -> None:
        lines = [
            f"fingerprint  {report.fingerprint_groups}",
            f"version      {report.version}",
            f"algorithm    {report.algorithm}",
            f"created      {report.created:%Y-%m-%d}",
            f"expires      {report.expires:%Y-%m-%d}" if report.expires else "expires      never",
            "usable until "
            + (f"{report.usable_until:%Y-%m-%d}" if report.usable_until else "no expiry"),
        ]
        for user_id in report.user_ids or ["(none)"]:
            lines.append(f"user ID      {printable(user_id)}")
        for sub in report.encryption_subkeys:
            state = "usable" if sub.usable else f"not usable: {sub.problem}"
            expiry = f"expires {sub.expires:%Y-%m-%d}" if sub.expires else "no expiry"
            lines.append(f"encryption   {sub.key_id.upper()} {sub.algorithm} {expiry} ({state})")
        for warning in report.warnings:
            lines.append(f"warning      {warning}")
        lines.append("usable       yes")
        self.stdout.write("\n".join(lines))
