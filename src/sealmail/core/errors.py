"""Exceptions raised by the sealmail core.

Every error the core raises derives from :class:`SealmailError`; errors
from pysequoia and the ``email`` package are wrapped at the boundary with
``raise ... from exc`` so callers never see a bare ``Exception``::

    SealmailError
     +-- KeyRejected            a customer key failed intake (has .reason)
     +-- KeyStoreError          provider key directory missing or unreadable
     |    +-- KeyImportError    a key offered for import cannot be used
     +-- EncryptionError        encrypting to a recipient failed
     +-- SigningError           signing with a provider key failed
     +-- DecryptionError        an inbound message could not be decrypted (has .reason)
     +-- VerificationError      a signature could not be checked at all
     +-- CompositionError       a message could not be composed
"""

from __future__ import annotations

from collections.abc import Sequence


class SealmailError(Exception):
    """Base class of every error raised by the sealmail core."""


class KeyRejected(SealmailError):
    """A key offered by a customer cannot be used.

    ``reason`` is a stable code (``malformed``, ``secret_key``,
    ``multiple_keys``, ``revoked``, ``expired``, ``no_encryption_key``,
    ``weak_algorithm``, ``too_large``, ``not_yet_valid``) and the message is a
    sentence the customer can act on.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KeyStoreError(SealmailError):
    """The provider key directory is missing, unreadable or inconsistent."""


class KeyImportError(KeyStoreError):
    """A provider or role key offered for import cannot be used."""


class EncryptionError(SealmailError):
    """Encrypting a message to a recipient certificate failed."""


class SigningError(SealmailError):
    """Signing with a provider key failed."""


class DecryptionError(SealmailError):
    """An inbound message could not be decrypted.

    ``reason`` is a stable code: ``no_key`` (no provider or role key fits),
    ``no_integrity`` (no MDC or AEAD, so the plaintext was discarded),
    ``tampered`` (the integrity check failed), ``too_large`` (the content
    is larger than allowed, often a compression bomb), ``multiple_messages``
    (several OpenPGP messages concatenated where one is expected) or
    ``malformed``.
    ``recipient_key_ids`` lists the hex key IDs the message was encrypted
    to; it is empty when the recipients are hidden.
    """

    REASONS = (
        "no_key",
        "no_integrity",
        "tampered",
        "too_large",
        "multiple_messages",
        "malformed",
    )

    def __init__(
        self,
        reason: str,
        message: str = "",
        recipient_key_ids: Sequence[str] = (),
    ) -> None:
        if reason not in self.REASONS and not message:
            # Called with only a message, as before reason codes existed.
            reason, message = "malformed", reason
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.recipient_key_ids = list(recipient_key_ids)


class VerificationError(SealmailError):
    """A signature could not be checked at all (as opposed to a bad one)."""


class CompositionError(SealmailError):
    """A message could not be composed into MIME."""
