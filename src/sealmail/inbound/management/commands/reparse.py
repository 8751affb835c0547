from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.inbound.models import InboundMessage
from sealmail.inbound.processing import reparse


class Command(BaseCommand):
    help = (
        "Parse stored inbound messages again, for example after importing the key "
        "they were encrypted to. Messages keep their tickets."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("ids", nargs="*", type=int, help="inbound message ids")
        parser.add_argument(
            "--failed", action="store_true", help="every message whose parsing failed"
        )
        parser.add_argument(
            "--undecrypted",
            action="store_true",
            help="every message with a part that could not be decrypted",
        )

    def handle(
        self, *args, ids: list[int], failed: bool, undecrypted: bool, **options
    ) -> None:
        selected = set(ids)
        if failed:
            selected.update(
                InboundMessage.objects.filter(
                    state=InboundMessage.State.FAILED
                ).values_list("pk", flat=True)
            )
        if undecrypted:
            selected.update(
                InboundMessage.objects.filter(parts__encryption="failed").values_list(
                    "pk", flat=True
                )
            )
        if not selected:
            raise CommandError(
                "no message selected; give message ids, --failed or --undecrypted"
            )
        missing = selected - set(
            InboundMessage.objects.filter(pk__in=selected).values_list("pk", flat=True)
        )
        if missing:
            raise CommandError(f"inbound messages not found: {sorted(missing)}")
        for message_id in sorted(selected):
            message = reparse(message_id)
            state = message.get_state_display() if message else "parsing failed"
            self.stdout.write(f"inbound message {message_id}: {state}")
