"""``sealmail send``: queue a message from the command line."""

from __future__ import annotations

import json
import mimetypes
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sealmail.contacts.models import Contact, Customer
from sealmail.core.mime.message import Attachment
from sealmail.outbox.models import PUBLIC_CATEGORIES
from sealmail.outbox.service import EnqueueError, enqueue


def _read_text(value: str | None) -> str | None:
    """Read ``-`` from stdin, ``@PATH`` from a file, else use the value itself."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {str(path)!r}: {exc.strerror}") from exc
    return value


def _attachment(spec: str) -> Attachment:
    path_text, _sep, content_type = spec.partition(";")
    path = Path(path_text)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CommandError(
            f"cannot read attachment {str(path)!r}: {exc.strerror}"
        ) from exc
    if not content_type:
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(path.name, content_type, data)


class Command(BaseCommand):
    help = (
        "Queue a message to a contact or to all contacts of a customer; prints one "
        "line per recipient with the message id, the address and the Message-ID."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--contact", type=int, help="contact id")
        target.add_argument("--customer", help="customer account number")
        parser.add_argument(
            "--role",
            choices=Contact.Role.values,
            help="with --customer: only the contacts in this role",
        )
        parser.add_argument("--category", required=True, choices=PUBLIC_CATEGORIES)
        parser.add_argument("--subject", default="", help="subject line")
        parser.add_argument(
            "--text", help="text body; '-' reads stdin, '@FILE' reads a file"
        )
        parser.add_argument("--html", help="HTML body; '@FILE' reads a file")
        parser.add_argument("--template", help="template name, e.g. invoice")
        parser.add_argument(
            "--context",
            help="template variables as a JSON object, or '@FILE' with one",
        )
        parser.add_argument(
            "--attach",
            action="append",
            default=[],
            metavar="FILE[;TYPE]",
            help="attach FILE, with its MIME type guessed from the name unless given",
        )
        parser.add_argument(
            "--idempotency-key",
            help="repeating the command with this key does not send again",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        contact = customer = None
        if options["contact"] is not None:
            contact = Contact.objects.filter(pk=options["contact"]).first()
            if contact is None:
                raise CommandError(f"contact {options['contact']} not found")
        else:
            customer = Customer.objects.filter(
                account_number=options["customer"]
            ).first()
            if customer is None:
                raise CommandError(
                    f"customer {options['customer']!r} not found; create it with "
                    "POST /api/v1/customers"
                )
        context = None
        if options["context"] is not None:
            raw = _read_text(options["context"]) or ""
            try:
                context = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise CommandError(f"--context is not valid JSON: {exc}") from exc
        try:
            messages = enqueue(
                contact,
                customer=customer,
                role=options["role"],
                category=options["category"],
                subject=options["subject"],
                text=_read_text(options["text"]),
                html=_read_text(options["html"]),
                template=options["template"],
                context=context,
                attachments=[_attachment(spec) for spec in options["attach"]],
                idempotency_key=options["idempotency_key"],
                source="cli",
            )
        except EnqueueError as exc:
            raise CommandError(f"{exc.field}: {exc.message}") from exc
        for message in messages:
            self.stdout.write(
                f"{message.pk}\t{message.to_address}\t{message.message_id}"
            )
