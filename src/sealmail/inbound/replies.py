"""Replies and acknowledgements to customers, sent through the outbox.

The outbox encrypts to the contact's confirmed key, or sends in the clear
when the contact has none, so nothing here may put decrypted text into a
message unless the reader is the verified customer.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser

from sealmail.inbound.models import InboundMessage, Ticket, TicketReply

logger = logging.getLogger(__name__)


def _enqueue(contact: Any, **kwargs: Any) -> Any:
    """Queue one ticket mail to ``contact``; returns its OutboxMessage."""
    from sealmail.outbox.service import enqueue

    rows = enqueue(contact, category="ticket_reply", source="inbound", **kwargs)
    return rows[0]


def _threading(ticket: Ticket) -> tuple[str | None, tuple[str, ...]]:
    ids = [
        value
        for value in ticket.messages.order_by("received_at").values_list(
            "message_id", flat=True
        )
        if value
    ]
    return (ids[-1] if ids else None), tuple(ids[-20:])


def _record(
    ticket: Ticket, kind: str, text: str, outgoing: Any, author: Any = None
) -> TicketReply:
    return TicketReply.objects.create(
        ticket=ticket,
        kind=kind,
        author=author,
        text=text,
        outbox_id=str(getattr(outgoing, "pk", "") or ""),
        message_id=str(getattr(outgoing, "message_id", "") or ""),
    )


def may_quote(message: InboundMessage) -> bool:
    """Return whether mail to the ticket's contact may quote this message's content.

    True only when nothing in it was encrypted, or when the customer's
    confirmed key signed it as a whole. Otherwise the contact address might
    not belong to whoever encrypted the message.
    """
    return message.encryption == "none" or message.signed_by_customer


def reply_subject(reference: str, subject: str) -> str:
    """Return the subject of a reply, on one line whatever the customer sent.

    An encoded word in the customer's Subject can decode to CR, LF or other
    control characters, which the outbox rightly rejects in a header.
    """
    line = " ".join("".join(c if c.isprintable() else " " for c in subject).split())
    return f"[{reference}] Re: {line}"[:998]


def acknowledge(message: InboundMessage) -> TicketReply | None:
    """Tell the sender that a new ticket was opened, quoting only what is safe."""
    ticket = message.ticket
    if ticket is None or ticket.contact is None:
        logger.info(
            "inbound message %d: no known contact, no acknowledgement sent", message.pk
        )
        return None
    if may_quote(message) and message.subject:
        subject = reply_subject(ticket.reference, message.subject)
    else:
        subject = f"[{ticket.reference}] We received your message"
    text = (
        f"We received your message and opened ticket {ticket.reference}.\n"
        "Keep the reference in the subject when you write about this request.\n"
    )
    in_reply_to, references = _threading(ticket)
    try:
        outgoing = _enqueue(
            ticket.contact,
            subject=subject,
            text=text,
            in_reply_to=in_reply_to,
            references=references,
        )
    except Exception:
        # The ticket exists either way, so staff can still reply from the UI.
        logger.exception("ticket %d: queueing the acknowledgement failed", ticket.pk)
        return None
    return _record(ticket, TicketReply.Kind.ACKNOWLEDGEMENT, text, outgoing)


def send_reply(ticket: Ticket, text: str, author: AbstractBaseUser) -> TicketReply:
    """Queue a staff reply to the ticket's contact; raises ``ValueError`` without one."""
    if ticket.contact is None:
        raise ValueError(
            f"ticket {ticket.reference} has no known contact to reply to; "
            "link the sender to a customer contact first"
        )
    in_reply_to, references = _threading(ticket)
    # The ticket's subject may come from inside the encryption, and the reply
    # may go out unencrypted. So the reply repeats the subject only when
    # quoting the first message is safe.
    first = ticket.messages.order_by("received_at").first()
    if first is None or may_quote(first):
        subject = reply_subject(ticket.reference, ticket.subject)
    else:
        subject = f"[{ticket.reference}] Re: your message"
    outgoing = _enqueue(
        ticket.contact,
        subject=subject,
        text=text,
        in_reply_to=in_reply_to,
        references=references,
    )
    reply = _record(ticket, TicketReply.Kind.REPLY, text, outgoing, author)
    ticket.status = Ticket.Status.WAITING
    ticket.save(update_fields=["status", "updated"])
    logger.info(
        "ticket %d: reply %d queued as outbox message %s",
        ticket.pk,
        reply.pk,
        reply.outbox_id,
    )
    return reply
