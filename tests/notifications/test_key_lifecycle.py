"""Key lifecycle: expiry warnings on a test clock, re-validation, refreshed keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from sealmail.contacts.models import Contact
from sealmail.core.errors import KeyRejected
from sealmail.notifications.keys import (
    RefreshStatus,
    refresh_key,
    revalidate_keys,
    send_expiry_warnings,
)
from sealmail.notifications.models import KeyEvent, KeyExpiryWarning
from tests.notifications.conftest import add_key, generate_cert, make_customer
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

DAY = timedelta(days=1)


def mails(category=None):
    from sealmail.outbox.models import OutboxMessage

    queryset = OutboxMessage.objects.order_by("id")
    if category:
        queryset = queryset.filter(category=category)
    return list(queryset)


@pytest.fixture
def contact(db, settings):
    settings.SEALMAIL_KEY_WARNING_DAYS = [30, 7, 1]
    customer = make_customer("K-1", "Alice Example")
    return Contact.objects.create(customer=customer, address="alice@customer.test")


@pytest.fixture
def short_key(contact):
    """A 40-day key, confirmed for the contact."""
    cert = generate_cert("alice@customer.test", validity_seconds=40 * 86400)
    return add_key(contact, bytes(cert.extract_certificate()))


def test_warnings_at_30_7_and_1_days(contact, short_key):
    until = short_key.usable_until
    assert send_expiry_warnings(now=until - 31 * DAY) == 0
    assert send_expiry_warnings(now=until - 30 * DAY) == 1
    assert send_expiry_warnings(now=until - 29 * DAY) == 0
    assert send_expiry_warnings(now=until - 7 * DAY + timedelta(hours=1)) == 1
    assert send_expiry_warnings(now=until - 2 * DAY) == 0
    assert send_expiry_warnings(now=until - 20 * timedelta(hours=1)) == 1
    assert send_expiry_warnings(now=until - timedelta(hours=1)) == 0
    warnings = mails("key_expiry")
    assert [mail.subject for mail in warnings] == [
        "Your OpenPGP key stops working in 30 days",
        "Your OpenPGP key stops working in 7 days",
        "Your OpenPGP key stops working in 1 day",
    ]
    text = warnings[0].text
    fingerprint = short_key.fingerprint.upper()
    assert f"gpg --quick-set-expire {fingerprint} 2y '*'" in text
    assert f"gpg --armor --export {fingerprint}" in text
    assert "http://testserver/" in text
    assert all(mail.contact_id == contact.pk for mail in warnings)


def test_missed_days_send_most_urgent_only(contact, short_key):
    until = short_key.usable_until
    assert send_expiry_warnings(now=until - 12 * timedelta(hours=1)) == 1
    assert send_expiry_warnings(now=until - 6 * timedelta(hours=1)) == 0
    assert [mail.subject for mail in mails("key_expiry")] == [
        "Your OpenPGP key stops working in 1 day"
    ]
    assert sorted(KeyExpiryWarning.objects.values_list("days_before", flat=True)) == [
        1,
        7,
        30,
    ]


def test_no_warning_without_expiry(tmp_path, contact):
    gpg = GnuPG(tmp_path / "gnupg")
    fingerprint = gpg.generate("Alice <alice@customer.test>", "ed25519", "never")
    gpg.run("--quick-add-key", fingerprint, "cv25519", "encr", "never")
    key = add_key(contact, gpg.export(fingerprint))
    assert key.usable_until is None
    assert send_expiry_warnings(now=timezone.now() + 3650 * DAY) == 0


def test_revalidation_marks_expired_key(contact, short_key):
    later = short_key.usable_until + timedelta(hours=1)
    result = revalidate_keys(now=later)
    contact.refresh_from_db()
    short_key.refresh_from_db()
    assert result.unusable == 1
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    assert short_key.problem == "expired"
    notices = mails("key_problem")
    assert len(notices) == 1
    assert "can no longer be used because it expired" in notices[0].text
    # The next day's run finds nothing new to tell.
    revalidate_keys(now=later + DAY)
    assert len(mails("key_problem")) == 1


def test_revalidation_keeps_usable_key(contact, short_key):
    now = timezone.now() + DAY
    result = revalidate_keys(now=now)
    short_key.refresh_from_db()
    contact.refresh_from_db()
    assert result.unusable == 0
    assert short_key.last_checked == now
    assert contact.encryption == Contact.Encryption.ACTIVE


# Refreshed copies uploaded by the customer, made with GnuPG.


@pytest.fixture
def gpg(tmp_path):
    return GnuPG(tmp_path / "gnupg")


@pytest.fixture
def gpg_key(gpg, contact):
    fingerprint = gpg.generate("Alice <alice@customer.test>", "ed25519", "10d")
    gpg.run("--quick-add-key", fingerprint, "cv25519", "encr", "10d")
    key = add_key(contact, gpg.export(fingerprint))
    return fingerprint, key


def extend(gpg: GnuPG, fingerprint: str) -> bytes:
    gpg.run("--quick-set-expire", fingerprint, "2y")
    gpg.run("--quick-set-expire", fingerprint, "2y", "*")
    return gpg.export(fingerprint)


def test_refresh_same_fingerprint_without_confirmation(gpg, gpg_key, contact):
    fingerprint, key = gpg_key
    old_until = key.usable_until
    result = refresh_key(contact, extend(gpg, fingerprint))
    key.refresh_from_db()
    contact.refresh_from_db()
    assert result.status == RefreshStatus.REFRESHED
    assert key.usable_until > old_until + 300 * DAY
    assert contact.active_key_id == key.pk
    assert contact.encryption == Contact.Encryption.ACTIVE
    notices = mails("account_notice")
    assert len(notices) == 1
    assert notices[0].subject == "Your OpenPGP key was updated"
    assert "no new confirmation" in notices[0].text
    assert KeyEvent.objects.filter(kind="refreshed").count() == 1


def test_refresh_unchanged_copy_sends_nothing(gpg, gpg_key, contact):
    fingerprint, _ = gpg_key
    result = refresh_key(contact, gpg.export(fingerprint))
    assert result.status == RefreshStatus.UNCHANGED
    assert mails() == []


def test_old_copy_cannot_roll_back_expiry(gpg, gpg_key, contact):
    fingerprint, key = gpg_key
    old_copy = gpg.export(fingerprint)
    refresh_key(contact, extend(gpg, fingerprint))
    key.refresh_from_db()
    extended_until = key.usable_until
    result = refresh_key(contact, old_copy)
    key.refresh_from_db()
    assert result.status == RefreshStatus.UNCHANGED
    assert key.usable_until == extended_until


def test_refresh_restores_expired_key(gpg, gpg_key, contact):
    fingerprint, key = gpg_key
    later = key.usable_until + DAY
    revalidate_keys(now=later)
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    result = refresh_key(contact, extend(gpg, fingerprint), now=later)
    contact.refresh_from_db()
    key.refresh_from_db()
    assert result.status == RefreshStatus.REFRESHED
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert key.problem == ""


def test_refresh_revoked_copy_marks_unusable(gpg, gpg_key, contact):
    fingerprint, key = gpg_key
    revocation = (gpg.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    # GnuPG disarms the stored revocation with a colon before the armor line.
    gpg.import_key(revocation.replace(":-----BEGIN", "-----BEGIN").encode())
    result = refresh_key(contact, gpg.export(fingerprint))
    contact.refresh_from_db()
    key.refresh_from_db()
    assert result.status == RefreshStatus.UNUSABLE
    assert key.problem == "revoked"
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    assert "because it was revoked" in mails("key_problem")[0].text


def test_different_fingerprint_needs_confirmation(gpg, gpg_key, contact):
    _, key = gpg_key
    other = gpg.generate("Alice New <alice@customer.test>", "ed25519", "1y")
    result = refresh_key(contact, gpg.export(other))
    contact.refresh_from_db()
    assert result.status == RefreshStatus.NEEDS_CONFIRMATION
    assert "needs a confirmation" in result.message
    assert contact.active_key_id == key.pk
    assert mails() == []


def test_refresh_without_confirmed_key_needs_confirmation(contact):
    cert = generate_cert("alice@customer.test")
    result = refresh_key(contact, bytes(cert.extract_certificate()))
    assert result.status == RefreshStatus.NEEDS_CONFIRMATION


def test_refresh_rejects_secret_key(gpg, gpg_key, contact):
    fingerprint, _ = gpg_key
    with pytest.raises(KeyRejected) as excinfo:
        refresh_key(contact, gpg.export(fingerprint, secret=True))
    assert excinfo.value.reason == "secret_key"


def test_refresh_rejects_garbage(contact):
    with pytest.raises(KeyRejected) as excinfo:
        refresh_key(contact, b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64\n")
    assert excinfo.value.reason == "malformed"
