"""The logical message the composer turns into wire bytes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class Format(enum.Enum):
    """How a message leaves: the contact's encryption decides which one."""

    PGPMIME = "pgpmime"  # RFC 3156 multipart/encrypted, signed and encrypted
    INLINE = "inline"  # armored text part, attachments encrypted as NAME.pgp
    SIGNED = "signed"  # RFC 3156 multipart/signed, for contacts without a key
    PLAIN = "plain"


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutgoingMessage:
    """One message before composition; ``sender`` and ``to`` may carry display names."""

    sender: str
    to: str
    subject: str
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    message_id: str | None = None
    date: datetime | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=())


@dataclass(frozen=True)
class ComposedMessage:
    """The exact bytes to send (CRLF line endings) and what went into them."""

    data: bytes
    message_id: str
    format: Format
    encrypted_to: tuple[str, ...] = ()  # recipient primary fingerprints
    signed_by: str | None = None  # provider signing key fingerprint
