"""``sealmail outbox``: inspect the outbox and queue failed or held mail again."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Count
from django.utils import timezone

from sealmail.contacts.models import Contact
from sealmail.outbox.delivery import sweep
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.service import release_held, schedule_delivery


class Command(BaseCommand):
    help = "Show outbox counts, retry failed messages, release held ones or sweep."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("status", help="count messages by status")
        retry = sub.add_parser("retry", help="queue failed messages again")
        retry.add_argument("ids", nargs="+", type=int, help="message ids")
        release = sub.add_parser(
            "release", help="queue the held messages of a contact again"
        )
        release.add_argument("contact", type=int, help="contact id")
        sub.add_parser(
            "sweep",
            help="queue messages whose task was lost (the worker does this every minute)",
        )

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "status":
            counts = dict(
                OutboxMessage.objects.values_list("status").annotate(n=Count("id"))
            )
            for status in OutboxMessage.Status.values:
                self.stdout.write(f"{status}\t{counts.get(status, 0)}")
        elif action == "retry":
            ids = options["ids"]
            found = set(
                OutboxMessage.objects.filter(
                    id__in=ids, status=OutboxMessage.Status.FAILED
                ).values_list("id", flat=True)
            )
            missing = [pk for pk in ids if pk not in found]
            if missing:
                raise CommandError(
                    f"message {missing[0]} is not a failed message; "
                    "`sealmail outbox status` shows the counts"
                )
            OutboxMessage.objects.filter(id__in=found).update(
                status=OutboxMessage.Status.QUEUED,
                attempts=0,
                next_attempt=timezone.now(),
                lease_until=None,
                error="",
            )
            schedule_delivery(sorted(found))
            self.stdout.write(f"queued {len(found)} message(s) again")
        elif action == "release":
            contact = Contact.objects.filter(pk=options["contact"]).first()
            if contact is None:
                raise CommandError(f"contact {options['contact']} not found")
            self.stdout.write(f"released {release_held(contact)} message(s)")
        else:
            queued, released = sweep()
            self.stdout.write(f"queued {queued} message(s) again, released {released}")
