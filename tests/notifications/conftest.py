"""Fixtures for the notification tests: customers, contacts with keys, API tokens."""

from __future__ import annotations

from datetime import datetime, timezone

import pysequoia
import pytest

from sealmail.contacts.models import Contact, ContactKey, Customer


def make_customer(number: str, name: str = "") -> Customer:
    return Customer.objects.create(
        account_number=number, name=name or f"Customer {number}"
    )


def add_key(
    contact: Contact, cert_bytes: bytes, *, activate: bool = True
) -> ContactKey:
    """Store a certificate for ``contact`` the way intake does, and confirm it."""
    from sealmail.notifications.keys import _check_certificate

    report = _check_certificate(cert_bytes)
    key = ContactKey.objects.create(
        contact=contact,
        fingerprint=report.fingerprint.lower(),
        certificate=bytes(report.certificate),
        version=report.version,
        algorithm=report.algorithm,
        user_ids=list(report.user_ids),
        key_created=report.created,
        usable_until=report.usable_until,
    )
    if activate:
        contact.active_key = key
        contact.encryption = Contact.Encryption.ACTIVE
        contact.save()
    return key


def generate_cert(address: str, validity_seconds: int | None = None) -> pysequoia.Tsk:
    kwargs = {}
    if validity_seconds is not None:
        kwargs["validity_seconds"] = validity_seconds
    return pysequoia.Tsk.generate(
        user_ids=[address],
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
        **kwargs,
    )


@pytest.fixture
def api_token(db) -> str:
    from sealmail.api.models import ApiToken

    _, token = ApiToken.issue("monitoring")
    return token


@pytest.fixture
def api(client, api_token):
    """POST and PUT JSON to the API with a valid bearer token."""

    class Api:
        def post(self, path: str, data: dict):
            return client.post(
                path,
                data,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {api_token}",
            )

        def put(self, path: str, data: dict):
            return client.put(
                path,
                data,
                content_type="application/json",
                HTTP_AUTHORIZATION=f"Bearer {api_token}",
            )

        def get(self, path: str):
            return client.get(path, HTTP_AUTHORIZATION=f"Bearer {api_token}")

        def delete(self, path: str):
            return client.delete(path, HTTP_AUTHORIZATION=f"Bearer {api_token}")

    return Api()


def at(text: str) -> datetime:
    """Parse ``HH:MM:SS`` as a time on a fixed day in UTC."""
    return datetime.fromisoformat(f"2026-12-04T{text}").replace(tzinfo=timezone.utc)
