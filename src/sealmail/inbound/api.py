"""``GET /api/v1/tickets`` and ``GET /api/v1/tickets/{id}``: tickets for other tools."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.shortcuts import get_object_or_404
from ninja import Query, Router, Schema

from sealmail.inbound.models import InboundMessage, MessagePart, Ticket

router = Router(tags=["tickets"])


class SignatureOut(Schema):
    status: str
    scope: str
    signer_fingerprint: str | None = None
    key_id: str | None = None
    hash_algorithm: str | None = None
    kind: str = ""


class FailureOut(Schema):
    reason: str
    message: str
    recipient_key_ids: list[str] = []


class PartOut(Schema):
    id: int
    path: str
    content_type: str
    filename: str
    original_filename: str
    is_attachment: bool
    size: int
    encryption: str
    kind: str
    failure: FailureOut | None = None
    signatures: list[SignatureOut]
    text: str | None = None


class MessageOut(Schema):
    id: int
    received_at: datetime
    protocol: str
    state: str
    subject: str
    sender: str
    message_id: str
    encryption: str
    signed_by_customer: bool
    signer_fingerprint: str
    protected_headers: bool
    repaired_mixed_up: bool
    defects: list[str]
    parts: list[PartOut]


class TicketSummary(Schema):
    id: int
    reference: str
    queue: str
    status: str
    subject: str
    customer: str | None = None
    created: datetime
    updated: datetime


class TicketOut(TicketSummary):
    messages: list[MessageOut]


def _summary(ticket: Ticket) -> dict[str, Any]:
    return {
        "id": ticket.pk,
        "reference": ticket.reference,
        "queue": ticket.queue,
        "status": ticket.status,
        "subject": ticket.subject,
        "customer": ticket.customer.account_number if ticket.customer else None,
        "created": ticket.created,
        "updated": ticket.updated,
    }


def _part(part: MessagePart) -> dict[str, Any]:
    return {
        "id": part.pk,
        "path": part.path,
        "content_type": part.content_type,
        "filename": part.filename,
        "original_filename": part.original_filename,
        "is_attachment": part.is_attachment,
        "size": len(part.content),
        "encryption": part.encryption,
        "kind": part.kind,
        "failure": part.failure,
        "signatures": part.signatures,
        "text": part.text if part.content_type.startswith("text/") else None,
    }


def _message(message: InboundMessage) -> dict[str, Any]:
    return {
        "id": message.pk,
        "received_at": message.received_at,
        "protocol": message.protocol,
        "state": message.state,
        "subject": message.subject,
        "sender": message.sender,
        "message_id": message.message_id,
        "encryption": message.encryption,
        "signed_by_customer": message.signed_by_customer,
        "signer_fingerprint": message.signer_fingerprint,
        "protected_headers": message.protected_headers,
        "repaired_mixed_up": message.repaired_mixed_up,
        "defects": message.defects,
        "parts": [_part(part) for part in message.parts.all()],
    }


@router.get("", response=list[TicketSummary])
def list_tickets(
    request: Any,
    queue: str | None = None,
    status: str | None = None,
    limit: int = Query(100, ge=1, le=500),
    # Bounded so that a huge offset is a 422, not an integer overflow in SQL.
    offset: int = Query(0, ge=0, le=2**62),
) -> list[dict[str, Any]]:
    """List tickets, newest activity first, optionally filtered by queue and status."""
    tickets = Ticket.objects.select_related("customer")
    if queue:
        tickets = tickets.filter(queue=queue.lower())
    if status:
        tickets = tickets.filter(status=status)
    return [_summary(ticket) for ticket in tickets[offset : offset + limit]]


@router.get("/{ticket_id}", response=TicketOut)
def get_ticket(request: Any, ticket_id: int) -> dict[str, Any]:
    """Return one ticket with its messages and each part's security status."""
    ticket = get_object_or_404(Ticket.objects.select_related("customer"), pk=ticket_id)
    messages = ticket.messages.order_by("received_at").prefetch_related("parts")
    return {**_summary(ticket), "messages": [_message(message) for message in messages]}
