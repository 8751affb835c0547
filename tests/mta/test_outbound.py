"""Outbound mail through a real Postfix: relay, Maildir delivery, a client decrypts it.

sealmail stores the message, and the worker (Huey in immediate mode) composes
it and relays it to the private Postfix over STARTTLS with the test CA.
Postfix delivers it into the customer's Maildir, where notmuch decrypts and
verifies it as the customer's mail client would.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from django.conf import LazySettings

from sealmail.contacts.models import Contact, ContactKey, Customer
from sealmail.core.mime.message import Attachment
from sealmail.core.pgp.inspect import inspect_key
from sealmail.keys.store import get_keystore
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.service import enqueue
from tests.mta.postfix import PostfixInstance, parse
from tests.peers.gnupg import GnuPG
from tests.peers.notmuch import Notmuch

pytestmark = pytest.mark.django_db(transaction=True)

INVOICE_TEXT = "Dear customer,\n\nyour invoice for December is attached: 42,00 €.\n"
INVOICE_PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


@pytest.fixture
def huey_immediate(settings: LazySettings) -> Iterator[None]:
    """Run the delivery task in the calling thread, as soon as the row is committed."""
    huey = settings.HUEY
    previous = huey.immediate
    huey.immediate = True
    yield
    huey.immediate = previous


@pytest.fixture
def provider_certificate() -> bytes:
    """The armored certificate of the provider's signing key, made when missing."""
    store = get_keystore()
    if store.is_empty():
        store.generate(["Provider Billing <billing@provider.test>"])
    return str(store.certificates()[0]).encode()


@pytest.fixture
def customer_gnupg(tmp_path: Path, provider_certificate: bytes) -> tuple[GnuPG, str]:
    """A customer's GnuPG home with a fresh key for a unique address in customer.test."""
    address = f"alice-{uuid.uuid4().hex[:10]}@customer.test"
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.generate(f"Alice Customer <{address}>")
    gpg.import_key(provider_certificate)
    return gpg, address


def register_contact(gpg: GnuPG, address: str) -> Contact:
    """Create a customer whose contact has ``address``'s key confirmed and active."""
    report = inspect_key(gpg.export(address))
    customer = Customer.objects.create(
        account_number=f"K-{uuid.uuid4().hex[:8]}", name="Alice Example GmbH"
    )
    contact = Contact.objects.create(customer=customer, address=address)
    key = ContactKey.objects.create(
        contact=contact,
        fingerprint=report.fingerprint,
        certificate=report.certificate,
        version=report.version,
        algorithm=report.algorithm,
        user_ids=report.user_ids,
        key_created=report.created,
        usable_until=report.usable_until,
    )
    contact.active_key = key
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    return contact


def test_invoice_relayed_and_decrypted(
    postfix: PostfixInstance,
    settings: LazySettings,
    huey_immediate: None,
    customer_gnupg: tuple[GnuPG, str],
    tmp_path: Path,
) -> None:
    settings.SEALMAIL_SMTP_URL = postfix.smtp_url(tls="required")
    gpg, address = customer_gnupg
    contact = register_contact(gpg, address)

    [row] = enqueue(
        contact,
        category="invoice",
        subject="Your invoice for December",
        text=INVOICE_TEXT,
        attachments=[Attachment("invoice-2026-12.pdf", "application/pdf", INVOICE_PDF)],
    )
    [delivered] = postfix.wait_for_mail(address)

    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.SENT, row.error
    assert row.tls_protocol.startswith("TLSv1."), row.tls_protocol
    assert row.tls_cipher
    assert row.relay_reply.startswith("250"), row.relay_reply
    assert row.encrypted_to.lower() == contact.active_key.fingerprint.lower()

    received = str(parse(delivered)["Received"])
    assert f"using {row.tls_protocol}" in received, received
    assert parse(delivered)["Subject"] == "..."

    notmuch = Notmuch(tmp_path / "notmuch", gpg.home)
    notmuch.deliver(delivered)
    shown = notmuch.show(row.message_id)
    assert shown["crypto"]["decrypted"]["status"] == "full", shown["crypto"]
    [signature] = shown["crypto"]["signed"]["status"]
    assert signature["status"] == "good", signature
    assert shown["headers"]["Subject"] == "Your invoice for December"
    leaves = list(_leaves(shown["body"]))
    text = next(leaf for leaf in leaves if leaf["content-type"] == "text/plain")
    assert "42,00 €" in text["content"]
    [pdf] = [leaf for leaf in leaves if leaf.get("filename") == "invoice-2026-12.pdf"]
    pdf_data = notmuch.part(row.message_id, pdf["id"])
    assert hashlib.sha256(pdf_data).digest() == hashlib.sha256(INVOICE_PDF).digest()


def test_untrusted_relay_certificate_not_used(
    postfix: PostfixInstance,
    settings: LazySettings,
    huey_immediate: None,
    customer_gnupg: tuple[GnuPG, str],
    tmp_path: Path,
) -> None:
    # A CA that did not sign Postfix's certificate: verification must fail,
    # and the message must wait for a retry, never go out without TLS.
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    settings.SEALMAIL_SMTP_URL = (
        f"smtp://127.0.0.1:{postfix.port}?tls=required&cafile={other_ca}"
    )
    gpg, address = customer_gnupg
    contact = register_contact(gpg, address)

    [row] = enqueue(contact, category="invoice", subject="Held back", text=INVOICE_TEXT)

    row.refresh_from_db()
    assert row.status == OutboxMessage.Status.QUEUED
    assert row.sent_at is None
    assert "certificate" in row.error.lower(), row.error
    time.sleep(1)
    assert postfix.delivered(address) == []


def _leaves(part: dict | list) -> Iterator[dict]:
    if isinstance(part, list):
        for item in part:
            yield from _leaves(item)
    elif isinstance(part.get("content"), list):
        yield from _leaves(part["content"])
    else:
        yield part
