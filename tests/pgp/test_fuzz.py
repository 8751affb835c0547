"""Damaged input only ever raises the core's own errors."""

from __future__ import annotations

import pysequoia
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmail.core.errors import DecryptionError, KeyRejected, VerificationError
from sealmail.core.pgp.generate import generate_provider_key
from sealmail.core.pgp.inspect import inspect_key
from sealmail.core.pgp.ops import decrypt, encrypt_and_sign, verify_detached, verify_inline
from sealmail.core.pgp.ops import ProviderSigner, sign_detached

TSK = pysequoia.Tsk.from_bytes(generate_provider_key(["<fuzz@provider.test>"]))
CERT = bytes(TSK.extract_certificate())
SIGNER = ProviderSigner.from_tsk(TSK)
MESSAGE = encrypt_and_sign(b"fuzzed plaintext", [TSK.extract_certificate()], SIGNER, armor=False)
SIGNATURE = sign_detached(b"data", SIGNER).armored
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(data: bytes, position: int, value: int, cut: int) -> bytes:
    position %= len(data)
    mutated = bytearray(data)
    mutated[position] = value
    return bytes(mutated[: len(mutated) - cut % 8])


@FUZZ
@given(st.integers(min_value=0), st.integers(0, 255), st.integers(0, 64))
def test_inspect_damaged_key(position, value, cut):
    try:
        inspect_key(mutate(CERT, position, value, cut))
    except KeyRejected as exc:
        assert exc.reason in {
            "malformed", "weak_algorithm", "no_encryption_key", "expired",
            "revoked", "not_yet_valid", "secret_key", "multiple_keys",
        }


@FUZZ
@given(st.integers(min_value=0), st.integers(0, 255), st.integers(0, 64))
def test_decrypt_damaged_message(position, value, cut):
    damaged = mutate(MESSAGE, position, value, cut)
    try:
        result = decrypt(damaged, [TSK], certificates_for=lambda ids: [])
    except DecryptionError as exc:
        assert exc.reason in {"no_key", "no_integrity", "tampered", "malformed"}
        return
    # A change that survives decryption can only be in a part the MDC does not cover.
    assert result.plaintext == b"fuzzed plaintext"


@FUZZ
@given(st.integers(min_value=0), st.integers(0, 255), st.integers(0, 64))
def test_verify_damaged_signature(position, value, cut):
    cert = TSK.extract_certificate()
    try:
        results = verify_detached(b"data", mutate(SIGNATURE, position, value, cut),
                                  certificates_for=lambda ids: [cert])
    except VerificationError:
        return
    for result in results:
        assert result.status in {"good", "bad", "unknown_key", "expired_key", "revoked_key"}


@pytest.mark.parametrize("data", [b"", b"\xff" * 10, b"-----BEGIN PGP MESSAGE-----\n\n"])
def test_verify_inline_garbage(data):
    with pytest.raises(VerificationError):
        verify_inline(data, certificates_for=lambda ids: [])
