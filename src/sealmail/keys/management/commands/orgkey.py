"""``sealmail orgkey``: generate, import, list, export and rotate provider keys."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.core.errors import KeyStoreError
from sealmail.keys.store import get_keystore, provider_user_ids


class Command(BaseCommand):
    help = (
        "Manage the provider's OpenPGP keys: the key that signs outgoing mail and the "
        "keys that decrypt mail to the role addresses."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        generate = sub.add_parser(
            "generate", help="generate an Ed25519/Cv25519 key (v4, readable by GnuPG 2.2)"
        )
        generate.add_argument(
            "--if-missing",
            action="store_true",
            help="do nothing when a provider key (or the role's key) already exists",
        )
        generate.add_argument(
            "--role", metavar="ADDRESS", help="generate a decryption key for this role address"
        )
        generate.add_argument(
            "--user-id",
            action="append",
            metavar="UID",
            help="user ID of the new key (repeatable); default: the sender and role addresses",
        )

        import_ = sub.add_parser("import", help="import an armored or binary secret key")
        import_.add_argument("file", help="key file, or - for standard input")
        import_.add_argument("--role", metavar="ADDRESS", help="use the key for this role address")
        import_.add_argument(
            "--passphrase-env",
            metavar="VARIABLE",
            help="environment variable that contains the key's passphrase "
            "(default SEALMAIL_KEY_PASSPHRASE)",
        )
        import_.add_argument(
            "--passphrase-file", metavar="PATH", help="file whose first line is the passphrase"
        )
        import_.add_argument(
            "--no-current",
            action="store_true",
            help="keep the current signing key; the imported key only decrypts",
        )

        listing = sub.add_parser("list", help="list provider and role keys")
        listing.add_argument("--json", action="store_true", help="print a JSON array")

        export = sub.add_parser("export", help="print a public key (armored)")
        export.add_argument("fingerprint", nargs="?", help="default: the current signing key")
        export.add_argument("--role", metavar="ADDRESS", help="the key published for this address")

        rotate = sub.add_parser(
            "rotate", help="generate a new signing key; old keys keep decrypting"
        )
        rotate.add_argument(
            "--role", metavar="ADDRESS", help="replace this role address's own key instead"
        )

    def handle(self, *args, action: str, **options) -> None:
        store = get_keystore()
        try:
            getattr(self, f"_{action}")(store, options)
        except KeyStoreError as exc:
            raise CommandError(str(exc)) from None

    def _generate(self, store, options) -> None:
        role = options.get("role")
        if options.get("if_missing"):
            if role is None and not store.is_empty():
                self.stdout.write(f"provider key {store.current_fingerprint().upper()} exists")
                return
            if role is not None and role.lower() in store.roles():
                self.stdout.write(f"role {role} already has a key")
                return
        user_ids = options.get("user_id") or ([f"<{role}>"] if role else provider_user_ids())
        cert = store.generate(user_ids, role=role)
        description = f"key for role {role}" if role else "provider key"
        self.stdout.write(f"generated {description} {cert.fingerprint.upper()}")

    def _import(self, store, options) -> None:
        source = options["file"]
        try:
            data = sys.stdin.buffer.read() if source == "-" else Path(source).read_bytes()
        except OSError as exc:
            raise CommandError(f"cannot read {source!r}: {exc.strerror}") from None
        key = store.import_key(
            data,
            role=options.get("role"),
            make_current=not options.get("no_current"),
            passphrase_env=options.get("passphrase_env"),
            passphrase_file=options.get("passphrase_file"),
        )
        for warning in key.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(f"imported key {key.fingerprint.upper()} ({key.algorithm})")

    def _list(self, store, options) -> None:
        keys = store.list()
        if options.get("json"):
            rows = [
                {
                    "fingerprint": key.fingerprint,
                    "role": key.role,
                    "current": key.current,
                    "retired": key.retired.isoformat() if key.retired else None,
                    "added": key.added.isoformat(),
                    "algorithm": key.algorithm,
                    "user_ids": key.user_ids,
                    "protected": key.protected,
                    "warnings": key.warnings,
                }
                for key in keys
            ]
            self.stdout.write(json.dumps(rows, indent=2))
            return
        if not keys:
            self.stdout.write("no keys; run `sealmail orgkey generate`")
            return
        for key in keys:
            if key.current:
                state = "signing"
            elif key.role and not key.retired:
                state = f"role {key.role}"
            elif key.retired:
                state = f"retired {key.retired:%Y-%m-%d}, decrypts"
            else:
                state = "decrypts"
            self.stdout.write(
                f"{key.fingerprint.upper()}  {key.algorithm:<8} {state}  {', '.join(key.user_ids)}"
            )

    def _export(self, store, options) -> None:
        if options.get("role"):
            self.stdout.write(str(store.certificate_for_address(options["role"])), ending="")
        else:
            self.stdout.write(store.export(options.get("fingerprint")), ending="")

    def _rotate(self, store, options) -> None:
        role = options.get("role")
        if role:
            cert = store.generate([f"<{role}>"], role=role)
            self.stdout.write(f"new key for role {role}: {cert.fingerprint.upper()}")
            return
        old = store.current_fingerprint()
        cert = store.rotate()
        self.stdout.write(
            f"new signing key {cert.fingerprint.upper()}; {old.upper()} keeps decrypting"
        )
