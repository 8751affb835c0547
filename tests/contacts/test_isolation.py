"""Per-customer isolation: a user of one customer never reaches another's contact."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from sealmail.contacts.models import Contact, PendingChange

# Every portal and API route that takes a contact id, as (method, URL name or path).
ROUTES = [
    ("get", "contacts:update"),
    ("post", "contacts:update"),
    ("post", "contacts:cancel_pending"),
    ("get", "/api/v1/contacts/{pk}"),
    ("post", "/api/v1/contacts/{pk}/key"),
]


def url_for(route: str, pk: int) -> str:
    return route.format(pk=pk) if route.startswith("/") else reverse(route, args=[pk])


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_foreign_contact_is_404(method, route, world, gpg_keys, sent) -> None:
    bob = world["beta_contact"]
    client = Client(enforce_csrf_checks=False)
    client.force_login(world["alice"])
    url = url_for(route, bob.pk)
    if method == "get":
        response = client.get(url)
    elif route.startswith("/api/"):
        response = client.post(
            url,
            json.dumps({"key": gpg_keys["other_public"].decode()}),
            content_type="application/json",
        )
    else:
        response = client.post(
            url,
            {
                "address": "evil@attacker.test",
                "mode": "inline",
                "action": "save",
                "key_text": gpg_keys["other_public"].decode(),
            },
        )
    assert response.status_code == 404
    bob.refresh_from_db()
    assert bob.address == "bob@beta.test"
    assert bob.mode == Contact.Mode.PGPMIME
    assert not PendingChange.objects.filter(contact=bob).exists()
    assert sent.calls == []


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_own_contact_is_reachable(method, route, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    client = Client()
    client.force_login(world["alice"])
    url = url_for(route, contact.pk)
    if method == "get":
        response = client.get(url)
        assert response.status_code == 200
        return
    if route.startswith("/api/"):
        response = client.post(
            url,
            json.dumps({"key": gpg_keys["alice_public"].decode()}),
            content_type="application/json",
        )
        assert response.status_code == 202
    else:
        response = client.post(url, {"address": contact.address, "mode": "pgpmime"})
        assert response.status_code in {200, 302}


@pytest.mark.parametrize(("method", "route"), ROUTES)
def test_anonymous_is_refused(method, route, world) -> None:
    url = url_for(route, world["acme_contact"].pk)
    response = getattr(Client(), method)(url)
    if route.startswith("/api/"):
        assert response.status_code == 401
    else:
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_contact_list_shows_own_only(world: dict[str, Any]) -> None:
    client = Client()
    client.force_login(world["alice"])
    body = client.get("/").content.decode()
    assert "alice@customer.test" in body
    assert "bob@beta.test" not in body
    assert "C-2002" not in body


def test_user_of_two_customers_sees_both(world: dict[str, Any]) -> None:
    world["beta"].users.add(world["alice"])
    client = Client()
    client.force_login(world["alice"])
    body = client.get("/").content.decode()
    assert "alice@customer.test" in body
    assert "bob@beta.test" in body
