"""Turn a stored raw message into parts, a customer match and a ticket.

The worker runs this (see :mod:`sealmail.inbound.tasks`) after the raw
message was committed. It is idempotent, so a retried task does nothing
for a message that was already parsed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from email.utils import parseaddr

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from sealmail.core.mime.inbound import (
    ParsedMessage,
    SignatureStatus,
    contradicted_signers,
    parse_message,
)
from sealmail.inbound import rows
from sealmail.inbound.lookups import contact_by_address, waiting_in_slot
from sealmail.inbound.models import InboundMessage, MessagePart, Ticket, TicketReply
from sealmail.inbound.openpgp import CertificateLookup, openpgp_for, parse_limits

logger = logging.getLogger(__name__)

TICKET_REFERENCE = re.compile(r"\[SM-(\d{1,18})\]")

# Maximum messages and raw bytes that one worker task parses in one
# transaction. The raw messages and their parsed parts stay in memory until
# the commit.
BATCH_SIZE = 50
BATCH_BYTES = 16 * 1024 * 1024
# Messages are batched by id modulo this number (see process_pending).
BATCH_SLOTS = 8


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
        parsed = parse_message(bytes(message.raw), openpgp_for(lookup), parse_limits())
        new_ticket = _store(message, parsed, lookup)
    except AlreadyParsed:
        return InboundMessage.objects.defer("raw").get(pk=message_id)
    except Exception as exc:
        _mark_failed(message_id, exc)
        return None
    _filed(message, new_ticket)
    return message


def _filed(message: InboundMessage, new_ticket: bool) -> None:
    """Log a filed message and acknowledge a new ticket, after the commit."""
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


def process_pending(
    message_id: int, batch_size: int = BATCH_SIZE, batch_bytes: int = BATCH_BYTES
) -> int:
    """Parse ``message_id`` together with other messages waiting in its slot.

    Messages fall into ``BATCH_SLOTS`` slots by id, and a call parses the
    waiting messages of one slot only, so workers that run the queued
    tasks in order mostly work on disjoint batches. Where two batches do
    overlap, one worker files the message and the other skips it, which
    wastes the second worker's parsing and decryption of it.
    ``message_id`` comes first when it is still waiting, and further
    messages join while the batch stays within ``batch_size`` messages and
    ``batch_bytes`` raw bytes. Returns the number of messages this call
    parsed or marked failed.
    """
    ids, total = [], 0
    for pk, size in waiting_in_slot(message_id, BATCH_SLOTS, batch_size):
        if ids and total + size > batch_bytes:
            break
        ids.append(pk)
        total += size
    if not ids:
        return 0
    messages = InboundMessage.objects.filter(pk__in=ids).order_by("pk")
    waiting = [
        message
        for message in messages
        if message.state == InboundMessage.State.RECEIVED
    ]
    return _process_loaded(waiting)


def process_batch(message_ids: list[int]) -> int:
    """Parse the messages ``message_ids`` and file them in one transaction.

    This is :func:`process` for many messages at once: one query loads
    them, and one transaction with one insert of all parts stores them.
    Each message is filed in its own savepoint, so a message that another
    worker parsed first is skipped without undoing the others. When the
    batch transaction fails, each message is processed again on its own.
    Messages no longer waiting to be parsed are skipped.
    Returns the number of messages this call parsed or marked failed.
    """
    messages = list(
        InboundMessage.objects.filter(
            pk__in=message_ids, state=InboundMessage.State.RECEIVED
        ).order_by("pk")
    )
    return _process_loaded(messages)


def _process_loaded(messages: list[InboundMessage]) -> int:
    parsed_messages = []
    failed = 0
    for message in messages:
        try:
            lookup = CertificateLookup(_address(_outer_from(message)))
            parsed = parse_message(bytes(message.raw), openpgp_for(lookup), parse_limits())
        except Exception as exc:
            _mark_failed(message.pk, exc)
            failed += 1
            continue
        parsed_messages.append((message, parsed, lookup))
    if not parsed_messages:
        return failed

    contacts: dict[str, tuple[int, int] | None] = {}

    def find_contact(address: str) -> tuple[int, int] | None:
        # Cached for this batch only, so the next batch reads changed contacts.
        if address not in contacts:
            contacts[address] = contact_by_address(address)
        return contacts[address]

    filed = []
    try:
        with transaction.atomic():
            parts: list[MessagePart] = []
            for message, parsed, lookup in parsed_messages:
                try:
                    with transaction.atomic():
                        new_ticket = _file(message, parsed, lookup, find_contact)
                except AlreadyParsed:
                    continue
                parts.extend(_parts(message, parsed))
                filed.append((message, new_ticket))
            MessagePart.objects.bulk_create(parts)
    except Exception:
        logger.exception(
            "storing a batch of %d inbound messages failed; processing each alone",
            len(parsed_messages),
        )
        for message, _, _ in parsed_messages:
            process(message.pk)
        return failed + len(parsed_messages)
    for message, new_ticket in filed:
        _filed(message, new_ticket)
    return failed + len(filed)


def _mark_failed(message_id: int, exc: Exception) -> None:
    # Kept and shown as failed: the raw message stays available to staff.
    logger.exception("parsing inbound message %d failed", message_id)
    InboundMessage.objects.filter(pk=message_id).update(
        state=InboundMessage.State.FAILED,
        parse_error=f"{type(exc).__name__}: {exc}",
        parsed_at=timezone.now(),
    )


def reparse(message_id: int) -> InboundMessage | None:
    """Parse a stored message again, e.g. after importing the key it was encrypted to.

    The old parts are replaced; the message keeps its ticket and no
    acknowledgement is sent again.
    """
    with transaction.atomic():
        MessagePart.objects.filter(message_id=message_id).delete()
        InboundMessage.objects.filter(pk=message_id).update(
            state=InboundMessage.State.RECEIVED, parse_error=""
        )
    return process(message_id)


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
    new_ticket = _file(message, parsed, lookup, contact_by_address)
    MessagePart.objects.bulk_create(_parts(message, parsed))
    return new_ticket


def _parts(message: InboundMessage, parsed: ParsedMessage) -> list[MessagePart]:
    return [
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
    ]


def _file(
    message: InboundMessage,
    parsed: ParsedMessage,
    lookup: CertificateLookup,
    find_contact: Callable[[str], tuple[int, int] | None],
) -> bool:
    """File the message in a ticket and mark it parsed.

    Returns True when it opened a new ticket. Raises :class:`AlreadyParsed`
    when another worker marked the message parsed first, so the caller must
    run this in a transaction or savepoint that the exception rolls back.
    """
    contact, signer = _match(parsed, lookup, find_contact)
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
    if not _mark_parsed(message):
        raise AlreadyParsed(message.pk)
    return new_ticket


def _mark_parsed(message: InboundMessage) -> bool:
    """Write the parsed fields unless the row is parsed already.

    Returns True when the row was written. This is the ORM's
    ``filter().exclude().update()`` written as plain SQL, because building
    that query cost more CPU than running it. The values go through each
    field's ``get_db_prep_save()``, as the ORM does.
    """
    fields = [InboundMessage._meta.get_field(name) for name in _PARSED_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = (
        f"UPDATE {quote(InboundMessage._meta.db_table)} SET {assignments} "
        f"WHERE {quote(InboundMessage._meta.pk.column)} = %s "
        f"AND {quote(InboundMessage._meta.get_field('state').column)} <> %s"
    )
    params = [
        field.get_db_prep_save(getattr(message, field.attname), connection)
        for field in fields
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, message.pk, InboundMessage.State.PARSED.value])
        return cursor.rowcount == 1


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
    parsed: ParsedMessage,
    lookup: CertificateLookup,
    find_contact: Callable[[str], tuple[int, int] | None],
) -> tuple[tuple[int, int] | None, str | None]:
    """Return the sender's (contact id, customer id) and the "signed by the customer" key.

    A good signature over the whole (decrypted) message by a confirmed key
    identifies the contact that key belongs to, and counts as signed by the
    customer. Otherwise the contact is matched by address and the message
    is not signed by the customer. Every certificate the OpenPGP layer
    verified with came from ``lookup``, which offers confirmed keys only.
    A From address of another customer's contact wins over the signature,
    so staff never see that customer's mail marked as signed by another.
    A key that also made a failing signature over the whole message does
    not count either.
    """
    address = _address(parsed.sender)
    by_address = find_contact(address) if address else None
    signatures = parsed.whole_message_signatures()
    contradicted = contradicted_signers(
        (signature.status, signature.signer_fingerprint) for signature in signatures
    )
    for signature in signatures:
        if (
            signature.status is not SignatureStatus.GOOD
            or not signature.signer_fingerprint
        ):
            continue
        fingerprint = signature.signer_fingerprint.lower()
        if fingerprint not in lookup.offered:
            continue
        if fingerprint in contradicted:
            logger.warning(
                "key %s made a good and a failing signature over the message, so the "
                "message is not counted as signed by the customer",
                fingerprint,
            )
            continue
        signer = lookup.offered[fingerprint]
        if by_address is not None and by_address[1] != signer[1]:
            logger.warning(
                "signer key %s belongs to customer %d but the From address to customer "
                "%d, so the message is not counted as signed by the customer",
                fingerprint,
                signer[1],
                by_address[1],
            )
            continue
        return signer, fingerprint
    return by_address, None


def _thread(
    message: InboundMessage, parsed: ParsedMessage, contact: tuple[int, int] | None
) -> tuple[Ticket, bool]:
    contact_id, customer_id = contact if contact else (None, None)
    if message.ticket_id is not None:
        # Parsed again (see reparse): the message keeps its ticket.
        return message.ticket, False
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
    ticket = Ticket(
        queue=queue,
        subject=_clean(TICKET_REFERENCE.sub("", parsed.subject).strip())[:998],
        customer_id=customer_id,
        contact_id=contact_id,
    )
    rows.insert(ticket)
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
