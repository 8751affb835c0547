"""Build inbound messages in every shape customers' mail clients send.

Each function returns the exact wire bytes (CRLF line endings) of one
message from ``sender`` to the support role address.
"""

from __future__ import annotations

import base64
import quopri
import re
from datetime import datetime, timezone
from email.utils import format_datetime, make_msgid

SUPPORT = "support@provider.test"


def crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def headers(
    sender: str, subject: str, *extra: tuple[str, str], message_id: str | None = None
) -> bytes:
    lines = [
        ("From", sender),
        ("To", SUPPORT),
        ("Subject", subject),
        ("Date", format_datetime(datetime.now(timezone.utc))),
        ("Message-ID", message_id or make_msgid(domain="customer.test")),
        ("MIME-Version", "1.0"),
        *extra,
    ]
    return b"".join(f"{name}: {value}\r\n".encode() for name, value in lines)


def text_entity(text: str, *, charset: str = "utf-8", extra: bytes = b"") -> bytes:
    body = quopri.encodestring(crlf(text.encode(charset)))
    return crlf(
        f"Content-Type: text/plain; charset={charset}\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n".encode()
        + extra
        + b"\r\n"
        + body
    )


def multipart(
    subtype: str, children: list[bytes], boundary: str, params: str = ""
) -> bytes:
    body = b"".join(
        b"--" + boundary.encode() + b"\r\n" + child + b"\r\n" for child in children
    )
    return (
        f'Content-Type: multipart/{subtype}; boundary="{boundary}"{params}\r\n\r\n'.encode()
        + body
        + b"--"
        + boundary.encode()
        + b"--\r\n"
    )


def encrypted_entity(ciphertext: bytes, boundary: str = "enc-boundary") -> bytes:
    control = b"Content-Type: application/pgp-encrypted\r\nContent-Description: PGP/MIME version\r\n\r\nVersion: 1\r\n"
    data = (
        b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        b'Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n'
        + crlf(ciphertext)
    )
    return multipart(
        "encrypted", [control, data], boundary, '; protocol="application/pgp-encrypted"'
    )


def signed_entity(peer, content: bytes, boundary: str = "sig-boundary") -> bytes:
    signature = peer.sign_detached(content)
    signature_part = (
        b'Content-Type: application/pgp-signature; name="signature.asc"\r\n\r\n'
        + crlf(signature)
    )
    return multipart(
        "signed",
        [content, signature_part],
        boundary,
        '; micalg=pgp-sha256; protocol="application/pgp-signature"',
    )


def _top(head: bytes, entity: bytes) -> bytes:
    message = head + entity
    # SMTP clients end the data with CRLF, so a message must already end with one
    # to arrive byte for byte.
    return message if message.endswith(b"\r\n") else message + b"\r\n"


def combined(
    peer,
    provider_cert: bytes,
    subject: str,
    text: str,
    *,
    protected_subject: str | None = None,
) -> bytes:
    """PGP/MIME signed and encrypted in one pass, with protected headers when given."""
    inner_headers = b""
    if protected_subject is not None:
        inner_headers = (
            f"Subject: {protected_subject}\r\nFrom: {peer.address}\r\n".encode()
        )
    inner = text_entity(text, extra=inner_headers)
    ciphertext = peer.encrypt(inner, provider_cert, sign=True)
    return _top(headers(peer.address, subject), encrypted_entity(ciphertext))


def nested(peer, provider_cert: bytes, subject: str, text: str) -> bytes:
    """PGP/MIME signed first (multipart/signed), then encrypted without a signature."""
    signed = signed_entity(peer, text_entity(text))
    ciphertext = peer.encrypt(signed, provider_cert, sign=False)
    return _top(headers(peer.address, subject), encrypted_entity(ciphertext))


def signed_only(peer, subject: str, text: str) -> bytes:
    """PGP/MIME multipart/signed, not encrypted."""
    return _top(headers(peer.address, subject), signed_entity(peer, text_entity(text)))


def damage_armor(armored: bytes) -> bytes:
    """Do to armor what mail clients do: NBSP indents, trailing spaces, CRLF."""
    lines = armored.replace(b"\r\n", b"\n").split(b"\n")
    damaged = []
    for number, line in enumerate(lines):
        if number % 3 == 1 and line:
            line = b"\xa0" + line
        damaged.append(line + b"  ")
    return b"\r\n".join(damaged)


def inline(peer, provider_cert: bytes, subject: str, text: str) -> bytes:
    """Inline PGP in an ISO-8859-1 quoted-printable part, armor damaged in transit."""
    ciphertext = peer.encrypt(text.encode("iso-8859-1"), provider_cert, sign=True)
    body = quopri.encodestring(damage_armor(ciphertext))
    entity = (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + crlf(body)
    )
    return _top(headers(peer.address, subject), entity)


def clearsigned(peer, subject: str, text: str) -> bytes:
    entity = text_entity(peer.clearsign(text.encode()).decode())
    return _top(headers(peer.address, subject), entity)


def attachment(
    peer, provider_cert: bytes, subject: str, text: str, data: bytes, name: str
) -> bytes:
    """Inline PGP text plus a separately encrypted binary attachment ``NAME.pgp``."""
    body = text_entity(peer.encrypt(text.encode(), provider_cert).decode())
    encrypted = peer.encrypt(data, provider_cert)
    file_part = (
        f'Content-Type: application/octet-stream; name="{name}.pgp"\r\n'
        f'Content-Disposition: attachment; filename="{name}.pgp"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n".encode()
        + base64.encodebytes(encrypted).replace(b"\n", b"\r\n")
    )
    return _top(
        headers(peer.address, subject),
        multipart("mixed", [body, file_part], "mix-boundary"),
    )


def mixed_up(peer, provider_cert: bytes, subject: str, text: str) -> bytes:
    """The multipart/mixed that Exchange and Outlook make of a PGP/MIME message."""
    ciphertext = peer.encrypt(text_entity(text), provider_cert)
    empty = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    control = (
        b'Content-Type: application/pgp-encrypted; name="PGPMIME version identification"\r\n'
        b"Content-Transfer-Encoding: 7bit\r\n\r\nVersion: 1\r\n"
    )
    data = (
        b'Content-Type: application/octet-stream; name="encrypted.asc"\r\n'
        b'Content-Disposition: attachment; filename="encrypted.asc"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(ciphertext).replace(b"\n", b"\r\n")
    )
    return _top(
        headers(peer.address, subject),
        multipart("mixed", [empty, control, data], "exch-boundary"),
    )


def plain(sender: str, subject: str, text: str, *extra: tuple[str, str]) -> bytes:
    return _top(headers(sender, subject, *extra), text_entity(text))
