"""Turn a stored raw message into parts, a customer match and a ticket.

Runs in the worker (see :mod:`sealmail.inbound.tasks`) after the raw
message was committed; it is idempotent, so a retried task does nothing
for a message that was already parsed.
"""

from __future__ import annotations

import logging
import re
from email.utils import parseaddr

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sealmail.contacts.models import Contact
from sealmail.core.mime.inbound import (
    ParsedMessage,
    SignatureStatus,
    parse_message,
)
from sealmail.inbound.models import InboundMessage, MessagePart, Ticket, TicketReply
from sealmail.inbound.openpgp import confirmed_keys, openpgp_for

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
        parsed = parse_message(bytes(message.raw), openpgp_for(_address(_outer_from(message))))
        new_ticket = _store(message, parsed)
    except Exception as exc:
        # Kept and shown as failed: the raw message stays available to staff.
        logger.exception("parsing inbound message %d failed", message_id)
        InboundMessage.objects.filter(pk=message_id).update(
            state=InboundMessage.State.FAILED,
            parse_error=f"{type(exc).__name__}: {exc}",
            parsed_at=timezone.now(),
        )
        return None
    message.refresh_from_db()
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


def _outer_from(message: InboundMessage) -> str:
    head = bytes(message.raw[:65536]).split(b"\r\n\r\n", 1)[0]
    match = re.search(rb"(?mi)^From:[ \t]*(.*)$", head)
    return match.group(1).decode("utf-8", "replace") if match else message.mail_from


def _address(value: str) -> str:
    return parseaddr(value)[1].strip().lower()


@transaction.atomic
def _store(message: InboundMessage, parsed: ParsedMessage) -> bool:
    """Store parts and security status and file the message; return True for a new ticket."""
    message = InboundMessage.objects.select_for_update().get(pk=message.pk)
    if message.state == InboundMessage.State.PARSED:
        return False
    MessagePart.objects.filter(message=message).delete()
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
            text=(part.text or "").replace("\x00", "\ufffd"),
            charset=part.charset or "",
            encryption=str(part.encryption),
            kind=part.kind,
            failure=part.failure.to_dict() if part.failure else None,
            signatures=[signature.to_dict() for signature in part.signatures],
            defects=part.defects,
        )
        for position, part in enumerate(parsed.parts)
    )
    contact = _match_contact(parsed)
    signer = _customer_signer(parsed, contact)
    ticket, new_ticket = _thread(message, parsed, contact)

    message.state = InboundMessage.State.PARSED
    message.parsed_at = timezone.now()
    message.ticket = ticket
    message.subject = _clean(parsed.subject)[:998]
    message.sender = _clean(parsed.sender)[:998]
    message.message_id = parsed.message_id[:998]
    message.in_reply_to = parsed.in_reply_to[:998]
    message.references = parsed.references[:100]
    message.encryption = str(parsed.encryption)
    message.signed_by_customer = signer is not None
    message.signer_fingerprint = signer or ""
    message.protected_headers = parsed.protected_headers
    message.repaired_mixed_up = parsed.repaired_mixed_up
    message.defects = [_clean(defect) for defect in parsed.defects[:200]]
    message.failures = [failure.to_dict() for failure in parsed.failures]
    message.save()
    return new_ticket


def _clean(value: str) -> str:
    return value.replace("\x00", "\ufffd")


def _good_whole_signers(parsed: ParsedMessage) -> list[str]:
    return [
        signature.signer_fingerprint
        for signature in parsed.whole_message_signatures()
        if signature.status is SignatureStatus.GOOD and signature.signer_fingerprint
    ]


def _match_contact(parsed: ParsedMessage) -> Contact | None:
    """Match by a confirmed key that signed the whole message, then by address."""
    for fingerprint in _good_whole_signers(parsed):
        key = confirmed_keys().filter(fingerprint__iexact=fingerprint).select_related("contact").first()
        if key is not None:
            return key.contact
    address = _address(parsed.sender)
    if not address:
        return None
    return (
        Contact.objects.filter(address__iexact=address)
        .select_related("customer", "active_key")
        .order_by("-encryption", "pk")
        .first()
    )


def _customer_signer(parsed: ParsedMessage, contact: Contact | None) -> str | None:
    """Return the fingerprint that makes the message "signed by the customer", if any.

    True only for a good signature over the whole (decrypted) message by the
    primary key of a confirmed key of the matched customer.
    """
    if contact is None:
        return None
    customer_keys = {
        fingerprint.lower()
        for fingerprint in confirmed_keys()
        .filter(contact__customer_id=contact.customer_id)
        .values_list("fingerprint", flat=True)
    }
    for fingerprint in _good_whole_signers(parsed):
        if fingerprint.lower() in customer_keys:
            return fingerprint.lower()
    return None


def _thread(message: InboundMessage, parsed: ParsedMessage, contact: Contact | None) -> tuple[Ticket, bool]:
    customer_id = contact.customer_id if contact else None
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
        contact=contact,
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
    reply = TicketReply.objects.filter(message_id__in=ids).select_related("ticket").first()
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
