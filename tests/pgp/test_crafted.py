"""Messages built packet by packet, for cases that OpenPGP programs do not produce.

ops.decrypt() measures SEIPDv1 messages with AES itself. The bombs here
(SEIPDv2 with a v6 session key packet, a broken MDC) take the other paths,
and none may be expanded in the worker's memory. The older signed form,
a signature packet before the literal data, must verify like a one-pass
signature.
"""

from __future__ import annotations

import os
import zlib

import pysequoia
import pytest

from sealmail.core.errors import DecryptionError
from sealmail.core.pgp import ops
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.generate import generate_provider_key
from tests.pgp.crafted import packet_bytes, seipd_v1, seipd_v2, v3_pkesk, v6_pkesk


@pytest.fixture(scope="module")
def provider() -> pysequoia.Tsk:
    return pysequoia.Tsk.from_bytes(generate_provider_key(["<support@provider.test>"]))


def test_seipd_v2_bomb_is_too_large(provider: pysequoia.Tsk) -> None:
    """A SEIPDv2 bomb is measured in a child process with limited memory."""
    cert = bytes(provider.extract_certificate())
    literal = packet_bytes(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + bytes(8 << 20))
    compressed = packet_bytes(pk.TAG_COMPRESSED, b"\x02" + zlib.compress(literal, 9))
    session_key = os.urandom(32)
    message = v6_pkesk(cert, session_key) + seipd_v2(session_key, compressed)

    with pytest.raises(DecryptionError) as raised:
        result = ops.decrypt(
            message, [provider], certificates_for=lambda ids: [], max_plaintext=1 << 20
        )
        pytest.fail(f"decrypt returned {len(result.plaintext)} bytes despite max_plaintext of 1 MiB")
    assert raised.value.reason == "too_large"




def test_seipd_v2_below_limit_decrypts(provider: pysequoia.Tsk) -> None:
    cert = bytes(provider.extract_certificate())
    literal = packet_bytes(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + b"small text")
    session_key = os.urandom(32)
    message = v6_pkesk(cert, session_key) + seipd_v2(session_key, literal)
    result = ops.decrypt(message, [provider], certificates_for=lambda ids: [], max_plaintext=1 << 20)
    assert result.plaintext == b"small text"


def test_broken_mdc_is_tampered_before_pysequoia(provider, monkeypatch) -> None:
    cert = provider.extract_certificate()
    bomb = pysequoia.encrypt(bytes(1 << 20), [cert], armor=False)
    damaged = bytearray(bomb)
    damaged[-3] ^= 0x01  # inside the MDC
    monkeypatch.setattr(pysequoia, "decrypt", pytest.fail)
    with pytest.raises(DecryptionError) as raised:
        ops.decrypt(bytes(damaged), [provider], certificates_for=lambda ids: [], max_plaintext=1 << 20)
    assert raised.value.reason == "tampered"


def test_signature_before_literal_is_good(provider: pysequoia.Tsk) -> None:
    customer = pysequoia.Tsk.generate("<c@example.test>", cipher_suite=pysequoia.CipherSuite.Cv25519)
    signature = pysequoia.sign(customer.signer(), b"hello", mode=pysequoia.SignatureMode.DETACHED)
    literal = packet_bytes(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00hello")
    inner = pk.dearmor(signature).data + literal
    session_key = os.urandom(32)
    cert = bytes(provider.extract_certificate())
    message = v3_pkesk(cert, session_key) + seipd_v1(session_key, inner)
    result = ops.decrypt(
        message, [provider], certificates_for=lambda ids: [customer.extract_certificate()]
    )
    assert result.plaintext == b"hello"
    assert [s.status for s in result.signatures] == ["good"]
