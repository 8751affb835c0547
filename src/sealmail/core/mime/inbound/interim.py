"""A stand-in for ``sealmail.core.pgp.ops.decrypt`` and the verify functions.

TODO: delete once ``sealmail.core.pgp.ops`` provides ``decrypt``,
``verify_detached`` and ``verify_inline``; it reports signatures only as
good, bad or unknown_key and cannot tell a missing MDC from other errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pysequoia

from sealmail.core.errors import DecryptionError


@dataclass(frozen=True)
class SignatureResult:
    status: str
    signer_fingerprint: str | None
    key_id: str | None = None
    hash_algorithm: str | None = None
    created: datetime | None = None


@dataclass(frozen=True)
class DecryptResult:
    plaintext: bytes
    integrity_protected: bool
    signatures: list[SignatureResult]
    decrypted_with: str


def _error(reason: str, message: str) -> DecryptionError:
    error = DecryptionError(message)
    error.reason = reason  # type: ignore[attr-defined]
    error.recipient_key_ids = []  # type: ignore[attr-defined]
    return error


def _signatures(run: Any, certificates_for: Any) -> list[SignatureResult]:
    asked: list[str] = []
    found: list[Any] = []

    def store(key_ids: list[str]) -> list[Any]:
        asked.extend(key_ids)
        certs = certificates_for(key_ids)
        found.extend(certs)
        return certs

    try:
        result = run(store)
    except Exception as exc:  # pysequoia raises plain Exception
        if not asked:
            return []
        status = "bad" if found else "unknown_key"
        if "Unexpected message structure" in str(exc):
            status = "error"
        return [SignatureResult(status, None, asked[0])]
    return [
        SignatureResult("good", sig.certificate, sig.signing_key)
        for sig in result.valid_sigs
    ]


def decrypt(data: bytes, keys: Any, *, certificates_for: Any) -> DecryptResult:
    for fingerprint, decryptor in keys.decryptors():
        try:
            plaintext = pysequoia.decrypt(data, decryptor).bytes or b""
        except Exception as exc:  # pysequoia raises plain Exception
            if "No key to decrypt" in str(exc):
                continue
            reason = "no_integrity" if "Policy rejected packet type" in str(exc) else "tampered"
            raise _error(reason, f"decryption failed: {exc}".split("\n")[0]) from exc
        signatures = _signatures(
            lambda store: pysequoia.decrypt(data, decryptor, store=store),
            certificates_for,
        )
        return DecryptResult(plaintext, True, signatures, fingerprint)
    raise _error("no_key", "no provider key can decrypt this message")


def verify_detached(data: bytes, signature: bytes, *, certificates_for: Any) -> list[SignatureResult]:
    try:
        sig = pysequoia.Sig.from_bytes(signature)
    except Exception:
        return [SignatureResult("bad", None)]
    return _signatures(
        lambda store: pysequoia.verify(data, store=store, signature=sig), certificates_for
    )


def verify_inline(data: bytes, *, certificates_for: Any) -> tuple[bytes, list[SignatureResult]]:
    content = b""

    def run(store: Any) -> Any:
        nonlocal content
        result = pysequoia.verify(data, store=store)
        content = result.bytes or b""
        return result

    signatures = _signatures(run, certificates_for)
    if not content:
        content = data
    return content, signatures
