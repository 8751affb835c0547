"""Turn notifications into outbox messages: pick the contacts, render the text.

Every notification mail goes through :mod:`sealmail.outbox.service`, which
stores it, encrypts it to each contact's active key and keeps it back when that
key is unusable.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, TypeVar

from django.template.loader import render_to_string
from django.utils import timezone

from sealmail.contacts.models import Contact, Customer

logger = logging.getLogger(__name__)

SOURCE = "notifications"
# Outbox template (templates/outbox/notification*.txt in this app) that
# outputs the subject and text prepared for each contact.
PREPARED_TEMPLATE = "notification"
# Ids per IN lookup, well below SQLite's limit of 32,766 parameters.
IN_CHUNK = 5000

T = TypeVar("T")

# Contact roles that get each category, in order of preference: the first
# role that the customer has a contact in wins, and a customer with none of
# these roles gets the mail at every contact.
ROLE_PREFERENCE: dict[str, tuple[str, ...]] = {
    "line_status": (Contact.Role.TECHNICAL, Contact.Role.GENERAL),
    "order_progress": (Contact.Role.GENERAL,),
}


def chunks(values: Sequence[T], size: int = IN_CHUNK) -> Iterator[Sequence[T]]:
    """Split ``values`` for ``IN`` lookups, which SQLite limits to 32,766 parameters."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def format_time(value: datetime) -> str:
    """Format ``value`` in the site's time zone with the zone's name, to the second."""
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname()}"


def render_text(template: str, context: dict[str, Any]) -> str:
    """Render a plain-text template of this app (templates turn autoescaping off)."""
    return render_to_string(f"notifications/{template}", context)


def recipients_by_customer(
    customer_ids: Iterable[int], category: str
) -> dict[int, list[Contact]]:
    """Return the contacts that get ``category`` mail, for many customers at once."""
    contacts_by_customer: dict[int, list[Contact]] = defaultdict(list)
    for chunk in chunks(sorted(set(customer_ids))):
        queryset = (
            Contact.objects.filter(customer_id__in=chunk)
            .select_related("customer")
            .order_by("customer_id", "id")
        )
        for contact in queryset:
            contacts_by_customer[contact.customer_id].append(contact)
    preference = ROLE_PREFERENCE.get(category, ())
    chosen: dict[int, list[Contact]] = {}
    for customer_id, contacts in contacts_by_customer.items():
        selected = contacts
        for role in preference:
            in_role = [contact for contact in contacts if contact.role == role]
            if in_role:
                selected = in_role
                break
        chosen[customer_id] = selected
    return chosen


def send(
    contacts: Sequence[Contact],
    *,
    category: str,
    subject: str,
    text: str,
    idempotency_key: str | None = None,
) -> int:
    """Store one message per contact in the outbox and return how many were stored.

    Runs inside the caller's transaction when there is one, so the mail is
    stored together with the state change that caused it, or not at all.
    Callers whose state change already prevents a second send (a window
    marked closed, an event row) leave out ``idempotency_key``, because the
    outbox spends a query per call on checking it.
    """
    from sealmail.outbox.service import enqueue_bulk

    if not contacts:
        return 0
    messages = enqueue_bulk(
        contacts,
        category=category,
        subject=subject,
        text=text,
        idempotency_key=idempotency_key,
        source=SOURCE,
    )
    return len(messages)


def send_to_customers(
    items: Iterable[tuple[Customer | int, str, str]],
    *,
    category: str,
) -> int:
    """Send ``(customer, subject, text)`` items and return how many messages were stored.

    All items go to the outbox in one call, so a mass outage costs one
    request row, batched inserts and batched delivery tasks rather than one
    of each per customer. Customers without a contact are logged and
    skipped, because there is no one to tell.
    """
    from sealmail.outbox.service import enqueue_bulk

    items = list(items)
    customer_ids = [
        customer if isinstance(customer, int) else customer.pk
        for customer, _, _ in items
    ]
    recipients = recipients_by_customer(customer_ids, category)
    contacts: list[Contact] = []
    without_contact = 0
    for customer_id, (_, subject, text) in zip(customer_ids, items, strict=True):
        customer_contacts = recipients.get(customer_id, [])
        if not customer_contacts:
            without_contact += 1
        for contact in customer_contacts:
            # The outbox renders the template once per contact with this
            # contact object in the context, so each one carries its text.
            contact.notification_subject = subject
            contact.notification_text = text
            contacts.append(contact)
    if without_contact:
        logger.warning(
            "%d customer(s) have no contact, so %d %s mail(s) were not sent",
            without_contact,
            without_contact,
            category,
        )
    if not contacts:
        return 0
    # NOTE: this relies on enqueue_bulk rendering with the Contact objects
    # passed in; the outage tests check that each message got its own text.
    messages = enqueue_bulk(
        contacts, category=category, template=PREPARED_TEMPLATE, source=SOURCE
    )
    return len(messages)
