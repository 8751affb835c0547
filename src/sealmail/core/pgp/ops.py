"""Encrypt, sign, decrypt and verify with pysequoia.

These are the only functions the rest of sealmail calls to produce or read
OpenPGP data; they wrap every pysequoia error in a
:mod:`sealmail.core.errors` exception.

Certificates for signature checks come from a ``certificates_for``
callable: it receives a list of lowercase hex key IDs or fingerprints (the
issuers named in the signatures) and returns the ``pysequoia.Cert`` objects
it finds for them, or an empty list.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

import pysequoia

from sealmail.core.errors import (
    DecryptionError,
    EncryptionError,
    KeyStoreError,
    SigningError,
    VerificationError,
)
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.packets import PacketError, SignatureInfo

logger = logging.getLogger(__name__)

CertificateLookup = Callable[[list[str]], list[pysequoia.Cert]]
MAX_INLINE_SIZE = 64 * 1024 * 1024

# Signature statuses; "unchecked" means pysequoia 0.1.35 could not check the
# signature at all (signed data inside a compressed encrypted message).
GOOD = "good"
BAD = "bad"
UNKNOWN_KEY = "unknown_key"
EXPIRED_KEY = "expired_key"
REVOKED_KEY = "revoked_key"
UNCHECKED = "unchecked"


def _first_line(exc: BaseException) -> str:
    """Return the message of a pysequoia error without its Rust backtrace."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclass(frozen=True)
class ProviderSigner:
    """A provider secret key unlocked for signing."""

    fingerprint: str
    signer: pysequoia.PySigner
    certificate: pysequoia.Cert

    @classmethod
    def from_tsk(cls, tsk: pysequoia.Tsk, password: str | None = None) -> ProviderSigner:
        certificate = tsk.extract_certificate()
        try:
            signer = tsk.signer(password)
        except Exception as exc:  # pysequoia raises plain Exception
            raise SigningError(
                f"cannot unlock the signing key {certificate.fingerprint}: "
                f"{_first_line(exc)}; check the passphrase and that the key has a "
                "valid, unexpired signing key"
            ) from None
        return cls(certificate.fingerprint, signer, certificate)


@dataclass(frozen=True)
class DetachedSignature:
    """An armored detached signature and the hash algorithm it really used."""

    armored: bytes
    hash_algorithm: str

    @property
    def micalg(self) -> str:
        """The ``micalg`` parameter of ``multipart/signed`` (RFC 3156)."""
        return "pgp-" + self.hash_algorithm.lower()


@dataclass(frozen=True)
class SignatureResult:
    """The outcome of checking one signature.

    ``status`` is one of ``good``, ``bad``, ``unknown_key``, ``expired_key``,
    ``revoked_key`` or ``unchecked``. ``unchecked`` means that no check was
    possible (a compressed encrypted message to a key that
    :mod:`sealmail.core.pgp.inner` cannot open), so treat it as not verified.
    """

    status: str
    signer_fingerprint: str | None  # primary key fingerprint, lowercase hex, when known
    key_id: str | None  # issuer key ID or fingerprint named by the signature
    hash_algorithm: str | None
    created: datetime | None

    @property
    def good(self) -> bool:
        return self.status == GOOD


@dataclass(frozen=True)
class DecryptResult:
    """A decrypted message; only integrity-protected messages are ever returned."""

    plaintext: bytes
    integrity_protected: bool
    signatures: list[SignatureResult]
    decrypted_with: str  # primary fingerprint of the provider or role key that worked
    recipient_key_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class DecryptionKey:
    """One secret encryption key that :func:`decrypt` may try."""

    fingerprint: str  # primary key fingerprint
    key_id: str | None  # the encryption subkey's key ID, to try matching keys first
    decryptor: pysequoia.PyDecryptor
    # The binary secret key, to read signatures inside compressed messages.
    secret: bytes | None = field(default=None, repr=False)
    # The passphrase that unlocks ``secret`` when it is protected.
    passphrase: str | None = field(default=None, repr=False)


class DecryptionKeySource(Protocol):
    """Anything that lists decryption keys, such as :class:`~sealmail.core.pgp.keystore.KeyStore`."""

    def decryption_keys(self) -> list[DecryptionKey]: ...


DecryptionKeys = DecryptionKeySource | Iterable[
    DecryptionKey | pysequoia.Tsk | tuple[str, pysequoia.PyDecryptor]
]


# --- encryption -----------------------------------------------------------


# A recipient check is valid for at most this long, so that policy changes
# that depend on the date are noticed within a day.
CHECK_HORIZON = timedelta(days=1)
_CHECK_CACHE_SIZE = 20_000


@dataclass(frozen=True)
class RecipientCheck:
    """The encryption layer's verdict on one recipient certificate.

    The check is made for one moment and is valid until ``valid_until``,
    the first time after that moment at which a key or signature of the
    certificate is created or expires (at most :data:`CHECK_HORIZON` later).
    ``digest`` is the SHA-256 of the certificate bytes it describes, so a
    stored check is never applied to another certificate.
    """

    digest: str
    fingerprint: str
    version: int
    live_key_ids: frozenset[str]
    all_key_ids: frozenset[str]
    seipd_v2: bool
    problem: str | None
    checked_at: datetime
    valid_until: datetime

    def is_valid_at(self, now: datetime) -> bool:
        return self.checked_at <= now < self.valid_until

    def to_json(self) -> dict:
        return {
            "digest": self.digest,
            "fingerprint": self.fingerprint,
            "version": self.version,
            "live_key_ids": sorted(self.live_key_ids),
            "all_key_ids": sorted(self.all_key_ids),
            "seipd_v2": self.seipd_v2,
            "problem": self.problem,
            "checked_at": self.checked_at.isoformat(),
            "valid_until": self.valid_until.isoformat(),
        }

    @classmethod
    def from_json(cls, data: object) -> RecipientCheck | None:
        """Return the check stored as ``data``, or None when it is not a valid stored check."""
        try:
            assert isinstance(data, dict)
            check = cls(
                str(data["digest"]),
                str(data["fingerprint"]),
                int(data["version"]),
                frozenset(str(id) for id in data["live_key_ids"]),
                frozenset(str(id) for id in data["all_key_ids"]),
                bool(data["seipd_v2"]),
                None if data["problem"] is None else str(data["problem"]),
                datetime.fromisoformat(data["checked_at"]),
                datetime.fromisoformat(data["valid_until"]),
            )
        except (AssertionError, KeyError, TypeError, ValueError):
            return None
        if check.checked_at.tzinfo is None or check.valid_until.tzinfo is None:
            return None
        if check.valid_until - check.checked_at > CHECK_HORIZON:
            return None  # never made by recipient_check(), so not trusted
        return check


@dataclass(frozen=True)
class RecipientCert:
    """A recipient certificate with the bytes it was parsed from.

    :func:`encrypt_and_sign` takes a plain ``pysequoia.Cert`` too, but then
    serializes it again to find its check, which costs as much as the
    encryption of a short message.
    """

    cert: pysequoia.Cert
    data: bytes

    @property
    def fingerprint(self) -> str:
        return self.cert.fingerprint


Recipient = pysequoia.Cert | RecipientCert


_checks: collections.OrderedDict[str, RecipientCheck] = collections.OrderedDict()
_checks_lock = threading.Lock()


def certificate_digest(cert_bytes: bytes) -> str:
    return hashlib.sha256(cert_bytes).hexdigest()


def remember_recipient_checks(checks: Iterable[RecipientCheck | None]) -> None:
    """Add stored checks to this process's cache, e.g. those a database kept."""
    with _checks_lock:
        for check in checks:
            if check is not None:
                _checks[check.digest] = check
        while len(_checks) > _CHECK_CACHE_SIZE:
            _checks.popitem(last=False)


def cached_recipient_check(cert_bytes: bytes) -> RecipientCheck | None:
    """Return the last check of ``cert_bytes`` this process made or was given, if any."""
    with _checks_lock:
        return _checks.get(certificate_digest(cert_bytes))


def recipient_check(cert_bytes: bytes, now: datetime | None = None) -> RecipientCheck:
    """Return the check of ``cert_bytes`` that is valid at ``now``, from the cache or made now.

    ``cert_bytes`` is a binary or armored certificate. Raises :class:`PacketError` when the certificate cannot be read.
    """
    now = now or datetime.now(timezone.utc)
    digest = certificate_digest(cert_bytes)
    with _checks_lock:
        cached = _checks.get(digest)
    if cached is not None and cached.is_valid_at(now):
        return cached
    check = _make_recipient_check(cert_bytes, digest, now)
    remember_recipient_checks([check])
    return check


def _make_recipient_check(cert_bytes: bytes, digest: str, now: datetime) -> RecipientCheck:
    from sealmail.core.errors import KeyRejected
    from sealmail.core.pgp.inspect import inspect_key

    packets = pk.read_packets(pk.dearmor(cert_bytes).data)
    keys = [pk.parse_key(packet) for packet in packets if packet.tag in pk.KEY_TAGS]
    if not keys:
        raise PacketError("the certificate has no key packet")
    signatures = [
        pk.parse_signature(packet) for packet in packets if packet.tag == pk.TAG_SIGNATURE
    ]
    seipd_v2 = keys[0].version == 6 or any(
        signature.features is not None and signature.features & pk.FEATURE_SEIPD_V2
        for signature in signatures
    )
    # Every moment at which the verdict may change: a key or signature is
    # created or expires. Key expiry is counted from every key's creation,
    # which can only add moments and so only shortens how long a check is valid.
    moments = [key.created for key in keys]
    for signature in signatures:
        moments.extend(moment for moment in (signature.created, signature.expiration) if moment)
        if signature.key_validity is not None:
            moments.extend(key.created + signature.key_validity for key in keys)
    valid_until = min([moment for moment in moments if moment > now] + [now + CHECK_HORIZON])
    live: frozenset[str] = frozenset()
    problem = None
    try:
        report = inspect_key(cert_bytes, now=now)
    except KeyRejected as exc:
        problem = f"{exc.reason}: {exc.message}"
    else:
        live = frozenset(sub.key_id for sub in report.encryption_subkeys if sub.usable)
    return RecipientCheck(
        digest,
        keys[0].fingerprint,
        keys[0].version,
        live,
        frozenset(key.key_id for key in keys),
        seipd_v2,
        problem,
        now,
        valid_until,
    )


@functools.lru_cache(maxsize=1)
def _seipd_v1_anchor() -> pysequoia.Cert:
    """Return a throwaway v4 certificate whose features list only SEIPDv1.

    Sequoia picks SEIPDv2 when every recipient advertises it. Adding this
    recipient makes it pick SEIPDv1. Its secret key is discarded at once, so
    the extra session key packet opens nothing.
    """
    from sealmail.core.pgp.generate import generate_provider_key

    tsk = pysequoia.Tsk.from_bytes(generate_provider_key(["sealmail SEIPDv1 compatibility"]))
    return tsk.extract_certificate()


def encrypt_and_sign(
    plaintext: bytes,
    recipients: Sequence[Recipient],
    signer: ProviderSigner | None,
    *,
    armor: bool = True,
) -> bytes:
    """Encrypt ``plaintext`` to every recipient and sign it in one pass.

    Raises :class:`EncryptionError` when a recipient has no live, valid
    encryption subkey (pysequoia 0.1.35 would fall back to an expired one).
    The message uses SEIPDv1 whenever a recipient is a v4 key, and SEIPDv2
    only when all recipients are v6 keys or advertise SEIPDv2 and none is v4.
    """
    if not recipients:
        raise EncryptionError("no recipient certificate given; pass at least one certificate")
    now = datetime.now(timezone.utc)
    facts = []
    targets = []
    for recipient in recipients:
        cert = recipient.cert if isinstance(recipient, RecipientCert) else recipient
        targets.append(cert)
        try:
            data = recipient.data if isinstance(recipient, RecipientCert) else bytes(cert)
            fact = recipient_check(data, now)
        except (PacketError, Exception) as exc:  # pysequoia raises plain Exception
            raise EncryptionError(
                f"cannot read the recipient certificate {getattr(cert, 'fingerprint', '?')}: "
                f"{_first_line(exc)}"
            ) from None
        if fact.problem or not fact.live_key_ids:
            raise EncryptionError(
                f"the certificate {fact.fingerprint} has no live encryption subkey "
                f"({fact.problem or 'none found'}); ask the customer for a new key"
            )
        facts.append(fact)

    any_v4 = any(fact.version == 4 for fact in facts)
    if any_v4 and all(fact.seipd_v2 for fact in facts):
        targets.append(_seipd_v1_anchor())
    try:
        message = pysequoia.encrypt(
            plaintext,
            targets,
            signer=signer.signer if signer else None,
            armor=armor,
        )
    except Exception as exc:  # pysequoia raises plain Exception
        fingerprints = ", ".join(fact.fingerprint for fact in facts)
        raise EncryptionError(f"encryption to {fingerprints} failed: {_first_line(exc)}") from None
    _check_output(message, facts, any_v4)
    return message


def _check_output(message: bytes, facts: list[RecipientCheck], any_v4: bool) -> None:
    """Raise unless every recipient got a session key only for its live subkeys."""
    try:
        outline = pk.outline_message(message)
    except PacketError as exc:
        raise EncryptionError(f"pysequoia produced an unreadable message: {exc}") from None
    used = {recipient.key_id for recipient in outline.recipients}
    for fact in facts:
        mine = used & fact.all_key_ids
        if not mine or not mine <= fact.live_key_ids:
            raise EncryptionError(
                f"the message for {fact.fingerprint} would be encrypted to keys "
                f"{sorted(mine)}, not only to its live encryption subkeys "
                f"{sorted(fact.live_key_ids)}; not sending it"
            )
    if any_v4 and not (outline.encrypted_tag == pk.TAG_SEIPD and outline.encrypted_version == 1):
        raise EncryptionError(
            "pysequoia chose SEIPDv2 for a v4 recipient, which GnuPG 2.2 cannot read"
        )


def sign_detached(data: bytes, signer: ProviderSigner) -> DetachedSignature:
    """Return an armored detached signature over exactly ``data``.

    Raises :class:`SigningError` when signing fails or the hash is weaker
    than SHA-256.
    """
    try:
        armored = pysequoia.sign(signer.signer, data, mode=pysequoia.SignatureMode.DETACHED)
        packet = pk.read_packets(pk.dearmor(armored).data)[0]
        info = pk.parse_signature(packet)
    except (PacketError, Exception) as exc:  # pysequoia raises plain Exception
        raise SigningError(
            f"detached signature with key {signer.fingerprint} failed: {_first_line(exc)}"
        ) from None
    if info.weak_hash or info.hash_id == 11:
        raise SigningError(
            f"the signing key {signer.fingerprint} produced a {info.hash_algorithm} "
            "signature; use an Ed25519 or RSA key of at least 2048 bits"
        )
    return DetachedSignature(armored, info.hash_algorithm)


# --- decryption -----------------------------------------------------------


def _keys_from(keys: DecryptionKeys) -> list[DecryptionKey]:
    if hasattr(keys, "decryption_keys"):
        return list(keys.decryption_keys())  # type: ignore[union-attr]
    result = []
    for item in keys:  # type: ignore[union-attr]
        if isinstance(item, DecryptionKey):
            result.append(item)
        elif isinstance(item, pysequoia.Tsk):
            result.extend(decryption_keys_of(item))
        else:
            fingerprint, decryptor = item
            result.append(DecryptionKey(fingerprint, None, decryptor))
    return result


def decryption_keys_of(tsk: pysequoia.Tsk, password: str | None = None) -> list[DecryptionKey]:
    """Return one :class:`DecryptionKey` per secret encryption subkey of ``tsk``.

    pysequoia's ``Tsk.decryptor()`` uses only the first live encryption
    subkey, so each subkey gets its own key built from the packets.
    A subkey that cannot be unlocked (wrong passphrase, expired) is logged
    and skipped. Raises :class:`KeyStoreError` when the packets cannot be read.
    """
    from sealmail.core.pgp.inspect import encryption_secret_variants

    keys = []
    fingerprint = tsk.extract_certificate().fingerprint
    try:
        variants = encryption_secret_variants(bytes(tsk))
    except PacketError as exc:
        raise KeyStoreError(f"the secret key {fingerprint} could not be read: {exc}") from None
    for key_id, variant in variants:
        try:
            decryptor = pysequoia.Tsk.from_bytes(variant).decryptor(password)
        except Exception as exc:  # pysequoia raises plain Exception
            logger.warning(
                "decryption subkey %s of key %s is not usable: %s",
                key_id,
                fingerprint,
                _first_line(exc),
            )
            continue
        keys.append(DecryptionKey(fingerprint, key_id, decryptor, variant, password))
    return keys


def decrypt(
    data: bytes,
    keys: DecryptionKeys,
    *,
    certificates_for: CertificateLookup,
    max_plaintext: int | None = None,
) -> DecryptResult:
    """Decrypt an OpenPGP message with the first of ``keys`` that fits and check its signatures.

    ``keys`` is a :class:`~sealmail.core.pgp.keystore.KeyStore` (every
    provider and role key, rotated ones included), or an iterable of
    :class:`DecryptionKey`, ``pysequoia.Tsk`` or ``(fingerprint, PyDecryptor)``.
    Keys whose subkey ID matches a recipient are tried first, then all
    others, which also covers hidden recipients.

    With ``max_plaintext``, a message whose compressed content would expand
    beyond that many bytes raises ``too_large`` before pysequoia, which
    expands everything in memory, decrypts it. SEIPDv1 messages to a
    Cv25519 key are measured in this process (:mod:`sealmail.core.pgp.inner`),
    all others in a child process with limited memory (:func:`_bounded_size`).
    Only keys given without their secret key bytes, as
    ``(fingerprint, PyDecryptor)``, are measured after decryption.

    Raises :class:`DecryptionError` with ``reason`` ``no_key``,
    ``no_integrity`` (no MDC and no AEAD: the plaintext is never produced),
    ``tampered``, ``too_large``, ``multiple_messages`` (``data`` contains
    more than one message) or ``malformed``.
    """
    try:
        dearmored = pk.dearmor(data, verify_checksum=False)
        data = dearmored.data
        outline = pk.outline_message(data)
    except PacketError as exc:
        raise DecryptionError(
            "malformed", f"the message is not valid OpenPGP data: {exc}"
        ) from None
    recipient_ids = [recipient.key_id for recipient in outline.recipients if recipient.key_id]
    armored_messages = dearmored.labels.count("MESSAGE")
    if armored_messages > 1:
        raise _multiple_messages(armored_messages, recipient_ids)
    if outline.encrypted_tag is None:
        raise DecryptionError(
            "malformed",
            "the data contains no encrypted OpenPGP message; check that the whole "
            "message was passed",
            recipient_ids,
        )
    if not outline.integrity_protected:
        raise DecryptionError(
            "no_integrity",
            "the message is encrypted without integrity protection (no MDC), so it could "
            "have been modified; it was not decrypted. Ask the sender to use a current "
            "OpenPGP program",
            recipient_ids,
        )
    candidates = _keys_from(keys)
    candidates.sort(key=lambda key: 0 if key.key_id in recipient_ids else 1)
    hidden = any(recipient.key_id is None for recipient in outline.recipients)
    # Keys that a session key packet names but that did not decrypt it.
    named_unopened = []
    for key in candidates:
        if key.key_id is not None and recipient_ids and not hidden and key.key_id not in recipient_ids:
            continue
        if max_plaintext is not None and key.secret is not None:
            _check_expansion(data, key, max_plaintext, recipient_ids)
        # One pass decrypts and checks the signatures. pysequoia raises when
        # no signature is valid, also for unsigned messages. Then a second
        # pass without signature checks gives the plaintext or the error.
        lookup = _Lookup(certificates_for)
        try:
            checked = pysequoia.decrypt(data, key.decryptor, store=lookup)
        except Exception as exc:  # pysequoia raises plain Exception
            opened = _decrypt_unchecked(
                data, outline, key, lookup, _first_line(exc), recipient_ids, certificates_for
            )
            if opened is None:
                if key.key_id in recipient_ids:
                    named_unopened.append(key.key_id)
                continue
            plaintext, signatures = opened
        else:
            plaintext = checked.bytes or b""
            signatures = _issuer_results(lookup, checked.valid_sigs, structure_error=False)
            # NOTE: pysequoia returns only the valid signatures. A failing
            # one beside them is listed only when sealmail.core.pgp.inner can
            # open the message (Cv25519 and SEIPDv1). With RSA keys or
            # SEIPDv2 it is missing from the result.
            every = _every_signature(
                data, plaintext, key, len(checked.valid_sigs), certificates_for
            )
            signatures = every if every is not None else signatures
        logger.info(
            "decrypted a message with key %s (%d signatures)", key.fingerprint, len(signatures)
        )
        return DecryptResult(plaintext, True, signatures, key.fingerprint, recipient_ids)
    if named_unopened:
        # A session key packet addressed to one of sealmail's keys must
        # decrypt with that key. pysequoia 0.1.35 reports "No key to decrypt" also
        # when the cipher octet of a SEIPDv2 packet was changed, because the
        # session key then has the wrong length for the cipher.
        raise DecryptionError(
            "tampered",
            f"the session key packet for key {named_unopened[0].upper()} does not decrypt "
            "with that key although sealmail has its secret key, so the message was modified or "
            "damaged after encryption; it was discarded",
            recipient_ids,
        )
    raise DecryptionError(
        "no_key",
        "no provider or role key can decrypt this message; it is encrypted to key IDs "
        f"{', '.join(id.upper() for id in recipient_ids) or '(hidden)'}",
        recipient_ids,
    )


def _check_expansion(
    data: bytes, key: DecryptionKey, limit: int, recipient_ids: list[str]
) -> None:
    """Raise ``too_large`` or ``tampered`` before pysequoia expands the message in memory."""
    from sealmail.core.pgp.inner import Tampered, expanded_size

    assert key.secret is not None
    try:
        size = expanded_size(data, key.secret, limit, key.passphrase)
    except Tampered as exc:
        raise DecryptionError(
            "tampered", f"the message was modified after encryption ({exc}), so it was discarded",
            recipient_ids,
        ) from None
    if size is None:
        size = _bounded_size(data, key.secret, key.passphrase, limit)
    if size is not None and size > limit:
        raise DecryptionError(
            "too_large",
            f"the message expands to more than {limit} bytes when decompressed; "
            "it was not decrypted further. Ask the sender to attach large files "
            "another way",
            recipient_ids,
        )


# Decrypts a message in a process whose address space allows the limit and
# little more. Standard input contains the passphrase (UTF-8, empty for
# none), the secret key and the message, with the first two lengths in argv.
_BOUNDED_DECRYPT = """
import resource, sys
space = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (space, space))
import pysequoia
data = sys.stdin.buffer.read()
passphrase_end = int(sys.argv[2])
secret_end = passphrase_end + int(sys.argv[3])
passphrase = data[:passphrase_end].decode() or None
try:
    tsk = pysequoia.Tsk.from_bytes(data[passphrase_end:secret_end])
    decryptor = tsk.decryptor(passphrase)
    plaintext = pysequoia.decrypt(data[secret_end:], decryptor).bytes or b""
except MemoryError:
    sys.exit(3)
except Exception:
    sys.exit(2)
print(len(plaintext))
"""
# Room for the interpreter and pysequoia, which need under 30 MB, and for
# the ciphertext and the plaintext side by side.
_BOUNDED_BASE = 256 * 1024 * 1024


def _bounded_size(
    data: bytes, secret: bytes, passphrase: str | None, limit: int
) -> int | None:
    """Measure the plaintext of a message that :mod:`~sealmail.core.pgp.inner` cannot open.

    SEIPDv2, ciphers other than AES, v6 session key packets, keys other
    than Cv25519 and passphrase-protected keys are decrypted in a child
    process whose address space is limited, so that a compression bomb ends
    that process instead of the worker. The passphrase goes to the child
    on standard input, never in its arguments. Returns ``limit + 1`` when
    the child runs out of memory, and None when it cannot decrypt the
    message (pysequoia then reports why).
    """
    space = _BOUNDED_BASE + 2 * limit + 2 * len(data)
    unlock = (passphrase or "").encode()
    try:
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                _BOUNDED_DECRYPT,
                str(space),
                str(len(unlock)),
                str(len(secret)),
            ],
            input=unlock + secret + data,
            capture_output=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        logger.warning("measuring an encrypted message timed out after 120 s")
        return limit + 1
    if child.returncode == 0:
        return int(child.stdout)
    if child.returncode == 2:
        return None
    logger.warning(
        "measuring an encrypted message ended with status %d, so it counts as too large",
        child.returncode,
    )
    return limit + 1


def _decrypt_unchecked(
    data: bytes,
    outline: pk.MessageOutline,
    key: DecryptionKey,
    lookup: _Lookup,
    error: str,
    recipient_ids: list[str],
    certificates_for: CertificateLookup,
) -> tuple[bytes, list[SignatureResult]] | None:
    """Decrypt without a signature check after the checked pass raised ``error``.

    Returns the plaintext and why each signature failed, or None when
    ``key`` does not fit. Raises :class:`DecryptionError` when the key fits
    but the message cannot be opened.
    """
    if "No key to decrypt" in error:
        return None
    try:
        result = pysequoia.decrypt(data, key.decryptor)
    except Exception as exc:  # pysequoia raises plain Exception
        message = _first_line(exc)
        if "No key to decrypt" in message:
            return None
        fallback = _decrypt_unsupported_compression(data, message, key, certificates_for)
        if fallback is not None:
            return fallback
        raise _decryption_failure(message, data, outline, recipient_ids) from None
    plaintext = result.bytes or b""
    return plaintext, _failed_signatures(data, plaintext, key, lookup, error, certificates_for)


def _decrypt_unsupported_compression(
    data: bytes, message: str, key: DecryptionKey, certificates_for: CertificateLookup
) -> tuple[bytes, list[SignatureResult]] | None:
    """Open a BZip2-compressed message, which the pysequoia 0.1.35 wheel cannot decompress.

    Only for Cv25519 keys and SEIPDv1, whose MDC
    :mod:`sealmail.core.pgp.inner` checks before anything is returned.
    """
    from sealmail.core.pgp.inner import inner_message

    if "Malformed Message" not in message or key.secret is None:
        return None
    inner = inner_message(data, key.secret, key.passphrase)
    if inner is None:
        return None
    signatures = _check_each(inner.literal, inner.signatures, certificates_for)
    logger.info("decrypted a message pysequoia could not decompress, with key %s", key.fingerprint)
    return inner.literal, signatures


def _multiple_messages(count: int, recipient_ids: list[str]) -> DecryptionError:
    return DecryptionError(
        "multiple_messages",
        f"the data contains {count} OpenPGP messages, but one part may contain only one; "
        "it was not decrypted. Ask the sender to send each message in a part of its own",
        recipient_ids,
    )


def _decryption_failure(
    message: str, data: bytes, outline: pk.MessageOutline, recipient_ids: list[str]
) -> DecryptionError:
    """Return the error for pysequoia's ``message`` about ``data``, which a provider key fits."""
    # pysequoia reports data after the first message as a manipulated message.
    count = pk.count_encrypted_messages(data)
    if count > 1:
        return _multiple_messages(count, recipient_ids)
    lowered = message.lower()
    tampered = any(
        word in lowered for word in ("manipulated", "mdc", "authentication", "aead::error")
    )
    # pysequoia 0.1.35 reports "Missing session key" when a session key
    # packet decrypted but its session key does not open the encrypted data.
    # SEIPDv2 checks the first chunk's authentication tag for that, and an
    # unknown cipher or AEAD mode has an error of its own, so there it means
    # that the data was modified. With SEIPDv1 an unsupported cipher such as
    # Blowfish gives the same error.
    if "missing session key" in lowered and outline.encrypted_version == 2:
        tampered = True
    if tampered:
        return DecryptionError(
            "tampered",
            f"the message was modified after encryption ({message}); it was discarded",
            recipient_ids,
        )
    if "not considered secure" in lowered or "symmetrically encrypted data packet" in lowered:
        return DecryptionError(
            "no_integrity",
            f"the message uses an encryption that is no longer accepted ({message})",
            recipient_ids,
        )
    return DecryptionError(
        "malformed", f"the message could not be decrypted: {message}", recipient_ids
    )


class _Lookup:
    """A wrapper around ``certificates_for`` that records which issuers pysequoia requested."""

    def __init__(self, certificates_for: CertificateLookup) -> None:
        self.certificates_for = certificates_for
        self.requested: list[str] = []
        self.returned: list[pysequoia.Cert] = []

    def __call__(self, ids: list[str]) -> list[pysequoia.Cert]:
        self.requested.extend(str(id).lower() for id in ids)
        certs = list(self.certificates_for([str(id).lower() for id in ids]))
        self.returned.extend(certs)
        return certs


def _failed_signatures(
    data: bytes,
    plaintext: bytes,
    key: DecryptionKey,
    lookup: _Lookup,
    error: str,
    certificates_for: CertificateLookup,
) -> list[SignatureResult]:
    """Explain each signature of a message whose signature check raised ``error``.

    Where the key allows, each signature packet is checked on its own over
    the literal data. pysequoia checks only one-pass signatures during
    decryption, so a valid signature placed before the data (the older
    form) would otherwise count as bad, and a second signature by the same
    key would not be listed.
    """
    if not lookup.requested:
        return []
    structure_error = "Unexpected message structure" in error
    if key.secret is not None:
        checked = _signatures_in_compressed(data, plaintext, key, certificates_for)
        if checked is not None:
            return checked
    return _issuer_results(lookup, [], structure_error)


def _issuer_results(
    lookup: _Lookup, valid: Sequence, structure_error: bool
) -> list[SignatureResult]:
    """Return one result per issuer that pysequoia requested from ``lookup``."""
    results = []
    for issuer in dict.fromkeys(lookup.requested):
        match = next((sig for sig in valid if _names(issuer, sig.signing_key, sig.certificate)), None)
        if match is not None:
            results.append(SignatureResult(GOOD, match.certificate, issuer, None, None))
        elif structure_error:
            results.append(
                SignatureResult(UNCHECKED, _owner(issuer, lookup.returned), issuer, None, None)
            )
        else:
            results.append(_classify_failure(issuer, lookup.returned, None))
    return results


def _signatures_in_compressed(
    data: bytes, plaintext: bytes, key: DecryptionKey, certificates_for: CertificateLookup
) -> list[SignatureResult] | None:
    """Return the result of each signature packet in a message, or None when it cannot be opened.

    Works for compressed and uncompressed messages alike.
    """
    from sealmail.core.pgp.inner import inner_message

    if key.secret is None:
        return None
    inner = inner_message(data, key.secret, key.passphrase)
    if inner is None or inner.literal != plaintext or not inner.signatures:
        return None
    return _check_each(inner.literal, inner.signatures, certificates_for)


def _every_signature(
    data: bytes,
    plaintext: bytes,
    key: DecryptionKey,
    valid: int,
    certificates_for: CertificateLookup,
) -> list[SignatureResult] | None:
    """Check each signature packet of a message in which pysequoia found ``valid`` valid ones.

    pysequoia returns only the valid signatures, so a second signature by
    the same key that fails would not be listed and the message would read
    as verified. Returns one result per signature packet when the message
    contains more than ``valid`` of them, and None when it does not or when
    :mod:`sealmail.core.pgp.inner` cannot open it.
    """
    from sealmail.core.pgp.inner import inner_message

    if key.secret is None:
        return None
    inner = inner_message(data, key.secret, key.passphrase)
    if inner is None or inner.literal != plaintext or len(inner.signatures) <= valid:
        return None
    return _check_each(inner.literal, inner.signatures, certificates_for)


def _check_each(
    literal: bytes, signatures: list[pk.RawPacket], certificates_for: CertificateLookup
) -> list[SignatureResult]:
    """Verify each signature packet over ``literal``, one result per packet.

    A packet too damaged to name its issuer is ``bad`` with no signer.
    """
    results = []
    for packet in signatures:
        try:
            results.extend(
                verify_detached(literal, packet.serialize(), certificates_for=certificates_for)
            )
        except VerificationError:
            results.append(SignatureResult(BAD, None, None, None, None))
    return results


def _names(issuer: str, signing_key: str, certificate: str) -> bool:
    issuer = issuer.lower()
    for value in (signing_key.lower(), certificate.lower()):
        if issuer == value or value.endswith(issuer) or value.startswith(issuer):
            return True
    return False


def _owner(issuer: str, certs: list[pysequoia.Cert]) -> str | None:
    for cert in certs:
        try:
            for packet in pk.read_packets(bytes(cert)):
                if packet.tag in pk.KEY_TAGS:
                    info = pk.parse_key(packet)
                    if issuer in (info.fingerprint, info.key_id):
                        return cert.fingerprint
        except PacketError:
            continue
    return None


def _classify_failure(
    issuer: str, certs: list[pysequoia.Cert], info: SignatureInfo | None
) -> SignatureResult:
    """Explain why pysequoia did not accept a signature by ``issuer``."""
    from sealmail.core.pgp.inspect import signing_key_state

    hash_algorithm = info.hash_algorithm if info else None
    created = info.created if info else None
    owner = _owner(issuer, certs)
    if owner is None:
        return SignatureResult(UNKNOWN_KEY, None, issuer, hash_algorithm, created)
    cert = next(cert for cert in certs if cert.fingerprint == owner)
    state = signing_key_state(bytes(cert), issuer, at=created)
    status = {"revoked": REVOKED_KEY, "expired": EXPIRED_KEY}.get(state, BAD)
    return SignatureResult(status, owner, issuer, hash_algorithm, created)


# --- verification ---------------------------------------------------------


def _signature_packets(signature: bytes) -> list[pk.RawPacket]:
    try:
        packets = pk.read_packets(pk.dearmor(signature).data)
    except PacketError as exc:
        raise VerificationError(f"the signature is not valid OpenPGP data: {exc}") from None
    result = [packet for packet in packets if packet.tag == pk.TAG_SIGNATURE]
    if not result:
        raise VerificationError("the signature data contains no signature packet")
    return result


def _issuer(info: SignatureInfo) -> str | None:
    return info.issuer_fingerprint or info.issuer_key_id


def verify_detached(
    data: bytes, signature: bytes, *, certificates_for: CertificateLookup
) -> list[SignatureResult]:
    """Check each signature in ``signature`` (armored or binary) over exactly ``data``.

    Raises :class:`VerificationError` when ``signature`` is not a signature.
    """
    results = []
    for packet in _signature_packets(signature):
        try:
            info = pk.parse_signature(packet)
        except PacketError as exc:
            raise VerificationError(f"a signature packet is damaged: {exc}") from None
        issuer = _issuer(info)
        lookup = _Lookup(certificates_for)
        try:
            sig = pysequoia.Sig.from_bytes(packet.serialize())
            valid = pysequoia.verify(bytes=data, store=lookup, signature=sig).valid_sigs
        except Exception:  # pysequoia raises plain Exception for every failed check
            valid = []
        if valid:
            signer = valid[0].certificate
            results.append(
                SignatureResult(GOOD, signer, issuer, info.hash_algorithm, info.created)
            )
        elif issuer is None:
            results.append(SignatureResult(UNKNOWN_KEY, None, None, info.hash_algorithm, info.created))
        else:
            if not lookup.requested:
                lookup([issuer])
            results.append(_classify_failure(issuer, lookup.returned, info))
    return results


def verify_inline(
    data: bytes, *, certificates_for: CertificateLookup
) -> tuple[bytes, list[SignatureResult]]:
    """Return the content of a signed (not encrypted) OpenPGP message and its signatures.

    Accepts a binary or armored signed message, compressed or not, and a
    cleartext-signed text. Raises :class:`VerificationError` when ``data``
    is neither.
    """
    if b"-----BEGIN PGP SIGNED MESSAGE-----" in data:
        return _verify_cleartext(data, certificates_for)
    try:
        packets = pk.read_packets(pk.dearmor(data).data)
        while packets and packets[0].tag in (pk.TAG_COMPRESSED, pk.TAG_MARKER):
            if packets[0].tag == pk.TAG_MARKER:
                packets = packets[1:]
                continue
            packets = pk.read_packets(pk.decompress(packets[0], max_size=MAX_INLINE_SIZE))
    except PacketError as exc:
        raise VerificationError(f"the signed message is not valid OpenPGP data: {exc}") from None
    literal = next((packet for packet in packets if packet.tag == pk.TAG_LITERAL), None)
    signatures = [packet for packet in packets if packet.tag == pk.TAG_SIGNATURE]
    if literal is None:
        raise VerificationError("the signed message contains no literal data packet")
    content = _literal_content(literal)
    if not signatures:
        return content, []
    results = []
    for packet in signatures:
        results.extend(
            verify_detached(content, packet.serialize(), certificates_for=certificates_for)
        )
    return content, results


def _literal_content(packet: pk.RawPacket) -> bytes:
    body = packet.body
    if len(body) < 6:
        raise VerificationError("a literal data packet is truncated")
    name_length = body[1]
    return body[2 + name_length + 4 :]


def _verify_cleartext(
    data: bytes, certificates_for: CertificateLookup
) -> tuple[bytes, list[SignatureResult]]:
    text, signature = _split_cleartext(data)
    signed = data[: len(data) - len(signature)]
    content = None
    results = []
    for packet in _signature_packets(signature):
        try:
            info = pk.parse_signature(packet)
        except PacketError as exc:
            raise VerificationError(f"a signature packet is damaged: {exc}") from None
        issuer = _issuer(info)
        # Each signature is checked in a cleartext message of its own, because
        # pysequoia returns only the valid ones, so a failing signature beside
        # a valid one by the same key would otherwise be taken for that one.
        armored = pysequoia.armor(packet.serialize(), pysequoia.ArmorKind.Signature)
        single = signed + armored.encode()
        lookup = _Lookup(certificates_for)
        try:
            checked = pysequoia.verify(bytes=single, store=lookup)
            valid = checked.valid_sigs
        except Exception:  # pysequoia raises plain Exception for every failed check
            valid = []
        if valid:
            content = content or checked.bytes
            signer = valid[0].certificate
            results.append(
                SignatureResult(GOOD, signer, issuer, info.hash_algorithm, info.created)
            )
        elif issuer is None:
            results.append(SignatureResult(UNKNOWN_KEY, None, None, info.hash_algorithm, info.created))
        else:
            certs = list(certificates_for([issuer]))
            results.append(_classify_failure(issuer, certs, info))
    return content or text, results


_SIGNATURE_BEGIN = re.compile(rb"(?m)^-----BEGIN PGP SIGNATURE-----")


def _split_cleartext(data: bytes) -> tuple[bytes, bytes]:
    """Split a cleartext-signed text into its dash-unescaped text and signature block."""
    start = data.index(b"-----BEGIN PGP SIGNED MESSAGE-----")
    rest = data[start:].split(b"\n", 1)[1] if b"\n" in data[start:] else b""
    # The armor headers (Hash: ...) end at the first empty line.
    _, _, rest = rest.partition(b"\n\n") if b"\n\n" in rest else rest.partition(b"\r\n\r\n")
    # The marker counts only at the start of a line, because the text may
    # quote one dash-escaped.
    found = _SIGNATURE_BEGIN.search(rest)
    if found is None:
        raise VerificationError("the cleartext-signed text has no signature block")
    marker = found.start()
    lines = rest[:marker].split(b"\n")
    unescaped = [line[2:] if line.startswith(b"- ") else line for line in lines]
    text = b"\n".join(unescaped)
    if text.endswith(b"\n"):
        text = text[:-1]
    return text, rest[marker:]
