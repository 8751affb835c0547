from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from sealmail.keys.store import get_keystore


class Command(BaseCommand):
    help = "Manage the provider's OpenPGP keys (minimal: generate)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        generate = sub.add_parser("generate", help="generate an Ed25519/Cv25519 provider key")
        generate.add_argument("--if-missing", action="store_true")

    def handle(self, *args, action: str, **options) -> None:
        store = get_keystore()
        if options.get("if_missing") and not store.is_empty():
            return
        cert = store.generate([f"<{settings.SEALMAIL_FROM}>"])
        self.stdout.write(f"generated provider key {cert.fingerprint.upper()}")
