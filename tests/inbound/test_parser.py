"""The framework-free parser: structure, normalisation, limits and defects."""

from __future__ import annotations

import pysequoia
import pytest

from sealmail.core.mime.inbound import Limits, MessageEncryption, inline, parse_message
from sealmail.core.mime.inbound.openpgp import SequoiaOpenPGP
from sealmail.core.mime.inbound.structure import decode_text, split_multipart
from sealmail.core.pgp.keystore import KeyStore
from tests.inbound import shapes


@pytest.fixture(scope="module")
def keystore(tmp_path_factory) -> KeyStore:
    directory = tmp_path_factory.mktemp("provider-keys")
    store = KeyStore(directory)
    store.generate(["support@provider.test"])
    return store


@pytest.fixture(scope="module")
def provider_cert(keystore) -> bytes:
    return str(keystore.certificates()[0]).encode()


@pytest.fixture(scope="module")
def openpgp(keystore, peers):
    certificates = [
        pysequoia.Cert.from_bytes(peer.certificate()) for peer in peers.values()
    ]
    return SequoiaOpenPGP(
        keystore, lambda key_ids: certificates, max_plaintext_bytes=1 << 20
    )


def test_split_multipart_exact_bytes():
    body = (
        b"preamble\r\n--b\r\nA: 1\r\n\r\none\r\n--b\r\n\r\ntwo\r\n\r\n--b--\r\nepilogue"
    )
    children, defects = split_multipart(body, "b", 10)
    assert children == [b"A: 1\r\n\r\none", b"\r\ntwo\r\n"]
    assert defects == []


def test_split_multipart_missing_close():
    children, defects = split_multipart(b"--b\nx\n--b\ny\n", "b", 10)
    assert children == [b"x", b"y\n"]
    assert "closing boundary" in defects[0]


def test_decode_text_fallbacks():
    assert decode_text("K\u00f6ln".encode("utf-8"), ["bogus-charset"]) == (
        "K\u00f6ln",
        "utf-8",
    )
    assert decode_text("K\u00f6ln".encode("latin-1"), [None]) == (
        "K\u00f6ln",
        "windows-1252",
    )
    assert decode_text(b"\x81\x8d", ["utf-8"])[1] == "windows-1252"
    assert decode_text("\u20ac".encode("cp1252"), ["us-ascii"]) == (
        "\u20ac",
        "windows-1252",
    )


def test_armor_normalised():
    damaged = shapes.damage_armor(
        b"-----BEGIN PGP MESSAGE-----\n\nabc\ndef\n-----END PGP MESSAGE-----\n"
    )
    assert b"\xa0" in damaged
    assert inline.normalise_encrypted(damaged) == (
        b"-----BEGIN PGP MESSAGE-----\n\nabc\ndef\n-----END PGP MESSAGE-----\n\n"
    )


def test_armor_charset_header_wins(openpgp, peers, provider_cert):
    peer = peers["gnupg"]
    armored = peer.encrypt(
        "Stra\u00dfe".encode("iso-8859-15"), provider_cert, sign=False
    )
    armored = armored.replace(b"\n\n", b"\nCharset: ISO-8859-15\n\n", 1)
    raw = shapes.headers(peer.address, "charset") + (
        b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + shapes.crlf(armored)
    )
    parsed = parse_message(raw, openpgp)
    assert parsed.parts[0].text == "Stra\u00dfe"
    assert parsed.parts[0].charset == "iso-8859-15"


def test_inline_with_plain_text_around(openpgp, peers, provider_cert):
    peer = peers["gnupg"]
    armored = peer.encrypt(b"inside\n", provider_cert, sign=False).decode()
    raw = shapes.headers(peer.address, "around") + shapes.text_entity(
        "Hello, see below.\n" + armored + "Regards\n"
    )
    parsed = parse_message(raw, openpgp)
    assert [part.encryption.value for part in parsed.parts] == [
        "none",
        "decrypted",
        "none",
    ]
    assert parsed.parts[1].text == "inside\n"
    assert parsed.encryption is MessageEncryption.PARTIAL


@pytest.mark.parametrize(
    "first",
    [
        b"Content-Type: text/plain\r\n\r\nnot empty\r\n",
        b"Content-Type: text/html\r\n\r\n\r\n",
    ],
)
def test_mixed_up_near_misses_not_repaired(openpgp, peers, provider_cert, first):
    peer = peers["gnupg"]
    control = b"Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
    data = b"Content-Type: application/octet-stream\r\n\r\n" + peer.encrypt(
        b"x", provider_cert
    )
    raw = shapes.headers(peer.address, "near miss") + shapes.multipart(
        "mixed", [first, control, data], "nm"
    )
    parsed = parse_message(raw, openpgp)
    assert parsed.repaired_mixed_up is False
    assert all(not part.encrypted for part in parsed.parts)


def test_protected_headers_used(openpgp, peers, provider_cert):
    peer = peers["sq"]
    raw = shapes.combined(
        peer, provider_cert, "...", "body\n", protected_subject="Real subject"
    )
    parsed = parse_message(raw, openpgp)
    assert parsed.subject == "Real subject"
    assert parsed.outer_subject == "..."
    assert parsed.protected_headers is True


def test_nesting_depth_bounded(openpgp):
    depth = 200
    body = b"Content-Type: text/plain\r\n\r\ndeep\r\n"
    for level in range(depth):
        body = shapes.multipart("mixed", [body], f"b{level}")
    parsed = parse_message(b"Subject: deep\r\n" + body, openpgp, Limits(max_depth=16))
    assert any("nested deeper" in defect for defect in parsed.defects)
    assert len(parsed.parts) == 1


def test_part_count_bounded(openpgp):
    children = [b"Content-Type: text/plain\r\n\r\nx"] * 50
    raw = b"Subject: many\r\n" + shapes.multipart("mixed", children, "m")
    parsed = parse_message(raw, openpgp, Limits(max_parts=10))
    assert len(parsed.parts) == 10
    assert any("more than 10 parts" in defect for defect in parsed.defects)


def test_malformed_headers_recorded_not_raised(openpgp):
    raw = (
        b"Subject: =?utf-8?b?invalid base64?=\r\nFrom: <<<@@@>>>\r\n"
        b"Content-Type: multipart/mixed\r\n\r\nno boundary here\r\n"
    )
    parsed = parse_message(raw, openpgp)
    assert parsed.parts
    assert any("without a boundary" in defect for defect in parsed.defects)


def test_encrypted_public_key_attachment_not_decrypted(openpgp, peers):
    peer = peers["gnupg"]
    key_part = (
        b'Content-Type: application/pgp-keys; name="key.asc"\r\n'
        b'Content-Disposition: attachment; filename="key.asc"\r\n\r\n'
        + shapes.crlf(peer.certificate())
    )
    raw = shapes.headers(peer.address, "key") + shapes.multipart(
        "mixed", [shapes.text_entity("my key\n"), key_part], "k"
    )
    parsed = parse_message(raw, openpgp)
    assert [part.filename for part in parsed.parts] == [None, "key.asc"]
    assert not any(part.encrypted for part in parsed.parts)
