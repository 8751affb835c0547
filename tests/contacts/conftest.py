"""Fixtures for the portal tests: customers, users, contacts and GnuPG keys."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from sealmail.contacts import mail
from sealmail.contacts.models import Contact, Customer
from sealmail.keys.store import get_keystore
from tests.contacts.maildir import outbox_runs_inline  # noqa: F401 (a fixture)
from tests.peers.gnupg import GnuPG

PASSWORD = "correct horse battery staple"


@dataclass
class SentMail:
    """What the portal handed to the outbox, one entry per enqueue call."""

    calls: list[dict[str, Any]] = field(default_factory=list)
    released: list[int] = field(default_factory=list)

    def last(self) -> dict[str, Any]:
        assert self.calls, "no mail was queued"
        return self.calls[-1]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> SentMail:
    """Record the outbox calls of the portal instead of queueing real mail."""
    record = SentMail()

    def enqueue(contact: Contact, **kwargs: Any) -> None:
        record.calls.append({"contact": contact, **kwargs})

    monkeypatch.setattr(mail, "_enqueue", enqueue)
    monkeypatch.setattr(
        mail, "release_held", lambda contact: record.released.append(contact.pk)
    )
    return record


@pytest.fixture(scope="session")
def gpg_keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two customer keys made by GnuPG, exported public and secret."""
    gpg = GnuPG(tmp_path_factory.mktemp("gnupg"))
    alice = gpg.generate("Alice <alice@customer.test>")
    other = gpg.generate("Alice New <alice.new@customer.test>")
    return {
        "gpg": gpg,
        "alice_fpr": alice,
        "alice_public": gpg.export(alice),
        "alice_secret": gpg.export(alice, secret=True),
        "other_fpr": other,
        "other_public": gpg.export(other),
    }


@pytest.fixture(scope="session", autouse=True)
def provider_key() -> None:
    store = get_keystore()
    Path(settings.KEYS_DIR).mkdir(parents=True, exist_ok=True)
    if store.is_empty():
        store.generate([f"<{settings.SEALMAIL_FROM}>"])


@pytest.fixture
def world(db) -> dict[str, Any]:
    """Two customers with one user and one contact each."""
    User = get_user_model()
    acme = Customer.objects.create(account_number="C-1001", name="Acme Ltd")
    beta = Customer.objects.create(account_number="C-2002", name="Beta GmbH")
    alice = User.objects.create_user("alice", "alice@customer.test", PASSWORD)
    bob = User.objects.create_user("bob", "bob@beta.test", PASSWORD)
    acme.users.add(alice)
    beta.users.add(bob)
    return {
        "acme": acme,
        "beta": beta,
        "alice": alice,
        "bob": bob,
        "acme_contact": Contact.objects.create(
            customer=acme, address="alice@customer.test"
        ),
        "beta_contact": Contact.objects.create(
            customer=beta, address="bob@beta.test", role=Contact.Role.BILLING
        ),
    }


@pytest.fixture
def alice_client(world: dict[str, Any]) -> Client:
    client = Client()
    client.force_login(world["alice"])
    return client


@pytest.fixture(autouse=True)
def fast_password_hasher(settings) -> None:
    # PBKDF2 at Django's default cost takes about half a second per password.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
