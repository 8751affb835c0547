"""The OpenPGP operations the inbound parser needs, behind one small interface.

The parser never calls pysequoia itself: it calls an :class:`OpenPGP`
object, so tests can count calls and the real work stays in
:mod:`sealmail.core.pgp.ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sealmail.core.errors import DecryptionError
from sealmail.core.pgp import ops

# pysequoia.Cert objects for the given signer key ids or fingerprints.
CertificateLookup = Callable[[list[str]], list[Any]]


@dataclass(frozen=True)
class CheckedSignature:
    """One signature as the OpenPGP layer checked it."""

    status: (
        str  # "good", "bad", "unknown_key", "expired_key", "revoked_key", "unchecked"
    )
    signer_fingerprint: str | None = None
    key_id: str | None = None
    hash_algorithm: str | None = None
    created: datetime | None = None


@dataclass(frozen=True)
class Decrypted:
    """Plaintext with the signatures found inside the encryption."""

    plaintext: bytes
    signatures: list[CheckedSignature] = field(default_factory=list)
    decrypted_with: str = ""


@dataclass(frozen=True)
class Failure:
    """A decryption that did not produce plaintext."""

    reason: str
    message: str
    recipient_key_ids: tuple[str, ...] = ()


class OpenPGP(Protocol):
    def decrypt(self, data: bytes, max_plaintext: int | None = None) -> Decrypted:
        """Decrypt ``data`` or raise :class:`DecryptionError` with a ``reason``.

        ``max_plaintext`` lowers the size limit for this call, to what is
        left of the limit for the whole message.
        """
        ...

    def verify_detached(
        self, data: bytes, signature: bytes
    ) -> list[CheckedSignature]: ...

    def verify_inline(self, data: bytes) -> tuple[bytes, list[CheckedSignature]]: ...


def describe_failure(exc: DecryptionError) -> Failure:
    """Turn a :class:`DecryptionError` into a reason code, a sentence and key ids."""
    reason = str(getattr(exc, "reason", "") or "malformed")
    key_ids = tuple(
        str(key_id) for key_id in getattr(exc, "recipient_key_ids", ()) or ()
    )
    messages = {
        "no_key": "encrypted to a key sealmail does not hold",
        "no_integrity": (
            "no integrity protection (no MDC or AEAD); the plaintext was "
            "discarded because it could have been modified in transit"
        ),
        "tampered": "the ciphertext was modified after encryption; nothing was shown",
        "malformed": "the encrypted data is not valid OpenPGP",
        "too_large": "the decrypted data exceeds the size limit",
        "multiple_messages": (
            "more than one OpenPGP message in one part, so none was decrypted; "
            "the raw message still contains them"
        ),
    }
    message = messages.get(reason, str(exc))
    if reason == "no_key" and key_ids:
        message += ": recipient key IDs " + ", ".join(key_ids)
    return Failure(reason, message, key_ids)


class SequoiaOpenPGP:
    """The provider's keys and the customers' certificates, through pysequoia."""

    def __init__(
        self,
        keys: Any,
        certificates_for: CertificateLookup,
        *,
        max_plaintext_bytes: int,
    ) -> None:
        self.keys = keys
        self.certificates_for = certificates_for
        self.max_plaintext_bytes = max_plaintext_bytes

    def decrypt(self, data: bytes, max_plaintext: int | None = None) -> Decrypted:
        limit = self.max_plaintext_bytes
        if max_plaintext is not None:
            limit = min(limit, max_plaintext)
        result = ops.decrypt(
            data, self.keys, certificates_for=self.certificates_for, max_plaintext=limit
        )
        # ops.decrypt checks the size before decrypting when it can; this
        # catches the messages it cannot measure beforehand.
        if len(result.plaintext) > limit:
            raise DecryptionError(
                "too_large",
                f"the decrypted data has {len(result.plaintext)} bytes, more than "
                f"the {limit} bytes left of the limit for one message",
            )
        return Decrypted(
            plaintext=result.plaintext,
            signatures=[_checked(signature) for signature in result.signatures],
            decrypted_with=result.decrypted_with,
        )

    def verify_detached(self, data: bytes, signature: bytes) -> list[CheckedSignature]:
        results = ops.verify_detached(
            data, signature, certificates_for=self.certificates_for
        )
        return [_checked(result) for result in results]

    def verify_inline(self, data: bytes) -> tuple[bytes, list[CheckedSignature]]:
        content, results = ops.verify_inline(
            data, certificates_for=self.certificates_for
        )
        return content, [_checked(result) for result in results]


def _checked(result: Any) -> CheckedSignature:
    hash_algorithm = getattr(result, "hash_algorithm", None)
    return CheckedSignature(
        status=str(result.status),
        signer_fingerprint=result.signer_fingerprint,
        key_id=getattr(result, "key_id", None),
        hash_algorithm=str(hash_algorithm) if hash_algorithm is not None else None,
        created=getattr(result, "created", None),
    )
