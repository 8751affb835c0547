"""The inbound parser's result: parts, their security status and defects.

Every leaf part of the received message becomes one :class:`Part`, carrying
its own encryption and signature status, so a viewer never has to guess which
bytes were protected. Decrypted content stays in its own part: nothing here
joins the text of several parts together.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


class Encryption(enum.StrEnum):
    """The encryption state of one part as received."""

    NONE = "none"  # sent in the clear
    DECRYPTED = "decrypted"  # was encrypted and sealmail decrypted it
    FAILED = "failed"  # was encrypted and could not be decrypted


class SignatureStatus(enum.StrEnum):
    """The outcome of checking one signature."""

    GOOD = "good"
    BAD = "bad"
    UNKNOWN_KEY = "unknown_key"
    EXPIRED_KEY = "expired_key"
    REVOKED_KEY = "revoked_key"
    # pysequoia 0.1.35 cannot check a signature inside a compressed encrypted
    # message; such a signature counts as not verified.
    UNCHECKED = "unchecked"
    ERROR = "error"  # the signature could not be checked at all


class Scope(enum.StrEnum):
    """The extent of the bytes a signature covers."""

    MESSAGE = "message"  # the whole message body, or the whole decrypted message
    PART = "part"  # only some parts of the message


class MessageEncryption(enum.StrEnum):
    """The encryption summary of a whole message."""

    NONE = "none"
    FULL = "full"
    PARTIAL = "partial"  # some parts were encrypted, others were not


@dataclass(frozen=True)
class Signature:
    """One signature and what it covers."""

    status: SignatureStatus
    scope: Scope
    signer_fingerprint: str | None = None  # primary key, lowercase hex
    key_id: str | None = None
    hash_algorithm: str | None = None
    created: datetime | None = None
    kind: str = ""  # "pgp-mime", "combined", "inline" or "detached-attachment"
    detail: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "status": str(self.status),
            "scope": str(self.scope),
            "signer_fingerprint": self.signer_fingerprint,
            "key_id": self.key_id,
            "hash_algorithm": self.hash_algorithm,
            "created": self.created.isoformat() if self.created else None,
            "kind": self.kind,
            "detail": self.detail,
        }


def contradicted_signers(signatures: Iterable[tuple[str, str | None]]) -> frozenset[str]:
    """Return the signer fingerprints that have a good signature and one that is not good.

    ``signatures`` are (status, signer fingerprint) pairs of the signatures
    over one content. Content that a key signed once validly and once not
    counts as verified by neither signature, whatever the order.
    """
    good, other = set(), set()
    for status, fingerprint in signatures:
        if not fingerprint:
            continue
        if status == SignatureStatus.GOOD:
            good.add(fingerprint.lower())
        else:
            other.add(fingerprint.lower())
    return frozenset(good & other)


@dataclass
class DecryptionFailure:
    """The reason an encrypted part stayed encrypted, with its recipient key IDs."""

    # "no_key", "no_integrity", "tampered", "malformed", "too_large" or
    # "multiple_messages"
    reason: str
    message: str
    recipient_key_ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "reason": self.reason,
            "message": self.message,
            "recipient_key_ids": list(self.recipient_key_ids),
        }


@dataclass
class Part:
    """One leaf of the message as a reader sees it."""

    path: str  # "1.2.1": position in the MIME tree, "0" for a single-part body
    content_type: str
    content: bytes
    filename: str | None = None
    charset: str | None = None
    text: str | None = None  # decoded text for text/* parts
    is_attachment: bool = False
    encryption: Encryption = Encryption.NONE
    failure: DecryptionFailure | None = None
    signatures: list[Signature] = field(default_factory=list)
    original_filename: str | None = None  # the name before ".pgp" was removed
    kind: str = ""  # "pgp-mime", "inline", "attachment" for encrypted parts
    defects: list[str] = field(default_factory=list)

    @property
    def encrypted(self) -> bool:
        return self.encryption is not Encryption.NONE


@dataclass
class ParsedMessage:
    """The outcome of parsing one raw message."""

    parts: list[Part]
    subject: str = ""
    sender: str = ""  # the From header, the inner one when headers are protected
    to: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    outer_subject: str = ""
    outer_sender: str = ""
    protected_headers: bool = False  # Subject/From came from inside the encryption
    repaired_mixed_up: bool = False  # Exchange/Outlook multipart/mixed repaired
    defects: list[str] = field(default_factory=list)

    @property
    def encryption(self) -> MessageEncryption:
        relevant = [
            part for part in self.parts if part.content.strip() or part.encrypted
        ]
        encrypted = [part for part in relevant if part.encrypted]
        if not encrypted:
            return MessageEncryption.NONE
        if len(encrypted) == len(relevant):
            return MessageEncryption.FULL
        return MessageEncryption.PARTIAL

    @property
    def failures(self) -> list[DecryptionFailure]:
        return [part.failure for part in self.parts if part.failure is not None]

    def whole_message_signatures(self) -> list[Signature]:
        """Return the signatures that cover every part, deduplicated."""
        if not self.parts:
            return []
        common = [
            signature
            for signature in self.parts[0].signatures
            if signature.scope is Scope.MESSAGE
            and all(signature in part.signatures for part in self.parts)
        ]
        return list(dict.fromkeys(common))
