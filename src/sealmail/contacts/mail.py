"""The mails of a contact change, queued through the outbox.

The texts live in ``contacts/mail/*.txt`` templates. The outbox encrypts and
signs a mail when it has ``recipient_key`` or the contact has an active key.
A mail without either goes out plain, or signed when SEALMAIL_SIGN_PLAIN is on.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse

from sealmail.contacts.models import Contact, ContactKey, PendingChange

CATEGORY = "account_notice"


def _link(name: str, change: PendingChange, token: str) -> str:
    return settings.SEALMAIL_BASE_URL + reverse(name, args=[change.pk, token])


def _enqueue(contact: Contact, **kwargs: object) -> None:
    # Imported here because the outbox app imports the contacts models.
    from sealmail.outbox import service

    service.enqueue(contact, source="portal", **kwargs)


def release_held(contact: Contact) -> None:
    """Let the outbox send what it held while the contact had no usable key."""
    from sealmail.outbox import service

    service.release_held(contact)


def send_account_mail(contact: Contact, *, subject: str, text: str) -> None:
    """Queue a mail about the user's login, such as a password reset link."""
    _enqueue(contact, category=CATEGORY, subject=subject, text=text, sensitive=True)


def send_confirmation(
    change: PendingChange, token: str, encrypt_to: ContactKey | None
) -> None:
    """Queue the mail with the confirm and cancel links to ``change.sent_to``."""
    contact = change.contact
    context = {
        "change": change,
        "contact": contact,
        "customer": contact.customer,
        "confirm_url": _link("contacts:confirm", change, token),
        "cancel_url": _link("contacts:cancel", change, token),
        "hours": settings.SEALMAIL_CONFIRM_HOURS,
        "new_key": change.new_key,
        "new_key_groups": fingerprint_groups(change.new_key.fingerprint)
        if change.new_key
        else "",
    }
    if change.remove_key:
        subject = "Confirm that encryption should be turned off"
    elif change.new_key is not None:
        subject = "Confirm your new OpenPGP key"
    else:
        subject = "Confirm your new contact address"
    _enqueue(
        contact,
        category=CATEGORY,
        subject=subject,
        text=render_to_string("contacts/mail/confirm.txt", context),
        to_address=change.sent_to,
        recipient_key=encrypt_to,
        idempotency_key=f"contact-change-{change.pk}-confirm",
        sensitive=True,
    )


def send_change_notice(
    change: PendingChange,
    contact: Contact,
    previous_address: str,
    previous_key: ContactKey | None,
    when: datetime,
) -> None:
    """Queue the notice to the previous address, encrypted to the previous key if any.

    Without a previous key the notice goes out unencrypted, as all mail to
    that address did: the outbox never applies the contact's new key to an
    address that is no longer the contact's.
    """
    context = {
        "change": change,
        "contact": contact,
        "customer": contact.customer,
        "previous_address": previous_address,
        "previous_key_groups": fingerprint_groups(previous_key.fingerprint)
        if previous_key
        else "",
        "new_key_groups": (
            fingerprint_groups(contact.active_key.fingerprint)
            if contact.active_key
            else ""
        ),
        "address_changed": previous_address.lower() != contact.address.lower(),
        "when": when,
        "portal_url": settings.SEALMAIL_BASE_URL + "/",
    }
    _enqueue(
        contact,
        category=CATEGORY,
        subject="Your contact settings changed",
        text=render_to_string("contacts/mail/notice.txt", context),
        to_address=previous_address,
        recipient_key=previous_key,
        idempotency_key=f"contact-change-{change.pk}-notice",
    )


def fingerprint_groups(fingerprint: str) -> str:
    """Return ``fingerprint`` in upper-case groups of four characters."""
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))
