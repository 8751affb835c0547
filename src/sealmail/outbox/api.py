"""The sending API: ``POST /api/v1/messages`` and ``GET /api/v1/messages/{id}``."""

from __future__ import annotations

import base64
import binascii
import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from django.http import HttpRequest, HttpResponse
from ninja import Field, Path, Router, Schema, Status

from sealmail.contacts.models import Contact, Customer
from sealmail.core.mime.message import Attachment
from sealmail.outbox.models import PUBLIC_CATEGORIES, OutboxMessage
from sealmail.outbox.service import (
    RequestInProgress,
    MAX_ATTACHMENT_BYTES,
    EnqueueError,
    contacts_of,
    enqueue_bulk_checked,
    redact_addresses,
)

logger = logging.getLogger(__name__)

router = Router(tags=["messages"])

# NOTE: sized so that one call with a template, at about 1.6 ms per recipient
# in a profile on a 2-CPU VM, stays within gunicorn's default 30 s timeout.
MAX_RECIPIENTS = 10_000
LOOKUP_CHUNK = 5_000

# Database ids are 64-bit; larger numbers cannot name a row, and SQLite raises
# OverflowError for them instead of finding nothing.
MAX_ID = 2**63 - 1
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]

CategoryName = Literal[PUBLIC_CATEGORIES]  # type: ignore[valid-type]
RoleName = Literal[tuple(Contact.Role.values)]  # type: ignore[valid-type]


class ErrorOut(Schema):
    detail: str
    field: str | None = None


class ValidationErrorOut(Schema):
    """The body of a 422 response: where the request did not match the schema."""

    detail: list[dict[str, Any]]


# Responses that every route may return besides its own: a missing or unknown
# token, a request that does not match the schema, or a body over the size limit.
COMMON_ERRORS: dict[int, type[Schema]] = {
    401: ErrorOut,
    413: ErrorOut,
    422: ValidationErrorOut,
}


class AttachmentIn(Schema):
    filename: str = Field(..., description="file name shown to the recipient")
    content_type: str = Field(..., description="MIME type, e.g. application/pdf")
    content: str = Field(..., description="file content, base64-encoded")


class MessageIn(Schema):
    """A message to one contact, to customers' contacts, or to many of each.

    Give at least one of ``contact``, ``contacts``, ``customer`` and
    ``customers``. A customer stands for all of its contacts, or for those in
    ``role``. Give ``text`` and/or ``html``, or a ``template`` name with its
    ``context``; without any of them the category's template is used.
    """

    contact: RowId | None = Field(None, description="contact id")
    contacts: list[RowId] = Field(default_factory=list, description="contact ids")
    customer: str | None = Field(None, description="customer account number")
    customers: list[str] = Field(
        default_factory=list, description="customer account numbers"
    )
    role: RoleName | None = Field(
        None, description="only the customers' contacts in this role"
    )
    category: CategoryName
    subject: str = Field("", description="subject; a template may supply it")
    text: str | None = None
    html: str | None = None
    template: str | None = Field(None, description="template name, e.g. invoice")
    context: dict[str, Any] | None = Field(None, description="template variables")
    attachments: list[AttachmentIn] = Field(default_factory=list)
    idempotency_key: str | None = Field(
        None,
        description="a repeated call with the same key returns the first call's "
        "messages instead of sending again",
    )
    in_reply_to: str | None = Field(None, description="Message-ID with <>")
    references: list[str] = Field(default_factory=list)


class MessageRef(Schema):
    id: int
    contact: int | None
    to_address: str
    status: str
    message_id: str


class MessagesCreated(Schema):
    messages: list[MessageRef]


class TlsOut(Schema):
    protocol: str
    cipher: str


class MessageOut(Schema):
    id: int
    status: Literal["queued", "sent", "held", "failed"]
    category: str
    contact: int | None
    customer: str | None
    to_address: str
    message_id: str
    subject: str
    attempts: int
    encrypted: bool
    encrypted_to: str | None = Field(
        None, description="fingerprint of the key the message was encrypted to"
    )
    signed_by: str | None
    format: str | None = Field(None, description="pgpmime, inline, signed or plain")
    relay_reply: str | None
    tls: TlsOut | None = Field(None, description="TLS of the relay connection, if any")
    error: str | None
    hold_reason: str | None
    created: datetime
    next_attempt: datetime | None
    sent_at: datetime | None


def _decode_attachments(items: list[AttachmentIn]) -> list[Attachment]:
    # Base64 carries 3 bytes in 4 characters; reject oversized input before decoding.
    max_encoded = (MAX_ATTACHMENT_BYTES + 2) // 3 * 4
    attachments = []
    for index, item in enumerate(items):
        field = f"attachments[{index}].content"
        compact = "".join(item.content.split())
        if len(compact) > max_encoded + 4:
            raise EnqueueError(
                field,
                f"attachment {item.filename!r} is larger than {MAX_ATTACHMENT_BYTES} "
                "bytes; send a smaller file",
            )
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise EnqueueError(
                field,
                f"attachment {item.filename!r} is not valid base64; encode the file "
                "with standard base64 (A-Z, a-z, 0-9, +, /, = padding)",
            ) from None
        attachments.append(Attachment(item.filename, item.content_type, data))
    return attachments


def _chunks(values: list, size: int = LOOKUP_CHUNK):
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _recipient_ids(payload: MessageIn) -> tuple[list[int], list[str]]:
    """Return the contact ids and account numbers that the request names, in order."""
    contact_ids = list(payload.contacts)
    if payload.contact is not None:
        contact_ids.insert(0, payload.contact)
    numbers = list(payload.customers)
    if payload.customer is not None:
        numbers.insert(0, payload.customer)
    return contact_ids, numbers


def _recipients_for_hash(payload: MessageIn) -> dict[str, Any]:
    """Return the recipients as the request names them, for the idempotency check."""
    contact_ids, numbers = _recipient_ids(payload)
    return {"contacts": contact_ids, "customers": numbers, "role": payload.role}


def _resolve_recipients(payload: MessageIn) -> list[Contact]:
    contact_ids, numbers = _recipient_ids(payload)
    if not contact_ids and not numbers:
        raise EnqueueError(
            "contact", "give a contact id, contact ids, a customer or customers"
        )
    for number in numbers:
        # PostgreSQL rejects NUL even in a lookup value.
        if "\x00" in number:
            raise EnqueueError(
                "customer", f"account number {number!r} contains a NUL character; remove it"
            )
    if len(contact_ids) + len(numbers) > MAX_RECIPIENTS:
        raise EnqueueError(
            "contacts",
            f"{len(contact_ids) + len(numbers)} recipients given; the maximum per "
            f"call is {MAX_RECIPIENTS}, so split the request",
        )
    contacts: dict[int, Contact] = {}
    if contact_ids:
        found: dict[int, Contact] = {}
        for chunk in _chunks(contact_ids):
            for contact in Contact.objects.filter(id__in=chunk).select_related(
                "customer"
            ):
                found[contact.pk] = contact
        missing = [pk for pk in contact_ids if pk not in found]
        if missing:
            raise EnqueueError(
                "contacts" if payload.contacts else "contact",
                f"contact {missing[0]} not found"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; list contact ids from POST /api/v1/customers",
            )
        for pk in contact_ids:
            contacts.setdefault(pk, found[pk])
    if numbers:
        customers: dict[str, Customer] = {}
        for chunk in _chunks(numbers):
            for customer in Customer.objects.filter(
                account_number__in=chunk
            ).defer("created", "updated"):
                customers[customer.account_number] = customer
        missing_numbers = [number for number in numbers if number not in customers]
        if missing_numbers:
            raise EnqueueError(
                "customers" if payload.customers else "customer",
                f"customer {missing_numbers[0]!r} not found"
                + (
                    f" (and {len(missing_numbers) - 1} more)"
                    if len(missing_numbers) > 1
                    else ""
                )
                + "; create it with POST /api/v1/customers",
            )
        ordered = list(dict.fromkeys(customers[number] for number in numbers))
        for chunk in _chunks(ordered):
            for contact in contacts_of(chunk, payload.role):
                contacts.setdefault(contact.pk, contact)
    return list(contacts.values())


def _ref(message: OutboxMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "contact": message.contact_id,
        "to_address": message.to_address,
        "status": message.status,
        "message_id": message.message_id,
    }


@router.post(
    "",
    response={
        201: MessagesCreated,
        200: MessagesCreated,
        400: ErrorOut,
        409: ErrorOut,
        **COMMON_ERRORS,
        # An idempotency key reused for other content, or a schema mismatch.
        422: ErrorOut | ValidationErrorOut,
    },
    summary="Send a message to contacts or customers",
)
def create_messages(request: HttpRequest, payload: MessageIn, response: HttpResponse):
    """Store one message per recipient contact and queue it for delivery.

    Returns 201 with one id per recipient contact, or 200 with the first
    call's ids when ``idempotency_key`` was used before with the same
    content. A call with an ``idempotency_key`` and more than 1,000
    recipients commits them in chunks of 1,000, and delivery starts with
    the first chunk. If such a call
    fails midway, the stored messages go out, and a repeat with the same
    ``idempotency_key`` stores only the rest; while the first call is
    still storing, a repeat gets 409 with Retry-After. Without a key, a call
    is stored in one transaction, so one that fails stores nothing. A key
    reused for other content gets 422. Errors name the ``field`` and
    explain how to fix it.
    """
    # Token names have up to 100 characters, like the source column.
    source = f"api:{request.auth.name}"[:100]
    try:
        contacts = _resolve_recipients(payload)
        attachments = _decode_attachments(payload.attachments)
        messages, repeated = enqueue_bulk_checked(
            contacts,
            category=payload.category,
            subject=payload.subject,
            text=payload.text,
            html=payload.html,
            template=payload.template,
            context=payload.context,
            attachments=attachments,
            idempotency_key=payload.idempotency_key,
            in_reply_to=payload.in_reply_to,
            references=payload.references,
            source=source,
            internal=False,
            recipients=_recipients_for_hash(payload),
        )
    except EnqueueError as exc:
        logger.info(
            "message request rejected: field %s: %s",
            exc.field,
            redact_addresses(exc.message),
        )
        if isinstance(exc, RequestInProgress):
            response["Retry-After"] = str(exc.retry_after)
        return Status(exc.status, {"detail": exc.message, "field": exc.field})
    status = 200 if repeated else 201
    return Status(status, {"messages": [_ref(message) for message in messages]})


@router.get(
    "/{message_id}",
    response={200: MessageOut, 404: ErrorOut, **COMMON_ERRORS},
    summary="Delivery status of one message",
)
def get_message(
    request: HttpRequest, message_id: Annotated[int, Path(ge=1, le=MAX_ID)]
):
    """Return the status, attempts, encryption, relay reply and TLS of a message."""
    message = (
        OutboxMessage.objects.filter(pk=message_id)
        .select_related("customer")
        .defer("composed", "text", "html")
        .first()
    )
    if message is None:
        return Status(
            404,
            {
                "detail": f"message {message_id} not found; use an id that "
                "POST /api/v1/messages returned",
                "field": "id",
            },
        )
    return Status(
        200,
        {
            "id": message.pk,
            "status": message.status,
            "category": message.category,
            "contact": message.contact_id,
            "customer": message.customer.account_number if message.customer else None,
            "to_address": message.to_address,
            "message_id": message.message_id,
            "subject": message.subject,
            "attempts": message.attempts,
            "encrypted": message.encrypted,
            "encrypted_to": message.encrypted_to or None,
            "signed_by": message.signed_by or None,
            "format": message.format or None,
            "relay_reply": message.relay_reply or None,
            "tls": (
                {"protocol": message.tls_protocol, "cipher": message.tls_cipher}
                if message.tls_protocol
                else None
            ),
            "error": message.error or None,
            "hold_reason": message.hold_reason or None,
            "created": message.created,
            "next_attempt": (
                message.next_attempt
                if message.status == OutboxMessage.Status.QUEUED
                else None
            ),
            "sent_at": message.sent_at,
        },
    )
