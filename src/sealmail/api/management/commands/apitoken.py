from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import IntegrityError

from sealmail.api.models import ApiToken


class Command(BaseCommand):
    help = "Create, list or revoke the bearer tokens that calling systems use."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create a token and print it once")
        create.add_argument("name", help="name of the calling system, e.g. billing")
        sub.add_parser("list", help="list tokens (never their values)")
        revoke = sub.add_parser("revoke", help="revoke the token of a system")
        revoke.add_argument("name")

    def handle(self, *args, action: str, **options) -> None:
        if action == "create":
            name = options["name"].strip()
            if not name:
                raise CommandError("the token name is empty; give the calling system's name")
            try:
                _, token = ApiToken.issue(name)
            except IntegrityError:
                raise CommandError(
                    f"a token named {name!r} already exists; revoke it first or pick another name"
                ) from None
            self.stdout.write(token)
        elif action == "list":
            for item in ApiToken.objects.order_by("name"):
                state = "active" if item.active else "revoked"
                last = item.last_used.isoformat() if item.last_used else "never used"
                self.stdout.write(f"{item.name}\t{state}\t{last}")
        else:
            updated = ApiToken.objects.filter(name=options["name"]).update(active=False)
            if not updated:
                raise CommandError(f"no token named {options['name']!r}; see `sealmail apitoken list`")
            self.stdout.write(f"revoked {options['name']}")
