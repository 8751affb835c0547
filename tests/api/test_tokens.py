from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from sealmail.api.models import ApiToken, hash_token

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]


def create_token(name: str, capsys) -> str:
    call_command("apitoken", "create", name)
    return capsys.readouterr().out.strip()


def test_token_stored_only_hashed(capsys):
    token = create_token("billing", capsys)
    assert token.startswith("sm_")
    stored = ApiToken.objects.get(name="billing")
    assert stored.token_hash == hash_token(token)
    assert token not in stored.token_hash


def test_health_needs_no_token(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_schema_served(client):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.json()["info"]["title"] == "sealmail API"


def test_duplicate_token_name_rejected(capsys):
    create_token("crm", capsys)
    with pytest.raises(CommandError, match="'crm' already exists"):
        call_command("apitoken", "create", "crm")


def test_revoked_token_rejected(client, capsys):
    from sealmail.api.auth import TokenAuth

    token = create_token("monitoring", capsys)
    auth = TokenAuth()
    assert auth.authenticate(None, token).name == "monitoring"
    call_command("apitoken", "revoke", "monitoring")
    assert auth.authenticate(None, token) is None
    assert auth.authenticate(None, "sm_not-a-token") is None


def test_revoke_unknown_name_named():
    with pytest.raises(CommandError, match="no token named 'nobody'"):
        call_command("apitoken", "revoke", "nobody")


def test_lone_surrogate_answers_422(client, capsys):
    from sealmail.contacts.models import Contact, Customer

    customer = Customer.objects.create(account_number="K-9", name="Surrogate")
    Contact.objects.create(customer=customer, address="s@customer.test")
    token = create_token("surrogates", capsys)
    response = client.post(
        "/api/v1/messages",
        data='{"customer": "K-9", "category": "invoice", "subject": "\\ud800", "text": "x"}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 422
    assert "lone surrogate" in response.json()["detail"]
