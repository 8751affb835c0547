"""Large requests: stored in committed chunks, and completed by a repeat after a failure."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from sealmail.api.models import ApiToken
from sealmail.outbox import service
from sealmail.outbox.models import OutboxMessage, SendRequest
from sealmail.outbox.service import RequestInProgress, enqueue_bulk_checked
from tests.outbox.helpers import fail_on_second_chunk

# Chunks must really commit, so these tests run outside a test transaction.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.db_backends]

CONTENT = {"category": "custom", "subject": "Maintenance", "text": "Tonight."}


@pytest.fixture
def scheduled(monkeypatch) -> list[list[int]]:
    """The id lists handed to the worker, one per committed chunk."""
    calls: list[list[int]] = []
    monkeypatch.setattr(service, "schedule_delivery", lambda ids: calls.append(list(ids)))
    monkeypatch.setattr(service, "COMMIT_CHUNK", 3)
    return calls


@pytest.fixture
def contacts(make_contact):
    return [make_contact(f"c{n}@customer.test") for n in range(7)]


def test_large_request_commits_in_chunks(contacts, scheduled):
    messages, repeated = enqueue_bulk_checked(
        contacts, idempotency_key="chunks-1", **CONTENT
    )
    assert not repeated
    assert [m.contact_id for m in messages] == [c.pk for c in contacts]
    # Each chunk went to the worker when it committed.
    assert [len(ids) for ids in scheduled] == [3, 3, 1]
    assert sum(scheduled, []) == [m.pk for m in messages]
    request = SendRequest.objects.get(idempotency_key="chunks-1")
    assert request.complete
    assert request.lease_until is None
    assert request.recipients == 7


def test_repeat_of_complete_request_returns_ids(contacts, scheduled):
    first, _ = enqueue_bulk_checked(contacts, idempotency_key="chunks-2", **CONTENT)
    again, repeated = enqueue_bulk_checked(
        contacts, idempotency_key="chunks-2", **CONTENT
    )
    assert repeated
    assert [m.pk for m in again] == [m.pk for m in first]
    assert OutboxMessage.objects.count() == 7


def test_failure_midway_then_repeat_stores_rest(
    contacts, scheduled, monkeypatch, caplog
):
    restore = fail_on_second_chunk(monkeypatch)
    with pytest.raises(RuntimeError):
        enqueue_bulk_checked(contacts, idempotency_key="chunks-3", **CONTENT)
    restore()
    request = SendRequest.objects.get(idempotency_key="chunks-3")
    assert not request.complete
    assert "failed after storing 3 of its 7 message(s)" in caplog.text
    # The first chunk is committed and queued; it goes out.
    stored = list(OutboxMessage.objects.filter(request=request).order_by("id"))
    assert len(stored) == 3
    assert scheduled == [[m.pk for m in stored]]

    # While the lease of the failed call holds, a repeat must wait.
    with pytest.raises(RequestInProgress) as info:
        enqueue_bulk_checked(contacts, idempotency_key="chunks-3", **CONTENT)
    assert info.value.field == "idempotency_key"
    assert info.value.status == 409
    assert "'chunks-3'" in info.value.message

    SendRequest.objects.filter(pk=request.pk).update(
        lease_until=timezone.now() - timedelta(seconds=1)
    )
    messages, repeated = enqueue_bulk_checked(
        contacts, idempotency_key="chunks-3", **CONTENT
    )
    assert not repeated  # this call stored messages
    assert sorted(m.contact_id for m in messages) == sorted(c.pk for c in contacts)
    # No contact got a second message.
    assert OutboxMessage.objects.filter(request=request).count() == 7
    request.refresh_from_db()
    assert request.complete
    assert request.lease_until is None
    assert [len(ids) for ids in scheduled] == [3, 3, 1]


def test_conflicting_content_still_rejected(contacts, scheduled, monkeypatch):
    restore = fail_on_second_chunk(monkeypatch)
    with pytest.raises(RuntimeError):
        enqueue_bulk_checked(contacts, idempotency_key="chunks-4", **CONTENT)
    restore()
    with pytest.raises(service.IdempotencyConflict):
        enqueue_bulk_checked(
            contacts, idempotency_key="chunks-4", **{**CONTENT, "text": "Other."}
        )


def test_api_repeat_while_in_progress_gets_409(contacts, scheduled, monkeypatch):
    _token, secret = ApiToken.issue("billing")
    client = Client(headers={"Authorization": f"Bearer {secret}"})
    body = {
        "contacts": [c.pk for c in contacts],
        "idempotency_key": "api-busy",
        **CONTENT,
    }
    restore = fail_on_second_chunk(monkeypatch)
    with pytest.raises(RuntimeError):
        client.post("/api/v1/messages", body, content_type="application/json")
    restore()
    busy = client.post("/api/v1/messages", body, content_type="application/json")
    assert busy.status_code == 409
    assert busy.json()["field"] == "idempotency_key"
    assert 1 <= int(busy["Retry-After"]) <= 120
    assert "still storing its 7 messages" in busy.json()["detail"]
    SendRequest.objects.update(lease_until=timezone.now() - timedelta(seconds=1))
    done = client.post("/api/v1/messages", body, content_type="application/json")
    assert done.status_code == 201
    refs = done.json()["messages"]
    assert sorted(ref["contact"] for ref in refs) == sorted(c.pk for c in contacts)
    again = client.post("/api/v1/messages", body, content_type="application/json")
    assert again.status_code == 200
    assert again.json() == done.json()
