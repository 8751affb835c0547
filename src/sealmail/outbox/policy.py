"""The send policy: how one message leaves, decided when the worker composes it.

- A contact with an active, usable key gets mail encrypted to that key and
  signed, in the contact's mode (PGP/MIME or inline).
- A contact who turned encryption on but whose key is no longer usable
  (expired, revoked, removed) gets nothing: the message is held until a new
  key is confirmed. Only content-free categories (the notice asking for a
  new key) go out unencrypted to such a contact.
- A contact without a key gets plain mail, or signed-only mail when
  ``SEALMAIL_SIGN_PLAIN`` is on.
- A message with an explicit ``recipient_key`` is always encrypted to that key
  and fails if the key is unusable.
- A message without a ``recipient_key`` to an explicit address that is no
  longer (or not yet) the contact's goes out like mail to a contact without
  a key. The contact's key belongs to its current address, and the portal
  passes the previous key whenever the previous address had one.
"""

from __future__ import annotations

import enum
import functools
import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pysequoia

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.errors import KeyRejected
from sealmail.core.mime.message import Format
from sealmail.core.pgp.inspect import check_certificate as _check
from sealmail.core.pgp.ops import (
    RecipientCert,
    RecipientCheck,
    cached_recipient_check,
    remember_recipient_checks,
)
from sealmail.outbox.models import CONTENT_FREE_CATEGORIES, OutboxMessage

logger = logging.getLogger(__name__)

ENCRYPTED_FORMATS = frozenset({Format.PGPMIME, Format.INLINE})


class Action(enum.Enum):
    SEND = "send"
    HOLD = "hold"
    FAIL = "fail"


@dataclass(frozen=True)
class Decision:
    action: Action
    format: Format | None = None
    certificate: RecipientCert | None = None
    key: ContactKey | None = None
    reason: str = ""


@functools.lru_cache(maxsize=4096)
def certificate_problem(data: bytes, minute: int) -> str:
    """Return why the certificate ``data`` is unusable, or "" if it is usable.

    The check runs as of the end of ``minute`` (minutes since the epoch), so
    a key that expires within that minute already counts as expired, and the
    result is cached per certificate and minute.
    """
    now = datetime.fromtimestamp(minute * 60 + 59, UTC)
    try:
        _check(data, now=now)
    except KeyRejected as exc:
        return exc.reason
    return ""


class KeyChecker:
    """Check contact keys at send time, once per key for the lifetime of a batch.

    :meth:`check` tests the stored expiry and parses the certificate. The
    full check (revocation, a live encryption subkey, algorithm policy) runs
    in the encryption layer for every message, which raises EncryptionError
    for an unusable key. :meth:`problem` then repeats that check to learn
    the reason, so a usable key is inspected once per message, not twice.
    """

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._results: dict[int, tuple[str, RecipientCert | None]] = {}
        self._keys: dict[int, ContactKey] = {}

    def check(self, key: ContactKey) -> tuple[str, RecipientCert | None]:
        """Return ``("", cert)`` for a usable key, else ``(reason, None)``."""
        cached = self._results.get(key.pk)
        if cached is not None:
            return cached
        # The encryption layer's stored check spares it inspecting the
        # certificate again. It applies only while it is valid and only to
        # the exact certificate bytes it was made for.
        if key.send_check:
            remember_recipient_checks([RecipientCheck.from_json(key.send_check)])
        result = self._check(key)
        self._results[key.pk] = result
        self._keys[key.pk] = key
        return result

    def changed_checks(self) -> list[ContactKey]:
        """Return the checked keys whose stored check is missing or out of date.

        Each returned key's ``send_check`` is set to the encryption layer's
        latest check, ready to be saved.
        """
        changed = []
        for key in self._keys.values():
            check = cached_recipient_check(bytes(key.certificate))
            if check is None:
                continue
            stored = check.to_json()
            if stored != key.send_check:
                key.send_check = stored
                changed.append(key)
        return changed

    def problem(self, key: ContactKey) -> str:
        """Return why ``key`` is unusable by the full certificate check, or ""."""
        minute = int(self.now.timestamp()) // 60
        return certificate_problem(bytes(key.certificate), minute)

    def _check(self, key: ContactKey) -> tuple[str, RecipientCert | None]:
        if key.usable_until is not None and key.usable_until <= self.now:
            return "expired", None
        data = bytes(key.certificate)
        try:
            certificate = pysequoia.Cert.from_bytes(data)
        except Exception as exc:  # noqa: BLE001 - pysequoia raises plain Exception
            logger.warning("stored key %d cannot be parsed: %s", key.pk, exc)
            return "malformed", None
        return "", RecipientCert(certificate, data)


def encrypted_format(contact: Contact | None) -> Format:
    if contact is not None and contact.mode == Contact.Mode.INLINE:
        return Format.INLINE
    return Format.PGPMIME


def same_address(first: str, second: str) -> bool:
    return first.strip().lower() == second.strip().lower()


def requires_encryption(message: OutboxMessage, contact: Contact | None) -> bool:
    """Return whether ``message`` must never leave unencrypted."""
    if message.recipient_key_id is not None:
        return True
    if message.category in CONTENT_FREE_CATEGORIES:
        return False
    if (
        contact is not None
        and message.explicit_address
        and not same_address(message.to_address, contact.address)
    ):
        return False
    return contact is not None and contact.encryption_on


def decide(
    message: OutboxMessage,
    contact: Contact | None,
    keys: KeyChecker,
    *,
    sign_plain: bool,
) -> Decision:
    """Decide how ``message`` leaves, from the contact's current database state."""
    if message.recipient_key_id is not None:
        key = message.recipient_key
        assert key is not None
        reason, certificate = keys.check(key)
        if reason:
            return Decision(Action.FAIL, reason=f"key_{reason}", key=key)
        return Decision(
            Action.SEND, encrypted_format(contact), certificate=certificate, key=key
        )
    if contact is None:
        return Decision(Action.FAIL, reason="contact_deleted")
    plain_format = Format.SIGNED if sign_plain else Format.PLAIN
    if message.category in CONTENT_FREE_CATEGORIES:
        return Decision(Action.SEND, plain_format)
    if message.explicit_address and not same_address(message.to_address, contact.address):
        return Decision(Action.SEND, plain_format)
    if not contact.encryption_on:
        return Decision(Action.SEND, plain_format)
    key = contact.active_key
    if key is None:
        return Decision(Action.HOLD, reason="no_active_key")
    reason, certificate = keys.check(key)
    if reason:
        return Decision(Action.HOLD, reason=reason, key=key)
    if contact.encryption == Contact.Encryption.KEY_PROBLEM:
        # The key checks out again (for example, its expiry was extended), but
        # only the portal turns encryption back on after the customer confirms.
        return Decision(Action.HOLD, reason=key.problem or "key_problem", key=key)
    return Decision(
        Action.SEND, encrypted_format(contact), certificate=certificate, key=key
    )
