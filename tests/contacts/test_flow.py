"""The contact change flow through the portal: request, confirm, cancel, notices."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from sealmail.contacts.changes import expire_due_changes
from sealmail.contacts.models import AuditEvent, Contact, ContactKey, PendingChange
from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import inspect_key

pytestmark = pytest.mark.db_backends

CHECKED_WKD_REFRESH = re.compile(
    r'<input type="checkbox" name="wkd_refresh"[^>]* checked>'
)
LINK = re.compile(r"https?://[^/\s]+/(confirm|cancel)/(\d+)/([A-Za-z0-9_-]+)/")


def links(text: str) -> dict[str, str]:
    """Return the confirm and cancel paths found in a mail text."""
    found = {kind: f"/{kind}/{pk}/{token}/" for kind, pk, token in LINK.findall(text)}
    assert set(found) == {"confirm", "cancel"}, text
    return found


def paste(client: Client, contact: Contact, **fields: Any):
    data = {
        "address": contact.address,
        "mode": contact.mode,
        "action": "save",
        **fields,
    }
    return client.post(reverse("contacts:update", args=[contact.pk]), data)


def test_update_page_explains_export(
    alice_client: Client, world: dict[str, Any]
) -> None:
    contact = world["acme_contact"]
    response = alice_client.get(reverse("contacts:update", args=[contact.pk]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "gpg --armor --export alice@customer.test" in body
    assert "Thunderbird" in body
    assert "Kleopatra" in body
    assert reverse("contacts:provider_keys") in body


def test_provider_keys_download(client: Client, db) -> None:
    response = client.get(reverse("contacts:provider_keys"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pgp-keys"
    assert response.content.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert b"PRIVATE" not in response.content


def test_check_only_shows_report(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    response = paste(
        alice_client,
        contact,
        key_text=gpg_keys["alice_public"].decode(),
        action="check",
    )
    body = response.content.decode()
    fpr = gpg_keys["alice_fpr"]
    groups = " ".join(fpr[i : i + 4] for i in range(0, len(fpr), 4))
    assert response.status_code == 200
    assert groups in body
    assert "Alice &lt;alice@customer.test&gt;" in body
    assert not PendingChange.objects.exists()
    assert sent.calls == []


def test_paste_key_starts_confirmation(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    response = paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    assert response.status_code == 302
    change = PendingChange.objects.get(contact=contact)
    contact.refresh_from_db()
    assert change.state == PendingChange.State.PENDING
    assert change.new_key.fingerprint == gpg_keys["alice_fpr"].lower()
    assert contact.active_key is None
    assert contact.encryption == Contact.Encryption.PENDING
    call = sent.last()
    assert call["to_address"] == "alice@customer.test"
    assert call["recipient_key"] == change.new_key
    assert call["category"] == "account_notice"
    path = links(call["text"])["confirm"]
    token = path.rstrip("/").rsplit("/", 1)[1]
    assert token not in change.token_hash
    assert len(change.token_hash) == 64
    assert AuditEvent.objects.filter(
        contact=contact, kind="requested", actor="alice"
    ).exists()
    page = alice_client.get(response["Location"]).content.decode()
    fpr = gpg_keys["alice_fpr"]
    assert " ".join(fpr[i : i + 4] for i in range(0, len(fpr), 4)) in page
    assert "Alice &lt;alice@customer.test&gt;" in page


def test_prefetch_get_confirms_nothing(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    path = links(sent.last()["text"])["confirm"]
    scanner = Client()
    for _ in range(3):
        response = scanner.get(path)
        assert response.status_code == 200
        assert b"Confirm" in response.content
        assert response["Referrer-Policy"] == "strict-origin"
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.PENDING
    assert contact.active_key is None
    assert PendingChange.objects.get().state == PendingChange.State.PENDING
    assert not AuditEvent.objects.filter(kind="confirmed").exists()


def test_confirm_activates_key(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    path = links(sent.last()["text"])["confirm"]
    response = Client(REMOTE_ADDR="192.0.2.7").post(path)
    assert response.status_code == 200
    assert b"Encryption active" in response.content
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key.fingerprint == gpg_keys["alice_fpr"].lower()
    event = AuditEvent.objects.get(kind="confirmed")
    assert event.actor == "link holder"
    assert event.client_address == "192.0.2.7"
    assert sent.released == [contact.pk]


def test_token_reuse_rejected(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    path = links(sent.last()["text"])["confirm"]
    assert Client().post(path).status_code == 200
    second = Client().post(path)
    assert second.status_code == 410
    assert b"already confirmed" in second.content
    assert AuditEvent.objects.filter(kind="confirmed").count() == 1


def test_expired_token_rejected(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    path = links(sent.last()["text"])["confirm"]
    PendingChange.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert Client().get(path).status_code == 410
    response = Client().post(path)
    assert response.status_code == 410
    assert b"expired" in response.content
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.NONE
    assert contact.active_key is None
    assert PendingChange.objects.get().state == PendingChange.State.EXPIRED
    assert AuditEvent.objects.filter(kind="expired").count() == 1


def test_expiry_job_marks_changes(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    assert expire_due_changes() == 0
    assert expire_due_changes(timezone.now() + timedelta(hours=25)) == 1
    assert PendingChange.objects.get().state == PendingChange.State.EXPIRED
    assert AuditEvent.objects.get(kind="expired").actor == "system"


def test_other_contacts_token_rejected(alice_client, world, gpg_keys, sent) -> None:
    bob_client = Client()
    bob_client.force_login(world["bob"])
    paste(
        alice_client, world["acme_contact"], key_text=gpg_keys["alice_public"].decode()
    )
    alice_token = links(sent.last()["text"])["confirm"].split("/")[3]
    paste(bob_client, world["beta_contact"], key_text=gpg_keys["other_public"].decode())
    bob_change = PendingChange.objects.get(contact=world["beta_contact"])
    forged = f"/confirm/{bob_change.pk}/{alice_token}/"
    assert Client().get(forged).status_code == 404
    assert Client().post(forged).status_code == 404
    assert Client().post(f"/confirm/999999/{alice_token}/").status_code == 404
    bob_change.refresh_from_db()
    assert bob_change.state == PendingChange.State.PENDING


def test_cancel_link_discards_change(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    found = links(sent.last()["text"])
    assert Client().get(found["cancel"]).status_code == 200
    assert PendingChange.objects.get().state == PendingChange.State.PENDING
    assert Client().post(found["cancel"]).status_code == 200
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.NONE
    assert PendingChange.objects.get().state == PendingChange.State.CANCELLED
    assert Client().post(found["confirm"]).status_code == 410
    assert AuditEvent.objects.filter(kind="cancelled").count() == 1


def test_new_request_replaces_pending(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    first = links(sent.last()["text"])["confirm"]
    paste(alice_client, contact, key_text=gpg_keys["other_public"].decode())
    assert PendingChange.objects.filter(state="pending").count() == 1
    assert Client().post(first).status_code == 410
    second = links(sent.last()["text"])["confirm"]
    assert Client().post(second).status_code == 200
    contact.refresh_from_db()
    assert contact.active_key.fingerprint == gpg_keys["other_fpr"].lower()


def _activate(alice_client, contact, key_text, sent) -> None:
    paste(alice_client, contact, key_text=key_text)
    assert Client().post(links(sent.last()["text"])["confirm"]).status_code == 200
    contact.refresh_from_db()


def test_address_change_notifies_previous(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    old_key = contact.active_key
    response = paste(alice_client, contact, address="alice@elsewhere.test")
    assert response.status_code == 302
    confirmation = sent.last()
    assert confirmation["to_address"] == "alice@elsewhere.test"
    assert confirmation["recipient_key"] == old_key
    contact.refresh_from_db()
    assert contact.address == "alice@customer.test"
    assert Client().post(links(confirmation["text"])["confirm"]).status_code == 200
    contact.refresh_from_db()
    assert contact.address == "alice@elsewhere.test"
    assert contact.active_key == old_key
    notice = sent.last()
    assert notice["to_address"] == "alice@customer.test"
    assert notice["recipient_key"] == old_key
    assert "alice@elsewhere.test" in notice["text"]
    assert AuditEvent.objects.filter(kind="notice_sent").count() == 2


def test_key_change_notice_uses_previous_key(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    old_key = contact.active_key
    paste(alice_client, contact, key_text=gpg_keys["other_public"].decode())
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key == old_key
    assert Client().post(links(sent.last()["text"])["confirm"]).status_code == 200
    notice = sent.last()
    assert notice["recipient_key"] == old_key
    assert notice["to_address"] == "alice@customer.test"


def test_remove_key_confirms_through_current_key(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    old_key = contact.active_key
    response = paste(alice_client, contact, remove_key="on")
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE
    confirmation = sent.last()
    assert confirmation["to_address"] == "alice@customer.test"
    assert confirmation["recipient_key"] == old_key
    assert Client().post(links(confirmation["text"])["confirm"]).status_code == 200
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.NONE
    assert contact.active_key is None
    assert sent.last()["recipient_key"] == old_key


def test_remove_key_with_new_address_rejected(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    calls = len(sent.calls)
    response = paste(alice_client, contact, remove_key="on", address="x@elsewhere.test")
    assert response.status_code == 400
    assert b"Remove the key first" in response.content
    assert len(sent.calls) == calls


def test_mode_change_applies_at_once(alice_client, world, sent) -> None:
    contact = world["acme_contact"]
    response = paste(alice_client, contact, mode="inline")
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.mode == Contact.Mode.INLINE
    assert sent.calls == []
    assert AuditEvent.objects.filter(kind="mode_changed").exists()


def test_mode_change_keeps_encryption(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    key = contact.active_key
    calls = len(sent.calls)
    response = paste(alice_client, contact, mode="inline")
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.mode == Contact.Mode.INLINE
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key == key
    assert len(sent.calls) == calls


def test_encryption_off_with_mode_change_still_confirmed(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    key = contact.active_key
    response = paste(alice_client, contact, mode="inline", remove_key="on")
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.mode == Contact.Mode.INLINE
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key == key
    confirmation = sent.last()
    assert confirmation["to_address"] == "alice@customer.test"
    assert confirmation["recipient_key"] == key


def test_encryption_off_with_unusable_key_rejected(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    _activate(alice_client, contact, gpg_keys["alice_public"].decode(), sent)
    Contact.objects.filter(pk=contact.pk).update(
        encryption=Contact.Encryption.KEY_PROBLEM
    )
    calls = len(sent.calls)
    response = paste(alice_client, contact, remove_key="on")
    assert response.status_code == 400
    assert b"cannot send the confirmation" in response.content
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    assert len(sent.calls) == calls


def test_wkd_refresh_checkbox_explained(alice_client, world) -> None:
    contact = world["acme_contact"]
    body = alice_client.get(reverse("contacts:update", args=[contact.pk])).content
    page = body.decode()
    assert 'name="wkd_refresh"' in page
    assert "Web Key Directory" in page
    assert "A different key is never" in page
    assert not CHECKED_WKD_REFRESH.search(page)


def test_wkd_refresh_opt_in_and_out(alice_client, world, sent) -> None:
    contact = world["acme_contact"]
    response = paste(alice_client, contact, wkd_refresh="on")
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.wkd_refresh is True
    assert sent.calls == []
    on = AuditEvent.objects.get(kind=AuditEvent.Kind.WKD_REFRESH_ON)
    assert on.actor == "alice"
    page = alice_client.get(response["Location"]).content.decode()
    assert "Saved." in page
    assert CHECKED_WKD_REFRESH.search(page)
    assert "WKD key refresh turned on" in page

    paste(alice_client, contact)
    contact.refresh_from_db()
    assert contact.wkd_refresh is False
    assert AuditEvent.objects.filter(kind=AuditEvent.Kind.WKD_REFRESH_OFF).exists()


def test_wkd_refresh_unchanged_not_audited(alice_client, world, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact)
    assert not AuditEvent.objects.filter(
        kind__in=[AuditEvent.Kind.WKD_REFRESH_ON, AuditEvent.Kind.WKD_REFRESH_OFF]
    ).exists()


def test_wkd_refresh_saved_beside_key_change(
    alice_client, world, gpg_keys, sent
) -> None:
    contact = world["acme_contact"]
    response = paste(
        alice_client,
        contact,
        wkd_refresh="on",
        key_text=gpg_keys["alice_public"].decode(),
    )
    assert response.status_code == 302
    contact.refresh_from_db()
    assert contact.wkd_refresh is True
    assert contact.encryption == Contact.Encryption.PENDING
    assert PendingChange.objects.filter(contact=contact).exists()


def test_wkd_refresh_not_saved_by_check(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(
        alice_client,
        contact,
        wkd_refresh="on",
        key_text=gpg_keys["alice_public"].decode(),
        action="check",
    )
    contact.refresh_from_db()
    assert contact.wkd_refresh is False


@pytest.mark.parametrize(
    "key_text",
    [
        "hello",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----",
    ],
)
def test_bad_key_rejected_in_plain_words(alice_client, world, sent, key_text) -> None:
    with pytest.raises(KeyRejected) as rejected:
        inspect_key(key_text)
    response = paste(alice_client, world["acme_contact"], key_text=key_text)
    assert response.status_code == 200
    first_line = rejected.value.message.splitlines()[0]
    assert escape(first_line) in response.content.decode()
    assert not ContactKey.objects.exists()
    assert sent.calls == []


def test_oversized_paste_rejected(alice_client, world, sent) -> None:
    response = paste(
        alice_client, world["acme_contact"], key_text="A" * (1024 * 1024 + 10)
    )
    assert response.status_code == 200
    assert b"at most" in response.content
    assert not ContactKey.objects.exists()


def test_change_rate_limited_per_contact(
    alice_client, world, gpg_keys, sent, settings
) -> None:
    settings.SEALMAIL_CHANGE_LIMIT_CONTACT = 2
    contact = world["acme_contact"]
    for _ in range(2):
        assert (
            paste(
                alice_client, contact, key_text=gpg_keys["alice_public"].decode()
            ).status_code
            == 302
        )
    response = paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    assert response.status_code == 400
    assert b"Wait an hour" in response.content
    assert len(sent.calls) == 2


def test_change_rate_limited_per_client(world, gpg_keys, sent, settings) -> None:
    settings.SEALMAIL_CHANGE_LIMIT_CLIENT = 1
    alice = Client(REMOTE_ADDR="198.51.100.1")
    alice.force_login(world["alice"])
    bob = Client(REMOTE_ADDR="198.51.100.1")
    bob.force_login(world["bob"])
    assert (
        paste(
            alice, world["acme_contact"], key_text=gpg_keys["alice_public"].decode()
        ).status_code
        == 302
    )
    response = paste(
        bob, world["beta_contact"], key_text=gpg_keys["other_public"].decode()
    )
    assert response.status_code == 400
    assert b"network address" in response.content


def test_portal_cancel_button(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    page = alice_client.get(reverse("contacts:update", args=[contact.pk])).content
    assert b"Waiting for confirmation" in page
    response = alice_client.post(reverse("contacts:cancel_pending", args=[contact.pk]))
    assert response.status_code == 302
    assert PendingChange.objects.get().state == PendingChange.State.CANCELLED


def test_rejected_key_is_audited(alice_client, world, sent) -> None:
    paste(alice_client, world["acme_contact"], key_text="not a key")
    event = AuditEvent.objects.get(kind="key_rejected")
    assert event.detail == {"reason": "malformed"}
    assert event.actor == "alice"


def test_confirm_address_taken_meanwhile(alice_client, world, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, address="shared@customer.test")
    Contact.objects.create(customer=world["acme"], address="shared@customer.test")
    response = Client().post(links(sent.last()["text"])["confirm"])
    assert response.status_code == 409
    assert b"now uses shared@customer.test" in response.content
    contact.refresh_from_db()
    assert contact.address == "alice@customer.test"
    assert PendingChange.objects.get().state == PendingChange.State.PENDING


def test_openapi_lists_contact_routes(db) -> None:
    schema = Client().get("/api/openapi.json").json()
    assert "/api/v1/contacts/{contact_id}" in schema["paths"]
    assert "/api/v1/contacts/{contact_id}/key" in schema["paths"]


def test_expiry_task_runs_job(alice_client, world, gpg_keys, sent) -> None:
    from sealmail.contacts.tasks import expire_pending_changes

    paste(
        alice_client, world["acme_contact"], key_text=gpg_keys["alice_public"].decode()
    )
    PendingChange.objects.update(expires=timezone.now() - timedelta(minutes=1))
    assert expire_pending_changes.call_local() == 1
    assert PendingChange.objects.get().state == PendingChange.State.EXPIRED


def test_home_shows_provider_keys(client: Client, db) -> None:
    from sealmail.keys.store import get_keystore

    body = client.get("/").content.decode()
    fingerprint = get_keystore().certificates()[0].fingerprint.upper()
    assert " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4)) in body
    assert reverse("contacts:provider_keys") in body


def test_same_key_again_needs_no_confirmation(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    Client().post(links(sent.last()["text"])["confirm"])
    requests_before = PendingChange.objects.count()
    mails_before = len(sent.calls)

    response = paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    assert response.status_code == 302
    assert PendingChange.objects.count() == requests_before
    assert len(sent.calls) == mails_before
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE
    assert contact.active_key.fingerprint == gpg_keys["alice_fpr"].lower()
    page = alice_client.get(response["Location"])
    assert b"contains nothing new" in page.content


def test_other_key_still_needs_confirmation(alice_client, world, gpg_keys, sent) -> None:
    contact = world["acme_contact"]
    paste(alice_client, contact, key_text=gpg_keys["alice_public"].decode())
    Client().post(links(sent.last()["text"])["confirm"])

    paste(alice_client, contact, key_text=gpg_keys["other_public"].decode())
    pending = PendingChange.objects.get(state=PendingChange.State.PENDING)
    assert pending.new_key.fingerprint == gpg_keys["other_fpr"].lower()


def test_revoked_copy_of_active_key_is_stored(
    alice_client: Client, world: dict[str, Any], tmp_path
) -> None:
    """Intake rejects a revoked key as new, but a revoked copy of the key in use is stored."""
    from tests.peers.gnupg import GnuPG

    gpg = GnuPG(tmp_path / "revoking")
    fingerprint = gpg.generate("Alice <alice@customer.test>")
    contact = world["acme_contact"]
    report = inspect_key(gpg.export(fingerprint))
    key = ContactKey.objects.create(
        contact=contact,
        fingerprint=report.fingerprint.lower(),
        certificate=report.certificate,
        version=report.version,
        algorithm=report.algorithm,
        key_created=report.created,
    )
    contact.active_key = key
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    revocation = (gpg.home / "openpgp-revocs.d" / f"{fingerprint}.rev").read_text()
    gpg.import_key(revocation.replace(":-----BEGIN", "-----BEGIN").encode())

    # Checking the key alone changes nothing.
    paste(alice_client, contact, key_text=gpg.export(fingerprint).decode(), action="check")
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.ACTIVE

    response = paste(alice_client, contact, key_text=gpg.export(fingerprint).decode())
    assert response.status_code == 302
    contact.refresh_from_db()
    key.refresh_from_db()
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    assert key.problem == "revoked"
