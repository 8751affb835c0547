"""Turn a stored raw message into parts, a customer match and a ticket.

The worker runs this (see :mod:`sealmail.inbound.tasks`) after the raw
message was committed. It is idempotent, so a retried task does nothing
for a message that was already parsed.
"""

from __future__ import annotations

import logging
import re
from email.utils import parseaddr

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sealmail.core.mime.inbound import (
    ParsedMessage,
    SignatureStatus,
    parse_message,
)
from sealmail.inbound.lookups import contact_by_address
from sealmail.inbound.models import InboundMessage, MessagePart, Ticket, TicketReply
from sealmail.inbound.openpgp import CertificateLookup, openpgp_for

logger = logging.getLogger(__name__)

TICKET_REFERENCE = re.compile(r"\[SM-(\d{1,18})\]")


def process(message_id: int) -> InboundMessage | None:
    """Parse inbound message ``message_id`` and file it in a ticket."""
    try:
        message = InboundMessage.objects.get(pk=message_id)
    except InboundMessage.DoesNotExist:
        logger.warning("inbound message %d not found; nothing to parse", message_id)
        return None
    if message.state == InboundMessage.State.PARSED:
        return message
    try:
        lookup = CertificateLookup(_address(_outer_from(message)))
        parsed = parse_message(bytes(message.raw), openpgp_for(lookup))
        new_ticket = _store(message, parsed, lookup)
    except AlreadyParsed:
        return InboundMessage.objects.defer("raw").get(pk=message_id)
    except Exception as exc:
        # Kept and shown as failed: the raw message stays available to staff.
        logger.exception("parsing inbound message %d failed", message_id)
        InboundMessage.objects.filter(pk=message_id).update(
            state=InboundMessage.State.FAILED,
            parse_error=f"{type(exc).__name__}: {exc}",
            parsed_at=timezone.now(),
        )
        return None
    logger.info(
        "inbound message %d parsed into ticket %s (%s, encryption %s)",
        message.pk,
        message.ticket_id,
        "new" if new_ticket else "existing",
        message.encryption,
    )
    if new_ticket and settings.SEALMAIL_INBOUND_ACKNOWLEDGE:
        from sealmail.inbound.replies import acknowledge

        acknowledge(message)
    return message


class AlreadyParsed(Exception):
    """Another worker filed the message first; this attempt is rolled back."""


def _outer_from(message: InboundMessage) -> str:
    head = bytes(message.raw[:65536]).split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"(?mi)^From:[ \t]*(.*)$", head)
    return match.group(1).decode("utf-8", "replace") if match else message.mail_from


def _address(value: str) -> str:
    return parseaddr(value)[1].strip().lower()


@transaction.atomic
def _store(
    message: InboundMessage, parsed: ParsedMessage, lookup: CertificateLookup
) -> bool:
    """Store parts and security status and file the message; True for a new ticket."""
    MessagePart.objects.bulk_create(
        MessagePart(
            message=message,
            position=position,
            path=part.path,
            content_type=part.content_type[:255],
            filename=(part.filename or "")[:255],
            original_filename=(part.original_filename or "")[:255],
            is_attachment=part.is_attachment,
            content=part.content,
            text=_clean(part.text or ""),
            charset=part.charset or "",
            encryption=str(part.encryption),
            kind=part.kind,
            failure=part.failure.to_dict() if part.failure else None,
            signatures=[signature.to_dict() for signature in part.signatures],
            defects=part.defects,
        )
        for position, part in enumerate(parsed.parts)
    )
    contact, signer = _match(parsed, lookup)
    ticket, new_ticket = _thread(message, parsed, contact)

    message.state = InboundMessage.State.PARSED
    message.parse_error = ""
    message.parsed_at = timezone.now()
    message.ticket = ticket
    message.subject = _clean(parsed.subject)[:998]
    message.sender = _clean(parsed.sender)[:998]
    message.message_id = _clean(parsed.message_id)[:998]
    message.in_reply_to = _clean(parsed.in_reply_to)[:998]
    message.references = [_clean(reference) for reference in parsed.references[:100]]
    message.encryption = str(parsed.encryption)
    message.signed_by_customer = signer is not None
    message.signer_fingerprint = signer or ""
    message.protected_headers = parsed.protected_headers
    message.repaired_mixed_up = parsed.repaired_mixed_up
    message.defects = [_clean(defect) for defect in parsed.defects[:200]]
    message.failures = [failure.to_dict() for failure in parsed.failures]
    updated = (
        InboundMessage.objects.filter(pk=message.pk)
        .exclude(state=InboundMessage.State.PARSED)
        .update(**{name: getattr(message, name) for name in _PARSED_FIELDS})
    )
    if updated != 1:
        raise AlreadyParsed(message.pk)
    return new_ticket


_PARSED_FIELDS = [
    "state",
    "parse_error",
    "parsed_at",
    "ticket",
    "subject",
    "sender",
    "message_id",
    "in_reply_to",
    "references",
    "encryption",
    "signed_by_customer",
    "signer_fingerprint",
    "protected_headers",
    "repaired_mixed_up",
    "defects",
    "failures",
]


def _clean(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def _match(
    parsed: ParsedMessage, lookup: CertificateLookup
) -> tuple[tuple[int, int] | None, str | None]:
    """Return the sender's (contact id, customer id) and the "signed by the customer" key.

    A good signature over the whole (decrypted) message by a confirmed key
    identifies the contact that key belongs to, and counts as signed by the
    customer. Otherwise the contact is matched by address and the message
    is not signed by the customer. Every certificate the OpenPGP layer
    verified with came from ``lookup``, which offers confirmed keys only.
    """
    for signature in parsed.whole_message_signatures():
        if (
            signature.status is not SignatureStatus.GOOD
            or not signature.signer_fingerprint
        ):
            continue
        fingerprint = signature.signer_fingerprint.lower()
        if fingerprint in lookup.offered:
            return lookup.offered[fingerprint], fingerprint
    address = _address(parsed.sender)
    if not address:
        return None, None
    return contact_by_address(address), None


def _thread(
    message: InboundMessage, parsed: ParsedMessage, contact: tuple[int, int] | None
) -> tuple[Ticket, bool]:
    contact_id, customer_id = contact if contact else (None, None)
    ticket = _referenced_ticket(parsed)
    if ticket is not None and ticket.customer_id not in (None, customer_id):
        logger.warning(
            "inbound message %d names ticket %d of another customer; opening a new ticket",
            message.pk,
            ticket.pk,
        )
        ticket = None
    if ticket is not None:
        if ticket.status != Ticket.Status.OPEN:
            ticket.status = Ticket.Status.OPEN
        ticket.save()
        return ticket, False
    queue = _queue(message)
    ticket = Ticket.objects.create(
        queue=queue,
        subject=_clean(TICKET_REFERENCE.sub("", parsed.subject).strip())[:998],
        customer_id=customer_id,
        contact_id=contact_id,
    )
    return ticket, True


def _referenced_ticket(parsed: ParsedMessage) -> Ticket | None:
    for match in TICKET_REFERENCE.finditer(parsed.subject):
        ticket = Ticket.objects.filter(pk=int(match.group(1))).first()
        if ticket is not None:
            return ticket
    ids = [parsed.in_reply_to, *parsed.references]
    ids = [value for value in ids if value]
    if not ids:
        return None
    reply = (
        TicketReply.objects.filter(message_id__in=ids).select_related("ticket").first()
    )
    if reply is not None:
        return reply.ticket
    earlier = (
        InboundMessage.objects.filter(message_id__in=ids, ticket__isnull=False)
        .select_related("ticket")
        .first()
    )
    return earlier.ticket if earlier else None


def _queue(message: InboundMessage) -> str:
    roles = {address.lower() for address in settings.SEALMAIL_ROLE_ADDRESSES}
    for address in message.rcpt_to:
        if address.lower() in roles:
            return address.lower()
    return message.rcpt_to[0].lower() if message.rcpt_to else ""
