"""The contacts API with a calling system's bearer token and with a portal session."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from sealmail.api.models import ApiToken
from sealmail.contacts.models import Contact, PendingChange

pytestmark = pytest.mark.db_backends


@pytest.fixture
def token(db) -> str:
    return ApiToken.issue("billing")[1]


def api_post(client: Client, path: str, body: dict, **headers: str):
    return client.post(
        path, json.dumps(body), content_type="application/json", **headers
    )


def test_get_contact_with_token(world: dict[str, Any], token: str) -> None:
    contact = world["beta_contact"]
    response = Client().get(
        f"/api/v1/contacts/{contact.pk}", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200
    data = response.json()
    assert data["address"] == "bob@beta.test"
    assert data["role"] == "billing"
    assert data["mode"] == "pgpmime"
    assert data["encryption"] == "none"
    assert data["active_key_fingerprint"] is None
    assert data["account_number"] == "C-2002"


def test_unknown_contact_is_404(db, token: str) -> None:
    response = Client().get(
        "/api/v1/contacts/99999", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 404


def test_bad_token_is_401(world: dict[str, Any]) -> None:
    response = Client().get(
        f"/api/v1/contacts/{world['acme_contact'].pk}",
        HTTP_AUTHORIZATION="Bearer sm_wrong",
    )
    assert response.status_code == 401


def test_post_key_starts_confirmation(world, gpg_keys, token, sent) -> None:
    contact = world["acme_contact"]
    response = api_post(
        Client(),
        f"/api/v1/contacts/{contact.pk}/key",
        {"key": gpg_keys["alice_public"].decode()},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 202
    data = response.json()
    assert data["key"]["fingerprint"] == gpg_keys["alice_fpr"]
    assert data["change"]["sent_to"] == "alice@customer.test"
    change = PendingChange.objects.get(contact=contact)
    assert change.requested_via == "api:billing"
    assert sent.last()["recipient_key"] == change.new_key
    contact.refresh_from_db()
    assert contact.active_key is None
    state = (
        Client()
        .get(f"/api/v1/contacts/{contact.pk}", HTTP_AUTHORIZATION=f"Bearer {token}")
        .json()
    )
    assert state["encryption"] == "pending"
    assert state["pending_change"]["id"] == change.pk


def test_post_key_with_new_address(world, gpg_keys, token, sent) -> None:
    contact = world["acme_contact"]
    response = api_post(
        Client(),
        f"/api/v1/contacts/{contact.pk}/key",
        {"key": gpg_keys["alice_public"].decode(), "address": "new@customer.test"},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 202
    assert sent.last()["to_address"] == "new@customer.test"


def test_post_invalid_address(world, gpg_keys, token, sent) -> None:
    response = api_post(
        Client(),
        f"/api/v1/contacts/{world['acme_contact'].pk}/key",
        {"key": gpg_keys["alice_public"].decode(), "address": "not an address"},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_address"


def test_post_secret_key_rejected(world, gpg_keys, token, sent) -> None:
    response = api_post(
        Client(),
        f"/api/v1/contacts/{world['acme_contact'].pk}/key",
        {"key": gpg_keys["alice_secret"].decode()},
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "secret_key"
    assert sent.calls == []


def test_post_rate_limited(world, gpg_keys, token, sent, settings) -> None:
    settings.SEALMAIL_CHANGE_LIMIT_CONTACT = 1
    path = f"/api/v1/contacts/{world['acme_contact'].pk}/key"
    body = {"key": gpg_keys["alice_public"].decode()}
    first = api_post(Client(), path, body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert first.status_code == 202
    second = api_post(Client(), path, body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert second.status_code == 429
    assert second.json()["reason"] == "rate_limited"


def test_session_post_needs_csrf(world, gpg_keys, sent) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world["alice"])
    response = api_post(
        client,
        f"/api/v1/contacts/{world['acme_contact'].pk}/key",
        {"key": gpg_keys["alice_public"].decode()},
    )
    assert response.status_code in {401, 403}
    assert sent.calls == []
    contact = Contact.objects.get(pk=world["acme_contact"].pk)
    assert contact.encryption == Contact.Encryption.NONE


def test_token_skips_client_limit(world, gpg_keys, token, sent, settings) -> None:
    settings.SEALMAIL_CHANGE_LIMIT_CLIENT = 1
    for contact, key in [
        (world["acme_contact"], gpg_keys["alice_public"]),
        (world["beta_contact"], gpg_keys["other_public"]),
    ]:
        response = api_post(
            Client(),
            f"/api/v1/contacts/{contact.pk}/key",
            {"key": key.decode()},
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 202
