"""Key intake: inspect a public key a customer pasted or uploaded.

:func:`inspect_key` returns a :class:`KeyReport` for a certificate that
sealmail can encrypt to now, or raises :class:`KeyRejected` with a stable
reason code and a sentence the customer can act on.

Sequoia (through pysequoia) verifies every self-signature: a subkey counts
as usable only when pysequoia's own recipient selection accepts it. The
time-dependent parts (expiry, creation in the future) and the reasons for a
rejection come from reading the packets with :mod:`sealmail.core.pgp.packets`.
pysequoia 0.1.35 exposes neither subkey expiry nor key sizes, and its
``encrypt()`` falls back to an expired encryption subkey.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import pysequoia

from sealmail.core.errors import KeyRejected
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.packets import KeyInfo, PacketError, RawPacket, SignatureInfo

logger = logging.getLogger(__name__)

MAX_INPUT_BYTES = 1024 * 1024
# Each subkey is checked against the whole certificate, so the work grows with
# user IDs times subkeys; real keys stay far below both limits.
MAX_USER_IDS = 100
MAX_SUBKEYS = 50
MIN_RSA_BITS = 2048
RECOMMENDED_RSA_BITS = 3072
EXPIRY_WARNING = timedelta(days=30)
EXPORT_HINT = "export it with `gpg --armor --export YOUR-ADDRESS` and paste the output"


@dataclass(frozen=True)
class SubkeyReport:
    """An encryption-capable key of a certificate and its state at inspection time."""

    fingerprint: str
    key_id: str
    algorithm: str  # GnuPG notation: cv25519, rsa3072, x25519, ...
    key_size: int | None
    created: datetime
    expires: datetime | None
    revoked: bool
    usable: bool
    problem: str | None = None  # why the key is not usable, as a sentence


@dataclass(frozen=True)
class KeyReport:
    """The result of intake for a usable certificate."""

    fingerprint: str
    version: int
    algorithm: str
    user_ids: list[str]
    created: datetime
    expires: datetime | None
    usable_until: datetime | None
    certificate: bytes  # binary, third-party certifications stripped
    warnings: list[str] = field(default_factory=list)
    key_size: int | None = None
    encryption_subkeys: list[SubkeyReport] = field(default_factory=list)
    removed_certifications: int = 0

    @property
    def fingerprint_groups(self) -> str:
        """The fingerprint in upper-case groups of four, as the portal shows it."""
        upper = self.fingerprint.upper()
        return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))

    @property
    def usable(self) -> bool:
        """Always true: :func:`inspect_key` raises for a key that is not usable now."""
        return True

    def as_dict(self) -> dict[str, object]:
        """Return the report as JSON-ready values (ISO 8601 times), without the certificate."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        return {
            "usable": True,
            "fingerprint": self.fingerprint,
            "version": self.version,
            "algorithm": self.algorithm,
            "key_size": self.key_size,
            "user_ids": list(self.user_ids),
            "created": iso(self.created),
            "expires": iso(self.expires),
            "usable_until": iso(self.usable_until),
            "encryption_subkeys": [
                {
                    "fingerprint": sub.fingerprint,
                    "algorithm": sub.algorithm,
                    "key_size": sub.key_size,
                    "created": iso(sub.created),
                    "expires": iso(sub.expires),
                    "revoked": sub.revoked,
                    "usable": sub.usable,
                    "problem": sub.problem,
                }
                for sub in self.encryption_subkeys
            ],
            "removed_certifications": self.removed_certifications,
            "warnings": list(self.warnings),
        }


@dataclass
class _Component:
    packet: RawPacket
    key: KeyInfo | None = None  # for the primary key and subkeys
    signatures: list[tuple[RawPacket, SignatureInfo]] = field(default_factory=list)


@dataclass
class _ParsedCert:
    primary: _Component
    user_ids: list[_Component] = field(default_factory=list)
    subkeys: list[_Component] = field(default_factory=list)
    removed_certifications: int = 0
    removed_user_attributes: int = 0

    def packets(self, subkeys: list[_Component] | None = None) -> list[RawPacket]:
        result = [self.primary.packet] + [raw for raw, _ in self.primary.signatures]
        for component in self.user_ids:
            result.append(component.packet)
            result.extend(raw for raw, _ in component.signatures)
        for component in self.subkeys if subkeys is None else subkeys:
            result.append(component.packet)
            result.extend(raw for raw, _ in component.signatures)
        return result

    def serialize(self, subkeys: list[_Component] | None = None) -> bytes:
        return b"".join(packet.serialize() for packet in self.packets(subkeys))


def inspect_key(data: bytes | str, *, now: datetime | None = None) -> KeyReport:
    """Return a report on the single public certificate in ``data`` or raise :class:`KeyRejected`.

    ``data`` is ASCII armor or binary. ``now`` (timezone-aware) is the time the
    verdict applies to; it defaults to the current time.
    """
    now = now or datetime.now(timezone.utc)
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_INPUT_BYTES:
        raise KeyRejected(
            "too_large",
            f"The key is larger than the limit of {MAX_INPUT_BYTES // 1024} KB. "
            f"Paste only your public key: {EXPORT_HINT}, without photos or other keys.",
        )
    if not raw.strip():
        raise KeyRejected("malformed", f"The key is empty. To get your public key, {EXPORT_HINT}.")
    packets = _read(raw)
    parsed = _split(packets)
    _check_component_counts(parsed)
    return _evaluate(parsed, now)


def _check_component_counts(parsed: _ParsedCert) -> None:
    if len(parsed.user_ids) > MAX_USER_IDS:
        raise KeyRejected(
            "too_large",
            f"The key has {len(parsed.user_ids)} user IDs, more than the limit of "
            f"{MAX_USER_IDS}. Revoke or delete the ones you no longer use, or export "
            "only the user ID of this address with `gpg --armor --export-options "
            "export-minimal --export-filter keep-uid=mbox=YOUR-ADDRESS --export "
            "YOUR-ADDRESS`.",
        )
    if len(parsed.subkeys) > MAX_SUBKEYS:
        raise KeyRejected(
            "too_large",
            f"The key has {len(parsed.subkeys)} subkeys, more than the limit of "
            f"{MAX_SUBKEYS}. Delete expired and unused subkeys (gpg --edit-key, "
            "then key N and delkey) and export the key again.",
        )


def check_certificate(cert_bytes: bytes, *, now: datetime | None = None) -> KeyReport:
    """Re-check a stored certificate with the intake rules, e.g. at send time.

    Raises :class:`KeyRejected` with the same reason codes as :func:`inspect_key`.
    """
    return inspect_key(cert_bytes, now=now)


def _read(raw: bytes) -> list[RawPacket]:
    try:
        dearmored = pk.dearmor(raw)
    except PacketError as exc:
        raise KeyRejected(
            "malformed", f"This is not a valid OpenPGP public key: {exc}. {_retry_hint()}"
        ) from exc
    if any("PRIVATE KEY" in label for label in dearmored.labels):
        raise _secret_key_rejection()
    if not dearmored.labels and not dearmored.data[0] & 0x80:
        raise KeyRejected(
            "malformed",
            "The input is neither an ASCII-armored key (a block starting with "
            f"-----BEGIN PGP PUBLIC KEY BLOCK-----) nor a binary OpenPGP key. {_retry_hint()}",
        )
    try:
        packets = pk.read_packets(dearmored.data)
    except PacketError as exc:
        raise KeyRejected(
            "malformed", f"This is not a valid OpenPGP public key: {exc}. {_retry_hint()}"
        ) from exc
    if any(packet.tag in pk.SECRET_TAGS for packet in packets):
        raise _secret_key_rejection()
    return packets


def _retry_hint() -> str:
    return f"Copy the whole block including the BEGIN and END lines; to get it, {EXPORT_HINT}."


def _secret_key_rejection() -> KeyRejected:
    return KeyRejected(
        "secret_key",
        "This is a secret (private) key, not a public key. sealmail did not store it. "
        "Treat this key as exposed: revoke it, create a new key pair, and paste only the "
        f"public key ({EXPORT_HINT}).",
    )


def _split(packets: list[RawPacket]) -> _ParsedCert:
    """Group packets into one certificate, stripping third-party certifications."""
    primaries = [packet for packet in packets if packet.tag == pk.TAG_PUBLIC_KEY]
    if not primaries:
        raise KeyRejected("malformed", f"No OpenPGP public key was found in the input. {_retry_hint()}")
    if packets[0].tag != pk.TAG_PUBLIC_KEY:
        raise KeyRejected(
            "malformed",
            "The input does not start with a public key packet; it may be a message or "
            f"a signature. {_retry_hint()}",
        )
    keys = [_parse_key(packet) for packet in primaries]
    if len(keys) > 1:
        names = ", ".join(_groups(key.fingerprint) or key.key_id.upper() for key in keys)
        raise KeyRejected(
            "multiple_keys",
            f"The input contains {len(keys)} keys ({names}). Paste one key: "
            "export only the key you want to use, e.g. `gpg --armor --export FINGERPRINT`.",
        )
    primary_key = keys[0]
    if primary_key.version not in (4, 6):
        raise KeyRejected(
            "weak_algorithm",
            f"This is a version {primary_key.version} key, an obsolete format that is no "
            "longer accepted. Create a new key (e.g. `gpg --quick-generate-key YOUR-ADDRESS`).",
        )

    parsed = _ParsedCert(_Component(packets[0], primary_key))
    current = parsed.primary
    skip_component = False
    for packet in packets[1:]:
        if packet.tag == pk.TAG_SIGNATURE:
            if skip_component:
                continue
            try:
                info = pk.parse_signature(packet)
            except PacketError:
                parsed.removed_certifications += 1
                continue
            if not info.issued_by(primary_key):
                parsed.removed_certifications += 1
                continue
            current.signatures.append((packet, info))
        elif packet.tag == pk.TAG_USER_ID:
            skip_component = False
            current = _Component(packet)
            parsed.user_ids.append(current)
        elif packet.tag == pk.TAG_USER_ATTRIBUTE:
            skip_component = True
            parsed.removed_user_attributes += 1
        elif packet.tag == pk.TAG_PUBLIC_SUBKEY:
            skip_component = False
            current = _Component(packet, _parse_key(packet))
            parsed.subkeys.append(current)
        elif packet.tag in (pk.TAG_TRUST, pk.TAG_MARKER, pk.TAG_PADDING):
            continue
        else:
            raise KeyRejected(
                "malformed",
                f"The key contains an unexpected packet (tag {packet.tag}); it may be "
                f"mixed with a message or signature. {_retry_hint()}",
            )
    return parsed


def _parse_key(packet: RawPacket) -> KeyInfo:
    try:
        return pk.parse_key(packet)
    except PacketError as exc:
        raise KeyRejected(
            "malformed", f"A key packet could not be read: {exc}. {_retry_hint()}"
        ) from exc


def _groups(fingerprint: str) -> str:
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def _weak_key_reason(key: KeyInfo) -> str | None:
    if key.algorithm_id in {17} | pk.ELGAMAL_ALGORITHMS:
        # Sequoia's standard policy has rejected DSA and ElGamal since 2023,
        # at any key size.
        return key.algorithm_name
    if key.algorithm_id in pk.RSA_ALGORITHMS:
        if key.bits is None or key.bits < MIN_RSA_BITS:
            return f"{key.algorithm_name} with {key.bits} bits (the minimum is {MIN_RSA_BITS})"
    if key.algorithm_id in (18, 19, 22) and key.curve not in pk.CURVE_BITS:
        return f"{key.algorithm_name} on the unsupported {key.curve}"
    if key.algorithm_id not in pk.PUBLIC_KEY_ALGORITHMS:
        return f"the unsupported public-key algorithm {key.algorithm_id}"
    return None


def _newest(
    signatures: list[tuple[RawPacket, SignatureInfo]], types: set[int], now: datetime
) -> tuple[SignatureInfo | None, bool]:
    """Return the newest acceptable signature of ``types`` made by ``now``.

    The flag is true when only signatures with a rejected hash (SHA-1, MD5,
    RIPEMD-160) were found.
    """
    candidates = [
        info
        for _, info in signatures
        if info.type in types and info.created is not None and info.created <= now
        and (info.expiration is None or info.expiration > now)
    ]
    strong = [info for info in candidates if not info.weak_hash]
    if strong:
        return max(strong, key=lambda info: info.created or now), False
    return None, bool(candidates)


def _evaluate(parsed: _ParsedCert, now: datetime) -> KeyReport:
    primary = parsed.primary.key
    assert primary is not None
    weak = _weak_key_reason(primary)
    if weak:
        raise KeyRejected(
            "weak_algorithm",
            f"The primary key uses {weak}, which is no longer accepted. Create a new key "
            "with a modern algorithm (e.g. `gpg --quick-generate-key YOUR-ADDRESS future-default`).",
        )
    if primary.created > now:
        raise KeyRejected(
            "not_yet_valid",
            f"The key was created in the future ({primary.created:%Y-%m-%d %H:%M} UTC). "
            "Check the clock of the computer that created it, or try again after that time.",
        )

    blob = parsed.serialize()
    try:
        cert = pysequoia.Cert.from_bytes(blob)
    except Exception as exc:  # pysequoia raises plain Exception
        raise KeyRejected(
            "malformed", f"The key could not be read: {_first_line(exc)}. {_retry_hint()}"
        ) from exc

    # Revocation first: a revoked key is never usable, whatever else is wrong.
    if _is_revoked(cert, parsed):
        raise KeyRejected(
            "revoked",
            "This key has been revoked by its owner. Paste your current key, or create a "
            "new one if you no longer have it.",
        )

    primary_binding, only_weak = _primary_binding(parsed, now)
    if primary_binding is None:
        if only_weak:
            raise KeyRejected(
                "weak_algorithm",
                "The key's self-signatures use SHA-1, which is no longer accepted. Update "
                "them, e.g. with `gpg --cert-digest-algo SHA256 --quick-set-expire "
                "FINGERPRINT 2y` (GnuPG 2.2 re-signs with the given digest), then export again.",
            )
        raise KeyRejected(
            "malformed",
            "The key has no valid self-signature, so it cannot be used. Export it again "
            f"from your OpenPGP program: {EXPORT_HINT}.",
        )

    expires = _expiry(primary, primary_binding)
    if expires is not None and expires <= now:
        raise KeyRejected(
            "expired",
            f"This key expired on {expires:%Y-%m-%d}. Extend its expiry date (e.g. "
            "`gpg --quick-set-expire FINGERPRINT 2y`, which also extends the subkeys with "
            "`gpg --quick-set-expire FINGERPRINT 2y '*'`) and paste it again.",
        )

    subkeys = _encryption_keys(parsed, cert, primary_binding, now)
    live = [sub for sub in subkeys if sub.usable]
    if not live:
        raise _no_encryption_key(subkeys)

    if any(sub.expires is None for sub in live):
        usable_until = expires
    else:
        latest = max(sub.expires for sub in live if sub.expires is not None)
        usable_until = min(latest, expires) if expires else latest

    user_ids = _user_ids(cert, parsed)
    warnings = _warnings(parsed, primary, primary_binding, user_ids, usable_until, now)
    logger.debug("inspected key %s: usable until %s", primary.fingerprint, usable_until)
    return KeyReport(
        fingerprint=primary.fingerprint,
        version=primary.version,
        algorithm=primary.algorithm,
        user_ids=user_ids,
        created=primary.created,
        expires=expires,
        usable_until=usable_until,
        certificate=bytes(cert),
        warnings=warnings,
        key_size=primary.bits,
        encryption_subkeys=subkeys,
        removed_certifications=parsed.removed_certifications,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _is_revoked(cert: pysequoia.Cert, parsed: _ParsedCert) -> bool:
    if not any(info.type == pk.SIG_KEY_REVOCATION for _, info in parsed.primary.signatures):
        return False
    try:
        return bool(cert.is_revoked)
    except Exception:  # pysequoia raises plain Exception when no binding is valid
        return True


def _revoked_user_id(component: _Component) -> bool:
    revocations = [
        info for _, info in component.signatures if info.type == pk.SIG_CERTIFICATION_REVOCATION
    ]
    if not revocations:
        return False
    bindings = [info for _, info in component.signatures if info.type in pk.SIG_CERTIFICATIONS]
    newest_binding = max((info.created for info in bindings if info.created), default=None)
    newest_revocation = max((info.created for info in revocations if info.created), default=None)
    if newest_binding is None or newest_revocation is None:
        return True
    return newest_revocation >= newest_binding


def _primary_binding(parsed: _ParsedCert, now: datetime) -> tuple[SignatureInfo | None, bool]:
    """Return the self-signature that carries the primary key's expiry and flags.

    Like Sequoia for v4 keys: the newest binding of the primary user ID
    when there is one, else the newest direct-key signature.
    """
    only_weak = False
    bindings = []
    for component in parsed.user_ids:
        if _revoked_user_id(component):
            continue
        info, weak = _newest(component.signatures, pk.SIG_CERTIFICATIONS, now)
        only_weak = only_weak or weak
        if info is not None:
            bindings.append(info)
    direct, weak = _newest(parsed.primary.signatures, {pk.SIG_DIRECT_KEY}, now)
    only_weak = only_weak or weak
    if parsed.primary.key and parsed.primary.key.version == 6 and direct is not None:
        return direct, False
    if bindings:
        primary_flagged = [info for info in bindings if info.primary_user_id]
        chosen = primary_flagged or bindings
        return max(chosen, key=lambda info: info.created or now), False
    if direct is not None:
        return direct, False
    return None, only_weak


def _expiry(key: KeyInfo, binding: SignatureInfo) -> datetime | None:
    validity = binding.key_validity
    return key.created + validity if validity else None


def _encryption_keys(
    parsed: _ParsedCert, cert: pysequoia.Cert, primary_binding: SignatureInfo, now: datetime
) -> list[SubkeyReport]:
    reports = []
    primary = parsed.primary.key
    assert primary is not None
    primary_flags = primary_binding.key_flags
    if primary.can_encrypt and primary_flags is not None and primary_flags & pk.FLAGS_ENCRYPT:
        reports.append(_primary_as_encryption_key(parsed, cert, primary, primary_binding, now))
    for component in parsed.subkeys:
        report = _subkey_report(parsed, component, now)
        if report is not None:
            reports.append(report)
    return reports


def _primary_as_encryption_key(
    parsed: _ParsedCert, cert: pysequoia.Cert, key: KeyInfo, binding: SignatureInfo, now: datetime
) -> SubkeyReport:
    accepted = _sequoia_encrypts_to(parsed.serialize(subkeys=[]), key.key_id)
    problem = None if accepted else "the key's self-signature is not valid"
    return SubkeyReport(
        fingerprint=key.fingerprint,
        key_id=key.key_id,
        algorithm=key.algorithm,
        key_size=key.bits,
        created=key.created,
        expires=_expiry(key, binding),
        revoked=False,
        usable=accepted,
        problem=problem,
    )


def _subkey_report(parsed: _ParsedCert, component: _Component, now: datetime) -> SubkeyReport | None:
    key = component.key
    assert key is not None
    binding, only_weak = _newest(component.signatures, {pk.SIG_SUBKEY_BINDING}, now)
    if binding is None and not only_weak:
        weak_any = [
            info for _, info in component.signatures if info.type == pk.SIG_SUBKEY_BINDING
        ]
        if not weak_any:
            return None  # an unbound subkey is ignored, as every implementation does
    flags = binding.key_flags if binding is not None else _any_flags(component)
    if not key.can_encrypt or flags is None or not flags & pk.FLAGS_ENCRYPT:
        return None

    revoked = any(info.type == pk.SIG_SUBKEY_REVOCATION for _, info in component.signatures)
    expires = _expiry(key, binding) if binding is not None else None

    problem = None
    weak = _weak_key_reason(key)
    if weak:
        problem = f"it uses {weak}"
    elif binding is None and only_weak:
        problem = "its binding signature uses SHA-1, which is no longer accepted"
    elif binding is None:
        problem = "it has no binding signature that is valid now"
    elif key.created > now:
        problem = f"it was created in the future ({key.created:%Y-%m-%d})"
    elif expires is not None and expires <= now:
        problem = f"it expired on {expires:%Y-%m-%d}"

    accepted = problem is None and _sequoia_encrypts_to(
        parsed.serialize(subkeys=[component]), key.key_id
    )
    if revoked and not accepted:
        problem = "it has been revoked"
    elif revoked:
        # Sequoia did not accept the revocation signature, so it is not valid.
        revoked = False
    if problem is None and not accepted:
        problem = "Sequoia's standard policy rejects it or its binding signature"
    return SubkeyReport(
        fingerprint=key.fingerprint,
        key_id=key.key_id,
        algorithm=key.algorithm,
        key_size=key.bits,
        created=key.created,
        expires=expires,
        revoked=revoked,
        usable=problem is None,
        problem=problem,
    )


def _any_flags(component: _Component) -> int | None:
    for _, info in component.signatures:
        if info.type == pk.SIG_SUBKEY_BINDING and info.key_flags is not None:
            return info.key_flags
    return None


@functools.lru_cache(maxsize=4096)
def _sequoia_encrypts_to(cert_bytes: bytes, key_id: str) -> bool:
    """Return whether pysequoia's recipient selection picks the key ``key_id`` of this certificate.

    pysequoia picks valid, non-revoked, policy-compliant encryption keys and
    verifies their binding signatures. Expiry is checked separately by the
    caller, because pysequoia 0.1.35 falls back to expired keys.
    """
    try:
        cert = pysequoia.Cert.from_bytes(cert_bytes)
        message = pysequoia.encrypt(b"", [cert], armor=False)
    except Exception:  # pysequoia raises plain Exception when no key qualifies
        return False
    try:
        outline = pk.outline_message(message)
    except PacketError:
        return False
    return any(recipient.key_id == key_id for recipient in outline.recipients)


def _no_encryption_key(subkeys: list[SubkeyReport]) -> KeyRejected:
    if not subkeys:
        return KeyRejected(
            "no_encryption_key",
            "This key has no encryption subkey, so mail cannot be encrypted to it (it can "
            "only sign). Add one, e.g. `gpg --quick-add-key FINGERPRINT cv25519 encr 2y`, "
            "and paste the key again.",
        )
    weak = [sub for sub in subkeys if sub.problem and ("SHA-1" in sub.problem or "uses" in sub.problem)]
    details = "; ".join(f"subkey {sub.key_id.upper()}: {sub.problem}" for sub in subkeys)
    if len(weak) == len(subkeys):
        return KeyRejected(
            "weak_algorithm",
            f"No encryption subkey is acceptable ({details}). Add a new encryption subkey, "
            "e.g. `gpg --quick-add-key FINGERPRINT cv25519 encr 2y`, and paste the key again.",
        )
    return KeyRejected(
        "no_encryption_key",
        f"This key has no usable encryption subkey ({details}). Extend the subkey "
        "(`gpg --quick-set-expire FINGERPRINT 2y '*'`) or add a new one "
        "(`gpg --quick-add-key FINGERPRINT cv25519 encr 2y`), then paste the key again.",
    )


def _user_ids(cert: pysequoia.Cert, parsed: _ParsedCert) -> list[str]:
    try:
        return [str(uid) for uid in cert.user_ids]
    except Exception:  # pysequoia raises plain Exception without a valid binding
        return [
            component.packet.body.decode("utf-8", "replace")
            for component in parsed.user_ids
            if not _revoked_user_id(component)
        ]


def _warnings(
    parsed: _ParsedCert,
    primary: KeyInfo,
    binding: SignatureInfo,
    user_ids: list[str],
    usable_until: datetime | None,
    now: datetime,
) -> list[str]:
    warnings = []
    if not user_ids:
        warnings.append(
            "The key has no user ID (key servers remove them until the address is "
            "verified); sealmail encrypts by fingerprint, so this is fine."
        )
    if primary.algorithm_id in pk.RSA_ALGORITHMS and (primary.bits or 0) < RECOMMENDED_RSA_BITS:
        warnings.append(
            f"The key is RSA with {primary.bits} bits; {RECOMMENDED_RSA_BITS} bits or an "
            "elliptic-curve key (ed25519/cv25519) is recommended for new keys."
        )
    hashes = binding.preferred_hashes
    if hashes and all(hash_id in pk.WEAK_HASHES for hash_id in hashes):
        warnings.append(
            "The key prefers only SHA-1 or weaker hash algorithms; sealmail still signs with "
            "SHA-256 or stronger."
        )
    if usable_until is not None and usable_until - now < EXPIRY_WARNING:
        warnings.append(
            f"The key can be used for encryption only until {usable_until:%Y-%m-%d}; "
            "extend its expiry date soon."
        )
    if parsed.removed_certifications:
        warnings.append(
            f"{parsed.removed_certifications} certifications by other keys were removed; "
            "sealmail does not need them."
        )
    if parsed.removed_user_attributes:
        warnings.append("Photo IDs (user attributes) were removed; sealmail does not need them.")
    return warnings



def _group(packets: list[RawPacket]) -> _ParsedCert:
    """Group the packets of one public or secret certificate without stripping anything."""
    if not packets or packets[0].tag not in (pk.TAG_PUBLIC_KEY, pk.TAG_SECRET_KEY):
        raise PacketError("the data does not start with a primary key packet")
    parsed = _ParsedCert(_Component(packets[0], pk.parse_key(packets[0])))
    current = parsed.primary
    for packet in packets[1:]:
        if packet.tag in (pk.TAG_PUBLIC_KEY, pk.TAG_SECRET_KEY):
            break
        if packet.tag == pk.TAG_SIGNATURE:
            try:
                current.signatures.append((packet, pk.parse_signature(packet)))
            except PacketError:
                continue
        elif packet.tag in (pk.TAG_USER_ID, pk.TAG_USER_ATTRIBUTE):
            current = _Component(packet)
            parsed.user_ids.append(current)
        elif packet.tag in (pk.TAG_PUBLIC_SUBKEY, pk.TAG_SECRET_SUBKEY):
            current = _Component(packet, pk.parse_key(packet))
            parsed.subkeys.append(current)
    return parsed


def encryption_secret_variants(tsk_bytes: bytes) -> list[tuple[str, bytes]]:
    """Split a secret key into one key per encryption-capable subkey.

    Returns ``(key_id, binary key)`` pairs. Each binary key contains the
    primary key, the user IDs and that one subkey, so that pysequoia's
    ``Tsk.decryptor()`` uses exactly that subkey.
    """
    parsed = _group(pk.read_packets(pk.dearmor(tsk_bytes).data))
    now = datetime.now(timezone.utc)
    variants = []
    binding, _ = _primary_binding(parsed, now)
    primary = parsed.primary.key
    assert primary is not None
    if binding is not None and primary.can_encrypt and (binding.key_flags or 0) & pk.FLAGS_ENCRYPT:
        variants.append((primary.key_id, parsed.serialize(subkeys=[])))
    for component in parsed.subkeys:
        key = component.key
        assert key is not None
        if component.packet.tag != pk.TAG_SECRET_SUBKEY or not key.can_encrypt:
            continue
        flags = _any_flags(component)
        newest, _ = _newest(component.signatures, {pk.SIG_SUBKEY_BINDING}, now)
        if newest is not None and newest.key_flags is not None:
            flags = newest.key_flags
        if flags is not None and flags & pk.FLAGS_ENCRYPT:
            variants.append((key.key_id, parsed.serialize(subkeys=[component])))
    return variants


def signing_key_state(cert_bytes: bytes, issuer: str, *, at: datetime | None = None) -> str:
    """Return ``revoked``, ``expired``, ``valid`` or ``unknown`` for the key ``issuer`` of a certificate.

    Used only to explain a signature that Sequoia already rejected, so the
    revocation and expiry subpackets are read without verifying them.
    """
    now = datetime.now(timezone.utc)
    at = at or now
    try:
        parsed = _group(pk.read_packets(pk.dearmor(cert_bytes).data))
    except PacketError:
        return "unknown"
    primary = parsed.primary.key
    assert primary is not None
    issuer = issuer.lower()
    if any(info.type == pk.SIG_KEY_REVOCATION for _, info in parsed.primary.signatures):
        return "revoked"
    binding, _ = _primary_binding(parsed, now)
    if binding is not None:
        expires = _expiry(primary, binding)
        if expires is not None and expires <= at:
            return "expired"
    if issuer in (primary.fingerprint, primary.key_id):
        return "valid"
    for component in parsed.subkeys:
        key = component.key
        assert key is not None
        if issuer not in (key.fingerprint, key.key_id):
            continue
        if any(info.type == pk.SIG_SUBKEY_REVOCATION for _, info in component.signatures):
            return "revoked"
        newest, _ = _newest(component.signatures, {pk.SIG_SUBKEY_BINDING}, now)
        if newest is not None:
            expires = _expiry(key, newest)
            if expires is not None and expires <= at:
                return "expired"
        return "valid"
    return "unknown"
