"""A mass outage: one event naming 5,000 lines, and a burst of single-line events."""

from __future__ import annotations

import pytest
from django.db.models import OuterRef, Subquery

from sealmail.contacts.models import Contact, ContactKey, Customer
from sealmail.notifications.events import (
    close_due_windows,
    process_pending_events,
    record_line_events,
)
from sealmail.notifications.models import Line, LineEvent
from tests.notifications.conftest import at, generate_cert

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

LINES = 5000


def populate(count: int) -> list[str]:
    """Create ``count`` customers with one encrypting contact and one line each.

    Keys come from a pool of 25 certificates, because generating 5,000
    keys would dominate the test; every contact still has its own key row.
    """
    pool = [
        generate_cert(f"pool{i}@customer.test").extract_certificate() for i in range(25)
    ]
    customers = Customer.objects.bulk_create(
        Customer(account_number=f"K-{i:05d}", name=f"Customer {i}")
        for i in range(count)
    )
    contacts = Contact.objects.bulk_create(
        Contact(customer=customer, address=f"noc{i}@customer{i}.test", role="technical")
        for i, customer in enumerate(customers)
    )
    ContactKey.objects.bulk_create(
        (
            ContactKey(
                contact=contact,
                fingerprint=pool[i % len(pool)].fingerprint,
                certificate=bytes(pool[i % len(pool)]),
                version=4,
                algorithm="EdDSA/ECDH Cv25519",
                user_ids=[contact.address],
                key_created=at("00:00:00"),
                usable_until=pool[i % len(pool)].expiration,
            )
            for i, contact in enumerate(contacts)
        ),
        batch_size=1000,
    )
    own_key = ContactKey.objects.filter(contact=OuterRef("pk")).values("pk")[:1]
    Contact.objects.filter(pk__in=[c.pk for c in contacts]).update(
        active_key=Subquery(own_key), encryption=Contact.Encryption.ACTIVE
    )
    Line.objects.bulk_create(
        (
            Line(line_id=f"L-{i:05d}", customer=customer)
            for i, customer in enumerate(customers)
        ),
        batch_size=1000,
    )
    return [f"L-{i:05d}" for i in range(count)]


def test_outage_of_5000_lines_fans_out(api):
    from sealmail.outbox.models import OutboxMessage

    line_ids = populate(LINES)
    response = api.post(
        "/api/v1/events/line-status",
        {
            "line_ids": line_ids,
            "state": "down",
            "reason": "PoP Frankfurt power failure",
        },
    )
    assert response.status_code == 202, response.content[:500]
    assert response.json()["recorded"] == LINES
    result = process_pending_events()
    assert result.mailed == LINES
    assert result.messages == LINES
    messages = OutboxMessage.objects.filter(category="line_status")
    assert messages.count() == LINES
    assert messages.values("contact").distinct().count() == LINES
    sample = messages.select_related("contact__customer").order_by("id").first()
    line = Line.objects.get(customer=sample.contact.customer)
    assert sample.subject == f"Line {line.line_id} is down"
    assert "PoP Frankfurt power failure" in sample.text
    assert sample.to_address == sample.contact.address

    # The lines come back up within the window: collected, then one summary each.
    back = api.post("/api/v1/events/line-status", {"line_ids": line_ids, "state": "up"})
    assert back.status_code == 202, back.content[:500]
    assert process_pending_events().collected == LINES
    assert close_due_windows(now=at("23:59:59").replace(year=2099)) >= LINES
    assert messages.count() == 2 * LINES


def test_burst_of_single_line_events():
    from sealmail.outbox.models import OutboxMessage

    line_ids = populate(300)
    for line_id in line_ids:
        record_line_events([line_id], "down", reason="burst")
    assert OutboxMessage.objects.filter(category="line_status").count() == 0
    result = process_pending_events()
    assert result.mailed == 300
    assert result.messages == 300
    assert LineEvent.objects.filter(handling="mailed").count() == 300
    assert OutboxMessage.objects.filter(category="line_status").count() == 300
