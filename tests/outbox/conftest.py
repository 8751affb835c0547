"""Fixtures for the outbox tests: customers, contacts with real keys, provider keys."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pysequoia
import pytest

from sealmail.contacts.models import Contact, ContactKey, Customer
from sealmail.keys.store import get_keystore
from tests.peers.gnupg import GnuPG


@pytest.fixture(scope="session")
def provider_cert(django_db_blocker) -> pysequoia.Cert:
    """The provider's signing key, generated once per test session."""
    store = get_keystore()
    if store.is_empty():
        return store.generate(["Provider Billing <billing@provider.test>"])
    return store.certificates()[0]


@pytest.fixture(autouse=True)
def huey_immediate(settings):
    """Run Huey tasks in the calling thread so tests see their effect at once."""
    huey = settings.HUEY
    previous = huey.immediate
    huey.immediate = True
    yield huey
    huey.immediate = previous


@pytest.fixture(autouse=True)
def outbox_settings(settings, tmp_path: Path):
    settings.MAILDIR = tmp_path / "maildir"
    settings.SEALMAIL_SMTP_URL = ""
    settings.SEALMAIL_SIGN_PLAIN = False
    settings.SEALMAIL_SEND_RETRY_SECONDS = 60
    settings.SEALMAIL_SEND_MAX_ATTEMPTS = 10
    return settings


@pytest.fixture(scope="session")
def customer_gpg(tmp_path_factory) -> GnuPG:
    """One GnuPG home with customer keys: a current one and one that expires."""
    gpg = GnuPG(tmp_path_factory.mktemp("gnupg"))
    gpg.generate("Alice Customer <alice@customer.test>")
    return gpg


def make_contact_key(
    contact: Contact, armored: bytes, *, usable_until=None, check: bool = True
) -> ContactKey:
    """Store a contact key as intake does, with its send-time check unless ``check`` is off."""
    cert = pysequoia.Cert.from_bytes(armored)
    key = ContactKey(
        contact=contact,
        fingerprint=cert.fingerprint.lower(),
        certificate=bytes(cert),
        version=4,
        algorithm="ed25519/cv25519",
        user_ids=[str(uid) for uid in cert.user_ids],
        key_created=datetime.now(UTC) - timedelta(days=1),
        usable_until=usable_until if usable_until is not None else cert.expiration,
    )
    if check:
        key.refresh_send_check()
    key.save()
    return key


@pytest.fixture
def customer(db) -> Customer:
    return Customer.objects.create(account_number="K-1001", name="Alice Example GmbH")


@pytest.fixture
def make_contact(customer) -> Callable[..., Contact]:
    counter = iter(range(1, 10_000))

    def make(
        address: str | None = None,
        *,
        role: str = Contact.Role.GENERAL,
        armored_key: bytes | None = None,
        mode: str = Contact.Mode.PGPMIME,
        owner: Customer | None = None,
    ) -> Contact:
        contact = Contact.objects.create(
            customer=owner or customer,
            address=address or f"contact{next(counter)}@customer.test",
            role=role,
            mode=mode,
        )
        if armored_key is not None:
            key = make_contact_key(contact, armored_key)
            contact.active_key = key
            contact.encryption = Contact.Encryption.ACTIVE
            contact.save()
        return contact

    return make


@pytest.fixture
def alice(make_contact, customer_gpg) -> Contact:
    """A contact with encryption on and a usable key whose secret half is in GnuPG."""
    return make_contact(
        "alice@customer.test", armored_key=customer_gpg.export("alice@customer.test")
    )
