"""Staff admin: search by fingerprint and address, key material read-only."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from sealmail.contacts.models import ContactKey
from sealmail.core.pgp.inspect import inspect_key


@pytest.fixture
def staff(db) -> Client:
    user = get_user_model().objects.create_superuser(
        "staff", "staff@provider.test", "pw-staff-1"
    )
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def stored_key(world: dict[str, Any], gpg_keys: dict[str, Any]) -> ContactKey:
    report = inspect_key(gpg_keys["alice_public"])
    return ContactKey.objects.create(
        contact=world["acme_contact"],
        fingerprint=report.fingerprint.lower(),
        certificate=report.certificate,
        version=report.version,
        algorithm=report.algorithm,
        user_ids=report.user_ids,
        key_created=report.created,
        usable_until=report.usable_until,
    )


@pytest.mark.parametrize(
    "page",
    [
        "customer",
        "contact",
        "contactkey",
        "pendingchange",
        "auditevent",
    ],
)
def test_changelists_render(staff: Client, world, page: str) -> None:
    assert staff.get(f"/admin/contacts/{page}/").status_code == 200


def test_search_key_by_fingerprint(staff: Client, stored_key: ContactKey) -> None:
    response = staff.get(
        "/admin/contacts/contactkey/", {"q": stored_key.fingerprint[-16:]}
    )
    assert response.status_code == 200
    body = response.content.decode()
    groups = " ".join(
        stored_key.fingerprint.upper()[i : i + 4] for i in range(0, 40, 4)
    )
    assert groups in body


def test_search_contact_by_address_and_key(
    staff: Client, stored_key: ContactKey
) -> None:
    by_address = staff.get("/admin/contacts/contact/", {"q": "alice@customer"})
    assert "alice@customer.test" in by_address.content.decode()
    assert "bob@beta.test" not in by_address.content.decode()
    by_key = staff.get("/admin/contacts/contact/", {"q": stored_key.fingerprint})
    assert "alice@customer.test" in by_key.content.decode()


def test_key_is_read_only(staff: Client, stored_key: ContactKey) -> None:
    page = staff.get(f"/admin/contacts/contactkey/{stored_key.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert "BEGIN PGP PUBLIC KEY BLOCK" in body
    assert 'name="fingerprint"' not in body
    response = staff.post(
        f"/admin/contacts/contactkey/{stored_key.pk}/change/", {"fingerprint": "0" * 40}
    )
    assert response.status_code == 403
    stored_key.refresh_from_db()
    assert stored_key.fingerprint != "0" * 40
    assert staff.get("/admin/contacts/contactkey/add/").status_code == 403
