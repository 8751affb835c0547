"""The customers and messages API with real bearer tokens."""

from __future__ import annotations

import base64

import pytest
from django.test import Client

from sealmail.api.models import ApiToken
from sealmail.contacts.models import Contact, Customer
from sealmail.outbox import api, service
from sealmail.outbox.models import Blob, OutboxMessage

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(autouse=True)
def no_delivery(monkeypatch):
    monkeypatch.setattr(service, "schedule_delivery", lambda ids: None)


@pytest.fixture
def client() -> Client:
    _token, secret = ApiToken.issue("billing")
    return Client(headers={"Authorization": f"Bearer {secret}"})


def post(client: Client, path: str, body: dict):
    return client.post(path, body, content_type="application/json")


def create_customer(client: Client, number: str = "K-2001", contacts=None):
    return post(
        client,
        "/api/v1/customers",
        {
            "account_number": number,
            "name": "Example Hosting AG",
            "contacts": contacts
            if contacts is not None
            else [
                {"address": "it@example-hosting.test", "role": "technical"},
                {"address": "billing@example-hosting.test", "role": "billing"},
            ],
        },
    )


def test_token_required():
    response = Client().post("/api/v1/messages", {}, content_type="application/json")
    assert response.status_code == 401


def test_customer_create_then_update(client):
    created = create_customer(client)
    assert created.status_code == 201
    body = created.json()
    assert body["account_number"] == "K-2001"
    assert [c["role"] for c in body["contacts"]] == ["technical", "billing"]
    assert {c["encryption"] for c in body["contacts"]} == {"none"}
    updated = create_customer(
        client,
        contacts=[
            {
                "address": "billing@example-hosting.test",
                "role": "billing",
                "mode": "inline",
            },
            {"address": "ceo@example-hosting.test"},
        ],
    )
    assert updated.status_code == 200
    contacts = {c["address"]: c for c in updated.json()["contacts"]}
    assert len(contacts) == 3
    assert contacts["billing@example-hosting.test"]["mode"] == "inline"
    assert contacts["ceo@example-hosting.test"]["role"] == "general"
    assert Customer.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"account_number": "K 1", "name": "x"}, "account_number"),
        ({"account_number": "K-1", "name": " "}, "name"),
        ({"account_number": "K-1\x00", "name": "x"}, "account_number"),
        ({"account_number": "K-1", "name": "x\x00y"}, "name"),
        (
            {"account_number": "K-1", "name": "x", "contacts": [{"address": "nope"}]},
            "contacts[0].address",
        ),
        (
            {
                "account_number": "K-1",
                "name": "x",
                "contacts": [{"address": "a@b.test"}, {"address": "a@b.test"}],
            },
            "contacts[1]",
        ),
    ],
)
def test_customer_bad_input(client, body, field):
    response = post(client, "/api/v1/customers", body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_customer_schema_error_names_field(client):
    response = post(
        client,
        "/api/v1/customers",
        {
            "account_number": "K-1",
            "name": "x",
            "contacts": [{"address": "a@b.test", "role": "boss"}],
        },
    )
    assert response.status_code == 422
    assert "role" in str(response.json()["detail"])


def test_message_to_customer_with_pdf(client):
    create_customer(client)
    response = post(
        client,
        "/api/v1/messages",
        {
            "customer": "K-2001",
            "role": "billing",
            "category": "invoice",
            "context": {
                "invoice_number": "R-1",
                "amount": "10.00",
                "due_date": "2026-12-20",
            },
            "attachments": [
                {
                    "filename": "R-1.pdf",
                    "content_type": "application/pdf",
                    "content": base64.b64encode(PDF).decode(),
                }
            ],
        },
    )
    assert response.status_code == 201, response.content
    [ref] = response.json()["messages"]
    assert ref["to_address"] == "billing@example-hosting.test"
    assert ref["status"] == "queued"
    message = OutboxMessage.objects.get(pk=ref["id"])
    assert message.subject == "Your invoice R-1"
    assert message.request.source == "api:billing"
    assert bytes(Blob.objects.get().data) == PDF

    status = client.get(f"/api/v1/messages/{ref['id']}")
    assert status.status_code == 200
    body = status.json()
    assert body["status"] == "queued"
    assert body["message_id"] == ref["message_id"]
    assert body["encrypted"] is False
    assert body["tls"] is None
    assert body["attempts"] == 0


def test_message_bulk_one_id_per_contact(client):
    for number in ("K-1", "K-2", "K-3"):
        create_customer(client, number)
    contact = Contact.objects.filter(customer__account_number="K-3").first()
    response = post(
        client,
        "/api/v1/messages",
        {
            "customers": ["K-1", "K-2"],
            "contacts": [contact.pk],
            "category": "line_status",
            "context": {"line_id": "FTTH-9", "state": "down", "since": "10:02"},
        },
    )
    assert response.status_code == 201
    refs = response.json()["messages"]
    assert len(refs) == 5
    assert len({ref["message_id"] for ref in refs}) == 5


def test_idempotent_repeat(client):
    create_customer(client)
    body = {
        "customer": "K-2001",
        "category": "custom",
        "subject": "Hi",
        "text": "x",
        "idempotency_key": "abc",
    }
    first = post(client, "/api/v1/messages", body)
    again = post(client, "/api/v1/messages", body)
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json() == first.json() | {"messages": again.json()["messages"]}
    assert [m["id"] for m in again.json()["messages"]] == [
        m["id"] for m in first.json()["messages"]
    ]
    conflict = post(client, "/api/v1/messages", body | {"text": "changed"})
    assert conflict.status_code == 422
    assert conflict.json()["field"] == "idempotency_key"
    assert "Retry-After" not in conflict


@pytest.mark.parametrize(
    ("extra", "status", "field"),
    [
        ({"customer": "K-404"}, 400, "customer"),
        ({"contact": 999999}, 400, "contact"),
        ({}, 400, "contact"),
        (
            {
                "customer": "K-2001",
                "attachments": [
                    {
                        "filename": "a.pdf",
                        "content_type": "application/pdf",
                        "content": "not base64!",
                    }
                ],
            },
            400,
            "attachments[0].content",
        ),
        (
            {
                "customer": "K-2001",
                "attachments": [
                    {"filename": "a.pdf", "content_type": "pdf", "content": "JVBERg=="}
                ],
            },
            400,
            "attachments[0].content_type",
        ),
        (
            {
                "customer": "K-2001",
                "attachments": [
                    {
                        "filename": "big.bin",
                        "content_type": "application/octet-stream",
                        "content": "A" * (service.MAX_ATTACHMENT_BYTES * 4 // 3 + 100),
                    }
                ],
            },
            400,
            "attachments[0].content",
        ),
        ({"customer": "K-2001", "template": "no-such-template"}, 400, "template"),
        ({"customer": "K-2001", "subject": "nul\x00"}, 400, "subject"),
        ({"customer": "K-2001", "text": "nul\x00"}, 400, "text"),
        ({"customer": "K-2001", "idempotency_key": "\x00"}, 400, "idempotency_key"),
        ({"customer": "K-2001", "in_reply_to": "<a\x00@b>"}, 400, "in_reply_to"),
        ({"customer": "K-\x002001"}, 400, "customer"),
        ({"customers": ["K-2001", "\x00"]}, 400, "customer"),
        ({"customer": "K-2001", "category": "key_problem"}, 422, None),
    ],
)
def test_message_bad_input(client, extra, status, field):
    create_customer(client)
    body = {"category": "custom", "subject": "x", "text": "x"} | extra
    if "template" in extra:
        body.pop("text")
    response = post(client, "/api/v1/messages", body)
    assert response.status_code == status, response.content
    if field is not None:
        assert response.json()["field"] == field
        assert response.json()["detail"]
    assert OutboxMessage.objects.count() == 0


def test_too_many_recipients(client):
    body = {
        "contacts": list(range(1, api.MAX_RECIPIENTS + 2)),
        "category": "custom",
        "subject": "x",
        "text": "x",
    }
    response = post(client, "/api/v1/messages", body)
    assert response.status_code == 400
    assert response.json()["field"] == "contacts"
    assert "split the request" in response.json()["detail"]


def test_get_unknown_message(client):
    response = client.get("/api/v1/messages/123456")
    assert response.status_code == 404
    assert "not found" in response.json()["detail"]
