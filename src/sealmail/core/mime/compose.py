"""Compose a logical message into the exact bytes that go on the wire.

Formats (see :class:`Format`):

* PGPMIME: RFC 3156 ``multipart/encrypted`` holding the whole inner MIME
  entity, signed and encrypted in one pass. The inner entity carries the
  real header fields (RFC 9788 header protection, ``hp="cipher"``) and the
  outer Subject is ``...`` when ``hide_subject`` is set.
* INLINE: an armored ``text/plain`` message; each attachment is encrypted
  on its own as ``NAME.pgp``.
* SIGNED: RFC 3156 ``multipart/signed`` over an entity serialized once and
  spliced in unchanged, with ``micalg`` taken from the signature.
* PLAIN: ordinary 7-bit MIME.

Every message gets a Message-ID, a Date and, when a provider certificate is
known, an Autocrypt header. No path falls back to plaintext: a failure to
encrypt raises EncryptionError.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from email.headerregistry import Address

import pysequoia

from sealmail.core.errors import CompositionError, EncryptionError, SigningError
from sealmail.core.mime import body as mime_body
from sealmail.core.mime import headers as h
from sealmail.core.mime import wire
from sealmail.core.mime.autocrypt import autocrypt_header
from sealmail.core.mime.message import (
    Attachment,
    ComposedMessage,
    Format,
    OutgoingMessage,
)
from sealmail.core.pgp.ops import (
    ProviderSigner,
    Recipient,
    encrypt_and_sign,
    sign_detached,
)

logger = logging.getLogger(__name__)

# The outer Subject of a message whose real Subject travels encrypted, as
# Thunderbird's OpenPGP mail writes it; the examples in RFC 9788 use "[...]".
HIDDEN_SUBJECT = "..."

# Fields the composer writes itself; extra headers may not set them.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "From",
        "To",
        "Cc",
        "Bcc",
        "Subject",
        "Date",
        "Message-ID",
        "In-Reply-To",
        "References",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Content-Disposition",
        "Autocrypt",
        "HP-Outer",
    )
)
# Header fields of the INLINE text part, which contains the armored message.
_INLINE_TEXT_HEADER = (
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: 7bit\r\n\r\n"
)
# Hashes RFC 3156 signers must not use any more.
_WEAK_MICALGS = frozenset({"pgp-md5", "pgp-sha1", "pgp-ripemd160"})


@dataclass(frozen=True)
class _Field:
    """One top-level header field: its name, its value as given and its wire bytes."""

    name: str
    value: str
    wire: bytes


def compose(
    message: OutgoingMessage,
    format: Format,
    *,
    recipients: Sequence[Recipient] = (),
    signer: ProviderSigner | None = None,
    autocrypt_certificate: pysequoia.Cert | None = None,
    hide_subject: bool = True,
) -> ComposedMessage:
    """Return ``message`` as wire bytes in ``format``.

    ``recipients`` (``pysequoia.Cert`` or, cheaper,
    :class:`~sealmail.core.pgp.ops.RecipientCert`) are required for
    PGPMIME and INLINE, ``signer`` for SIGNED. ``autocrypt_certificate``
    defaults to the signer's certificate.
    ``hide_subject`` replaces the outer Subject with ``...`` in the
    encrypted formats. Raises CompositionError for invalid input,
    EncryptionError and SigningError when OpenPGP fails; never falls back
    to plaintext.
    """
    if not isinstance(format, Format):
        raise CompositionError(
            f"unknown format {format!r}; use one of "
            + ", ".join(item.value for item in Format)
        )
    if format in (Format.PGPMIME, Format.INLINE) and not recipients:
        raise EncryptionError(
            f"format {format.value} needs at least one recipient certificate; "
            "none was given, so the message was not composed"
        )
    if format is Format.SIGNED and signer is None:
        raise SigningError(
            "format signed needs the provider signing key; none was given"
        )

    sender = h.parse_mailbox(message.sender, "sender")
    fields = _header_fields(message, sender)
    message_id = next(f.value for f in fields if f.name == "Message-ID")
    certificate = autocrypt_certificate or (signer.certificate if signer else None)
    autocrypt = autocrypt_header(sender.addr_spec, certificate) if certificate else b""

    if format is Format.PGPMIME:
        data = _compose_pgpmime(
            message, fields, autocrypt, recipients, signer, hide_subject
        )
    elif format is Format.INLINE:
        data = _compose_inline(
            message, fields, autocrypt, recipients, signer, hide_subject
        )
    elif format is Format.SIGNED:
        assert signer is not None
        data = _compose_signed(message, fields, autocrypt, signer)
    else:
        data = _compose_plain(message, fields, autocrypt)

    logger.debug(
        "composed %s message %s, %d bytes", format.value, message_id, len(data)
    )
    encrypted = format in (Format.PGPMIME, Format.INLINE)
    return ComposedMessage(
        data=data,
        message_id=message_id,
        format=format,
        encrypted_to=tuple(cert.fingerprint for cert in recipients)
        if encrypted
        else (),
        signed_by=signer.fingerprint if signer and format is not Format.PLAIN else None,
    )


def _header_fields(message: OutgoingMessage, sender: Address) -> list[_Field]:
    to = h.parse_mailbox(message.to, "to")
    message_id = (
        h.normalize_message_id(message.message_id)
        if message.message_id
        else h.make_message_id(sender.domain)
    )
    date = h.format_date(message.date)
    fields = [
        _Field("From", message.sender, h.format_mailboxes("From", [sender])),
        _Field("To", message.to, h.format_mailboxes("To", [to])),
        _Field(
            "Subject",
            message.subject,
            h.format_unstructured("Subject", message.subject),
        ),
        _Field("Date", date, h.format_raw("Date", date)),
        _Field("Message-ID", message_id, h.format_raw("Message-ID", message_id)),
    ]
    if message.in_reply_to:
        value = h.normalize_message_id(message.in_reply_to, "In-Reply-To")
        fields.append(_Field("In-Reply-To", value, h.format_raw("In-Reply-To", value)))
    if message.references:
        wire_bytes = h.format_message_ids("References", message.references)
        value = " ".join(
            h.normalize_message_id(v, "References") for v in message.references
        )
        fields.append(_Field("References", value, wire_bytes))
    for name, value in message.headers:
        if name.lower() in _RESERVED_HEADERS:
            raise CompositionError(
                f"extra header {name!r} is set by the composer; remove it from headers"
            )
        fields.append(_Field(name, value, h.format_header(name, value)))
    return fields


def _outer_fields(fields: list[_Field], hide_subject: bool) -> list[_Field]:
    if not hide_subject:
        return fields
    hidden = _Field("Subject", HIDDEN_SUBJECT, h.format_raw("Subject", HIDDEN_SUBJECT))
    return [hidden if f.name == "Subject" else f for f in fields]


def _compose_pgpmime(
    message: OutgoingMessage,
    fields: list[_Field],
    autocrypt: bytes,
    recipients: Sequence[Recipient],
    signer: ProviderSigner | None,
    hide_subject: bool,
) -> bytes:
    outer = _outer_fields(fields, hide_subject)
    legacy_display = [
        (inner.name, inner.value)
        for inner, outer_field in zip(fields, outer, strict=True)
        if inner.value != outer_field.value
    ]
    # RFC 9788: HP-Outer records each outer field as it appears on the wire.
    hp_outer = b"".join(h.prefix_field("HP-Outer", f.wire) for f in outer)
    inner = mime_body.render_entity(
        b"".join(f.wire for f in fields) + hp_outer,
        message,
        hp="cipher",
        legacy_display=legacy_display,
    )
    armored = encrypt_and_sign(inner, recipients, signer, armor=True)
    return wire.multipart_encrypted(
        b"".join(f.wire for f in outer) + autocrypt, armored
    )


def _compose_signed(
    message: OutgoingMessage,
    fields: list[_Field],
    autocrypt: bytes,
    signer: ProviderSigner,
) -> bytes:
    header_block = b"".join(f.wire for f in fields)
    signed_entity = mime_body.render_entity(header_block, message, hp="clear")
    signature = sign_detached(signed_entity, signer)
    if signature.micalg in _WEAK_MICALGS:
        raise SigningError(
            f"signing key {signer.fingerprint} produced a {signature.hash_algorithm} "
            "signature, which clients reject; use a key whose signatures use SHA-256 "
            "or stronger"
        )
    return wire.multipart_signed(
        header_block + autocrypt, signed_entity, signature.armored, signature.micalg
    )


def _compose_inline(
    message: OutgoingMessage,
    fields: list[_Field],
    autocrypt: bytes,
    recipients: Sequence[Recipient],
    signer: ProviderSigner | None,
    hide_subject: bool,
) -> bytes:
    outer = _outer_fields(fields, hide_subject)
    for attachment in message.attachments:
        # Checked although the parts go out as application/octet-stream.
        mime_body.check_filename(attachment.filename)
        mime_body.split_content_type(attachment.content_type, attachment.filename)
    text, _html = mime_body.message_text(message)
    if hide_subject:
        # Nothing but the file names may leave in clear, so the real Subject
        # opens the encrypted text the way a legacy display element does.
        text = f"Subject: {message.subject}\n\n{text}"
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    try:
        plaintext = "\r\n".join(lines).encode("utf-8")
    except UnicodeError as exc:
        raise CompositionError(f"the text body cannot be encoded: {exc}") from exc
    armored = encrypt_and_sign(plaintext, recipients, signer, armor=True)
    header_block = b"".join(f.wire for f in outer) + autocrypt
    if not message.attachments:
        return b"".join(
            (
                header_block,
                b"MIME-Version: 1.0\r\n",
                _INLINE_TEXT_HEADER,
                wire.crlf(armored),
            )
        )

    parts = [[_INLINE_TEXT_HEADER, wire.crlf(armored)]]
    for attachment in message.attachments:
        encrypted = encrypt_and_sign(attachment.data, recipients, signer, armor=False)
        sealed = Attachment(
            attachment.filename + ".pgp", "application/octet-stream", encrypted
        )
        parts.append(mime_body.attachment_part(sealed))
    return mime_body.mixed_entity(
        header_block + b"MIME-Version: 1.0\r\n", wire.make_boundary(), parts
    )


def _compose_plain(
    message: OutgoingMessage, fields: list[_Field], autocrypt: bytes
) -> bytes:
    header_block = b"".join(f.wire for f in fields) + autocrypt
    return mime_body.render_entity(header_block + b"MIME-Version: 1.0\r\n", message)
