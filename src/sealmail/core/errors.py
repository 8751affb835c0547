"""Exceptions raised by the sealmail core.

Every error the core raises derives from :class:`SealmailError`; errors
from pysequoia and the ``email`` package are wrapped at the boundary with
``raise ... from exc`` so callers never see a bare ``Exception``::

    SealmailError
     +-- KeyRejected            a customer key failed intake (has .reason)
     +-- KeyStoreError          provider key directory missing or unreadable
     +-- EncryptionError        encrypting to a recipient failed
     +-- SigningError           signing with a provider key failed
     +-- DecryptionError        an inbound message could not be decrypted
     +-- VerificationError      a signature could not be checked at all
     +-- CompositionError       a message could not be composed
"""

from __future__ import annotations


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


class EncryptionError(SealmailError):
    """Encrypting a message to a recipient certificate failed."""


class SigningError(SealmailError):
    """Signing with a provider key failed."""


class DecryptionError(SealmailError):
    """An inbound message could not be decrypted."""


class VerificationError(SealmailError):
    """A signature could not be checked at all (as opposed to a bad one)."""


class CompositionError(SealmailError):
    """A message could not be composed into MIME."""
