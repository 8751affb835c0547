"""Encrypt, sign, decrypt and verify with pysequoia.

These are the only functions the rest of sealmail calls to produce
OpenPGP data; they wrap every pysequoia error in a :mod:`sealmail.core.errors`
exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pysequoia

from sealmail.core.errors import EncryptionError, SigningError


@dataclass(frozen=True)
class ProviderSigner:
    """A provider secret key unlocked for signing."""

    fingerprint: str
    signer: pysequoia.PySigner
    certificate: pysequoia.Cert

    @classmethod
    def from_tsk(cls, tsk: pysequoia.Tsk, password: str | None = None) -> ProviderSigner:
        try:
            signer = tsk.signer(password)
        except Exception as exc:  # pysequoia raises plain Exception
            raise SigningError(
                f"cannot unlock the signing key {tsk.extract_certificate().fingerprint}: "
                f"{exc}; check the passphrase"
            ) from exc
        certificate = tsk.extract_certificate()
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


def encrypt_and_sign(
    plaintext: bytes,
    recipients: Sequence[pysequoia.Cert],
    signer: ProviderSigner | None,
    *,
    armor: bool = True,
) -> bytes:
    """Encrypt ``plaintext`` to every recipient and sign it in one pass."""
    if not recipients:
        raise EncryptionError("no recipient certificate given; refusing to encrypt")
    try:
        return pysequoia.encrypt(
            plaintext,
            list(recipients),
            signer=signer.signer if signer else None,
            armor=armor,
        )
    except Exception as exc:  # pysequoia raises plain Exception
        fingerprints = ", ".join(cert.fingerprint for cert in recipients)
        raise EncryptionError(f"encryption to {fingerprints} failed: {exc}") from exc


def sign_detached(data: bytes, signer: ProviderSigner) -> DetachedSignature:
    """Return an armored detached signature over exactly ``data``."""
    try:
        armored = pysequoia.sign(
            signer.signer, data, mode=pysequoia.SignatureMode.DETACHED
        )
        hash_name = str(pysequoia.Sig.from_bytes(armored).hash_algorithm).rpartition(".")[2]
    except Exception as exc:  # pysequoia raises plain Exception
        raise SigningError(
            f"detached signature with key {signer.fingerprint} failed: {exc}"
        ) from exc
    return DetachedSignature(armored, hash_name)
