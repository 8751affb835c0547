"""Key intake: inspect a public key a customer pasted or uploaded.

NOTE: this is the first, minimal version of the contract (``KeyReport``,
``inspect_key``); the full policy checks replace it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

import pysequoia

from sealmail.core.errors import KeyRejected

MAX_INPUT_BYTES = 1024 * 1024


@dataclass(frozen=True)
class KeyReport:
    """What intake understood about a usable certificate."""

    fingerprint: str
    version: int
    algorithm: str
    user_ids: list[str]
    created: datetime
    expires: datetime | None
    usable_until: datetime | None
    certificate: bytes  # binary, third-party certifications stripped
    warnings: list[str] = field(default_factory=list)

    @property
    def fingerprint_groups(self) -> str:
        """The fingerprint in upper-case groups of four, as the portal shows it."""
        upper = self.fingerprint.upper()
        return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def inspect_key(data: bytes | str, *, now: datetime | None = None) -> KeyReport:
    """Return a report on ``data`` or raise :class:`KeyRejected` with a reason code."""
    now = now or datetime.now(timezone.utc)
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_INPUT_BYTES:
        raise KeyRejected("too_large", "The key is larger than 1 MB; export only the public key.")
    try:
        certs = pysequoia.Cert.split_bytes(raw)
    except Exception as exc:
        raise KeyRejected("malformed", f"This is not an OpenPGP public key: {exc}.") from exc
    if not certs:
        raise KeyRejected("malformed", "No OpenPGP key was found in the input.")
    if len(certs) > 1:
        names = ", ".join(cert.fingerprint.upper() for cert in certs)
        raise KeyRejected("multiple_keys", f"The input contains {len(certs)} keys ({names}); paste one.")
    cert = certs[0]
    if cert.has_secret_keys:
        raise KeyRejected("secret_key", "This is a secret key. Treat it as exposed.")
    if cert.is_revoked:
        raise KeyRejected("revoked", "This key is revoked.")
    if cert.expiration is not None and cert.expiration <= now:
        raise KeyRejected("expired", f"This key expired on {cert.expiration:%Y-%m-%d}.")
    return KeyReport(
        fingerprint=cert.fingerprint,
        version=4,
        algorithm="unknown",
        user_ids=[str(uid) for uid in cert.user_ids],
        created=now,
        expires=cert.expiration,
        usable_until=cert.expiration,
        certificate=bytes(cert),
    )
