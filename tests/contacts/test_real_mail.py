"""The portal's mail through the real outbox, composer and Maildir, read with gpg."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.pgp.inspect import inspect_key
from tests.contacts.maildir import (
    CONFIRM_LINK,
    decrypt_text,
    messages_to,
    trust_provider,
)
from tests.peers.gnupg import GnuPG

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def encrypted_contact(world: dict[str, Any], tmp_path: Path) -> tuple[Contact, GnuPG]:
    """Alice's contact with an active key whose secret half a GnuPG home holds."""
    gpg = GnuPG(tmp_path / "gnupg")
    trust_provider(gpg)
    fingerprint = gpg.generate("Alice <alice@customer.test>")
    report = inspect_key(gpg.export(fingerprint))
    contact = world["acme_contact"]
    contact.active_key = ContactKey.objects.create(
        contact=contact,
        fingerprint=report.fingerprint.lower(),
        certificate=report.certificate,
        version=report.version,
        algorithm=report.algorithm,
        user_ids=report.user_ids,
        key_created=report.created,
        usable_until=report.usable_until,
    )
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    return contact, gpg


def test_reset_mail_encrypted_to_key(encrypted_contact, outbox_runs_inline) -> None:
    _contact, gpg = encrypted_contact
    response = Client().post(
        reverse("password_reset"), {"email": "alice@customer.test"}
    )
    assert response.status_code == 302
    (message,) = messages_to("alice@customer.test")
    assert message.get_content_type() == "multipart/encrypted"
    text = decrypt_text(gpg, message)
    link = re.search(r"https?://\S+(/accounts/reset/\S+/)", text)
    assert link is not None, text

    client = Client()
    form_page = client.get(link.group(1), follow=True)
    assert b"Choose a new password" in form_page.content
    new_password = "a new and long passphrase 42"
    done = client.post(
        form_page.redirect_chain[-1][0],
        {"new_password1": new_password, "new_password2": new_password},
        follow=True,
    )
    assert b"Password set" in done.content
    assert Client().login(username="alice", password=new_password)


def test_key_removal_confirmed_through_key(
    encrypted_contact, outbox_runs_inline, alice_client
) -> None:
    contact, gpg = encrypted_contact
    response = alice_client.post(
        reverse("contacts:update", args=[contact.pk]),
        {
            "address": contact.address,
            "mode": "pgpmime",
            "action": "save",
            "remove_key": "on",
        },
    )
    assert response.status_code == 302
    (confirmation,) = messages_to("alice@customer.test")
    text = decrypt_text(gpg, confirmation)
    assert "Turn encryption off" in text
    link = CONFIRM_LINK.search(text).group(0)
    path = "/" + link.split("/", 3)[3]
    assert Client().post(path).status_code == 200
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.NONE
    notice = messages_to("alice@customer.test")[-1]
    notice_text = decrypt_text(gpg, notice)
    assert "Encryption was turned off" in notice_text
