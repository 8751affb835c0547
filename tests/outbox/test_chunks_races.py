"""Large requests whose storing call stalls, or whose recipients change before a repeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from sealmail.api.models import ApiToken
from sealmail.contacts.models import Contact
from sealmail.outbox import service
from sealmail.outbox.models import OutboxMessage, SendRequest
from sealmail.outbox.service import enqueue_bulk_checked
from tests.outbox.helpers import fail_on_second_chunk

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_backends]

CONTENT = {"category": "custom", "subject": "Maintenance", "text": "Tonight."}


@pytest.fixture
def contacts(make_contact):
    return [make_contact(f"c{n}@customer.test") for n in range(7)]


def test_stalled_call_stores_once(contacts, monkeypatch):
    """The storing call stalls after its first chunk for longer than the lease.

    A stall of that length happens when queueing the committed chunk
    blocks, for example on a Redis server that stopped answering (the queue
    connection has no socket timeout). A repeat then takes the request over
    and stores the rest. The stalled call must notice that it lost the
    lease instead of storing the same recipients a second time.
    """
    monkeypatch.setattr(service, "COMMIT_CHUNK", 3)
    real_now = timezone.now
    stalled = []

    def schedule_delivery(ids):
        if stalled:
            return
        stalled.append(ids)
        later = real_now() + service.REQUEST_LEASE + timedelta(seconds=1)
        monkeypatch.setattr(timezone, "now", lambda: later)
        enqueue_bulk_checked(contacts, idempotency_key="stall-1", **CONTENT)
        monkeypatch.setattr(timezone, "now", real_now)

    monkeypatch.setattr(service, "schedule_delivery", schedule_delivery)
    enqueue_bulk_checked(contacts, idempotency_key="stall-1", **CONTENT)

    request = SendRequest.objects.get(idempotency_key="stall-1")
    per_contact = [
        OutboxMessage.objects.filter(request=request, contact=contact).count()
        for contact in contacts
    ]
    assert per_contact == [1] * len(contacts)


def test_repeat_after_new_contact_completes(customer, make_contact, monkeypatch):
    """A request by customer fails midway, and the customer gets a new contact.

    The request is hashed as named (the customer), so the repeat matches
    and stores the missing messages instead of being rejected as different.
    """
    monkeypatch.setattr(service, "COMMIT_CHUNK", 3)
    monkeypatch.setattr(service, "schedule_delivery", lambda ids: None)
    for n in range(7):
        make_contact(f"c{n}@customer.test")
    _token, secret = ApiToken.issue("billing")
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    body = {"customer": customer.account_number, "idempotency_key": "grow-1", **CONTENT}

    restore = fail_on_second_chunk(monkeypatch)
    with pytest.raises(RuntimeError):
        client.post("/api/v1/messages", body, content_type="application/json")
    restore()

    Contact.objects.create(customer=customer, address="new@customer.test")
    SendRequest.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    repeat = client.post("/api/v1/messages", body, content_type="application/json")
    request = SendRequest.objects.get(idempotency_key="grow-1")
    stored = OutboxMessage.objects.filter(request=request).count()
    assert repeat.status_code in (200, 201), repeat.json()
    assert stored >= 7


def test_retry_without_key_sends_once(contacts, monkeypatch):
    """A call without idempotency_key fails after storing rows, and the caller retries it.

    Without a key, the caller can only repeat the whole call, so the failed
    call must store nothing: its rows are stored in one transaction.
    """
    monkeypatch.setattr(service, "COMMIT_CHUNK", 3)
    scheduled = []
    monkeypatch.setattr(service, "schedule_delivery", scheduled.append)
    original = service._RequestWriter.insert

    def insert(self, request, chunk):
        stored = original(self, request, chunk)
        raise RuntimeError(f"database went away after {len(stored)} rows")

    monkeypatch.setattr(service._RequestWriter, "insert", insert)
    with pytest.raises(RuntimeError):
        enqueue_bulk_checked(contacts, **CONTENT)
    monkeypatch.setattr(service._RequestWriter, "insert", original)
    assert OutboxMessage.objects.count() == 0
    assert scheduled == []
    enqueue_bulk_checked(contacts, **CONTENT)

    per_contact = [
        OutboxMessage.objects.filter(contact=contact).count() for contact in contacts
    ]
    assert per_contact == [1] * len(contacts)
    assert len(scheduled) == 1
