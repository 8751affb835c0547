"""Structure checks for OpenPGP/MIME (RFC 3156) and inline PGP messages.

Every OpenPGP engine accepts a wrong ``micalg``, a missing ``Version: 1`` or
a bare LF, so only these checks catch them. They read the raw bytes as they
leave sealmail and, for signed parts, exactly the bytes the signature covers.
"""

from __future__ import annotations

import re

import pysequoia

from tests.mime.mailcheck import parse, part_body, split_raw

ARMOR_MESSAGE = re.compile(
    rb"\A-----BEGIN PGP MESSAGE-----\r\n(?:[\x21-\x7e ]*\r\n)*?\r\n[A-Za-z0-9+/=\r\n]+"
    rb"-----END PGP MESSAGE-----\r\n\Z"
)
ARMOR_SIGNATURE = re.compile(
    rb"\A-----BEGIN PGP SIGNATURE-----\r\n(?:[\x21-\x7e ]*\r\n)*?\r\n[A-Za-z0-9+/=\r\n]+"
    rb"-----END PGP SIGNATURE-----\r\n\Z"
)
# The strongest hashes first; RFC 3156 section 5 names the micalg values
# "pgp-" plus the lower-case OpenPGP hash name.
ACCEPTED_MICALGS = {
    "pgp-sha256",
    "pgp-sha384",
    "pgp-sha512",
    "pgp-sha224",
    "pgp-sha3-256",
    "pgp-sha3-512",
}


def check_transport_safe(raw: bytes, label: str) -> None:
    """Assert the bytes survive any SMTP relay: 7-bit, CRLF only, lines <= 998 octets."""
    assert raw.endswith(b"\r\n"), f"{label} does not end with CRLF"
    assert b"\r\n" in raw, f"{label} has no CRLF line endings"
    lines = raw.split(b"\r\n")
    for number, line in enumerate(lines, 1):
        assert b"\n" not in line, f"{label} line {number} has a bare LF"
        assert b"\r" not in line, f"{label} line {number} has a bare CR"
        assert len(line) <= 998, (
            f"{label} line {number} is {len(line)} octets long (RFC 5322 allows 998)"
        )
        assert max(line, default=0) < 0x80, (
            f"{label} line {number} has 8-bit data: {line[:60]!r}"
        )
        assert b"\x00" not in line, f"{label} line {number} contains NUL"


def content_type(entity: bytes) -> tuple[str, dict[str, str]]:
    """Return the lower-case type and the parameters of ``entity``'s Content-Type."""
    parsed = parse(entity)
    params = {
        key.lower(): value for key, value in parsed["Content-Type"].params.items()
    }
    return parsed.get_content_type(), params


def check_multipart_encrypted(raw: bytes) -> bytes:
    """Check RFC 3156 section 4 and return the armored OpenPGP message."""
    check_transport_safe(raw, "the message")
    outer = parse(raw)
    assert outer["MIME-Version"] == "1.0"
    kind, params = content_type(raw)
    assert kind == "multipart/encrypted"
    assert params.get("protocol") == "application/pgp-encrypted", params

    _, parts = split_raw(raw)
    assert len(parts) == 2, (
        f"multipart/encrypted has {len(parts)} parts, RFC 3156 requires 2"
    )
    control, payload = parts
    assert content_type(control)[0] == "application/pgp-encrypted"
    assert re.search(rb"^Version: 1\r$", part_body(control), re.MULTILINE), part_body(
        control
    )
    assert content_type(payload)[0] == "application/octet-stream"
    armored = part_body(payload)
    assert ARMOR_MESSAGE.match(armored), (
        f"not one ASCII-armored message: {armored[:80]!r}"
    )
    return armored


def check_multipart_signed(raw: bytes) -> tuple[bytes, bytes]:
    """Check RFC 3156 section 5 and return the signed entity and the armored signature.

    ``micalg`` must name the hash the signature really uses, and the signed
    entity must be 7-bit with no trailing whitespace, because a relay may
    re-encode 8-bit data or strip trailing blanks and so break the signature
    (RFC 3156 section 3).
    """
    check_transport_safe(raw, "the message")
    kind, params = content_type(raw)
    assert kind == "multipart/signed"
    assert params.get("protocol") == "application/pgp-signature", params

    _, parts = split_raw(raw)
    assert len(parts) == 2, (
        f"multipart/signed has {len(parts)} parts, RFC 3156 requires 2"
    )
    signed, signature_part = parts
    assert content_type(signature_part)[0] == "application/pgp-signature"
    armored = part_body(signature_part)
    assert ARMOR_SIGNATURE.match(armored), (
        f"not one ASCII-armored signature: {armored[:80]!r}"
    )

    hash_name = str(pysequoia.Sig.from_bytes(armored).hash_algorithm).rpartition(".")[2]
    assert params.get("micalg") == "pgp-" + hash_name.lower(), (
        params.get("micalg"),
        hash_name,
    )
    assert params["micalg"] in ACCEPTED_MICALGS, params["micalg"]

    for number, line in enumerate(signed.split(b"\r\n"), 1):
        assert not line.endswith((b" ", b"\t")), (
            f"signed line {number} ends in whitespace: {line!r}"
        )
    check_signed_entity_encodings(signed)
    return signed, armored


def check_signed_entity_encodings(signed: bytes) -> None:
    """Assert every leaf of the signed entity is quoted-printable, base64 or pure 7-bit."""
    for part in parse(signed).walk():
        if part.is_multipart():
            continue
        encoding = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
        assert encoding in {"7bit", "quoted-printable", "base64"}, (
            f"{part.get_content_type()} uses {encoding}, which a relay may re-encode"
        )


def check_inline_structure(raw: bytes, attachment_names: list[str]) -> None:
    """Check an inline PGP message: armored text part, each attachment NAME.pgp."""
    check_transport_safe(raw, "the message")
    parsed = parse(raw)
    if attachment_names:
        assert parsed.get_content_type() == "multipart/mixed"
        text_part, *attachments = parsed.iter_parts()
    else:
        text_part, attachments = parsed, []
    assert text_part.get_content_type() == "text/plain"
    armored = (
        text_part.get_payload(decode=True)
        .replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
    )
    assert ARMOR_MESSAGE.match(armored), (
        f"text part is not one armored message: {armored[:80]!r}"
    )
    assert [part.get_filename() for part in attachments] == [
        name + ".pgp" for name in attachment_names
    ]
    for part in attachments:
        assert part.get_content_type() == "application/octet-stream"
        data = part.get_payload(decode=True)
        # A binary OpenPGP message starts with a PKESK packet (tag 1): 0x84/0x85
        # in the old packet format, 0xC1 in the new one.
        assert data[:1] in (b"\x84", b"\x85", b"\xc1"), (
            f"{part.get_filename()} starts {data[:4]!r}"
        )


def check_protected_headers(
    decrypted: bytes, outer_raw: bytes, *, hide_subject: bool
) -> None:
    """Check RFC 9788 header protection in the decrypted entity of a PGP/MIME message."""
    inner = parse(decrypted)
    outer = parse(outer_raw)
    assert inner.get_param("hp") == "cipher", inner["Content-Type"]
    for name in ("From", "To", "Date", "Message-ID"):
        assert inner[name] == outer[name], (
            f"{name}: inner {inner[name]!r}, outer {outer[name]!r}"
        )
    hp_outer = [str(value) for value in inner.get_all("HP-Outer", [])]
    if hide_subject:
        assert outer["Subject"] == "...", outer["Subject"]
        assert inner["Subject"] != outer["Subject"]
        assert "Subject: ..." in hp_outer, hp_outer
    else:
        assert inner["Subject"] == outer["Subject"]
        assert f"Subject: {outer['Subject']}" in hp_outer, hp_outer
