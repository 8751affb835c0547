"""Messages built packet by packet, for cases that OpenPGP programs do not produce.

ops.decrypt() measures SEIPDv1 messages with AES itself. The bombs here
(SEIPDv2 with a v6 session key packet, a broken MDC) take the other paths,
and none may be expanded in the worker's memory. The older signed form,
a signature packet before the literal data, must verify like a one-pass
signature.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib

import pysequoia
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from sealmail.core.errors import DecryptionError
from sealmail.core.pgp import ops
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.generate import generate_provider_key

try:  # cryptography 47 moved CFB to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

CV25519_OID = bytes.fromhex("2B060104019755010501")


def _packet(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag]) + pk.encode_length(len(body)) + body


def _cv25519_subkey(cert: bytes) -> tuple[bytes, bytes, int, int]:
    """Return the fingerprint, public point, KDF hash and KEK algorithm of the encryption subkey."""
    for packet in pk.read_packets(cert):
        if packet.tag == pk.TAG_PUBLIC_SUBKEY:
            info = pk.parse_key(packet)
            body = info.public_body
            start = 7 + body[6] + 2
            point = body[start + 1 : start + 33]
            return bytes.fromhex(info.fingerprint), point, body[-2], body[-1]
    raise AssertionError("no encryption subkey")


def _v3_pkesk(cert: bytes, session_key: bytes) -> bytes:
    """Build a v3 PKESK for AES-256 to the Cv25519 subkey, as GnuPG writes it."""
    fingerprint = _cv25519_subkey(cert)[0]
    checksum = struct.pack(">H", sum(session_key) & 0xFFFF)
    ecdh = _ecdh_fields(cert, bytes([9]) + session_key + checksum)
    return _packet(pk.TAG_PKESK, bytes([3]) + fingerprint[-8:] + bytes([18]) + ecdh)


def _seipd_v1(session_key: bytes, inner: bytes) -> bytes:
    prefix = os.urandom(16)
    data = prefix + prefix[-2:] + inner + b"\xd3\x14"
    data += hashlib.sha1(data).digest()
    encryptor = Cipher(algorithms.AES(session_key), CFB(b"\x00" * 16)).encryptor()
    return _packet(pk.TAG_SEIPD, b"\x01" + encryptor.update(data) + encryptor.finalize())


def _ecdh_fields(cert: bytes, payload: bytes) -> bytes:
    """Return the ECDH fields of a PKESK that wraps ``payload`` for the Cv25519 subkey."""
    fingerprint, point, kdf_hash, kek_algorithm = _cv25519_subkey(cert)
    ephemeral = X25519PrivateKey.generate()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(point))
    parameters = (
        bytes([len(CV25519_OID)]) + CV25519_OID + bytes([18, 3, 1, kdf_hash, kek_algorithm])
        + b"Anonymous Sender    " + fingerprint
    )
    digest = {8: hashlib.sha256, 9: hashlib.sha384, 10: hashlib.sha512}[kdf_hash]
    kek = digest(b"\x00\x00\x00\x01" + shared + parameters).digest()[: {7: 16, 8: 24, 9: 32}[kek_algorithm]]
    padding = 8 - len(payload) % 8
    wrapped = aes_key_wrap(kek, payload + bytes([padding]) * padding)
    point_mpi = struct.pack(">H", 263) + b"\x40" + ephemeral.public_key().public_bytes_raw()
    return point_mpi + bytes([len(wrapped)]) + wrapped


def _v6_pkesk(cert: bytes, session_key: bytes) -> bytes:
    """Build a v6 PKESK (RFC 9580 section 5.1) for a v4 Cv25519 subkey."""
    fingerprint = _cv25519_subkey(cert)[0]
    payload = session_key + struct.pack(">H", sum(session_key) & 0xFFFF)
    body = bytes([6, 21, 4]) + fingerprint + bytes([18]) + _ecdh_fields(cert, payload)
    return _packet(pk.TAG_PKESK, body)


def _seipd_v2(session_key: bytes, inner: bytes) -> bytes:
    """Encrypt ``inner`` as SEIPDv2 with AES-256 and OCB (RFC 9580 section 5.13.2)."""
    chunk_octet = 16
    salt = os.urandom(32)
    header = bytes([0xC0 | pk.TAG_SEIPD, 2, 9, 2, chunk_octet])
    derived = HKDF(hashes.SHA256(), 32 + 15 - 8, salt, header).derive(session_key)
    cipher, iv = AESOCB3(derived[:32]), derived[32:]
    chunk = 1 << (chunk_octet + 6)
    out = [bytes([2, 9, 2, chunk_octet]) + salt]
    index = 0
    for start in range(0, len(inner), chunk):
        out.append(cipher.encrypt(iv + struct.pack(">Q", index), inner[start : start + chunk], header))
        index += 1
    out.append(cipher.encrypt(iv + struct.pack(">Q", index), b"", header + struct.pack(">Q", len(inner))))
    return _packet(pk.TAG_SEIPD, b"".join(out))


@pytest.fixture(scope="module")
def provider() -> pysequoia.Tsk:
    return pysequoia.Tsk.from_bytes(generate_provider_key(["<support@provider.test>"]))


def test_seipd_v2_bomb_is_too_large(provider: pysequoia.Tsk) -> None:
    """A SEIPDv2 bomb is measured in a child process with limited memory."""
    cert = bytes(provider.extract_certificate())
    literal = _packet(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + bytes(8 << 20))
    compressed = _packet(pk.TAG_COMPRESSED, b"\x02" + zlib.compress(literal, 9))
    session_key = os.urandom(32)
    message = _v6_pkesk(cert, session_key) + _seipd_v2(session_key, compressed)

    with pytest.raises(DecryptionError) as raised:
        result = ops.decrypt(
            message, [provider], certificates_for=lambda ids: [], max_plaintext=1 << 20
        )
        pytest.fail(f"decrypt returned {len(result.plaintext)} bytes despite max_plaintext of 1 MiB")
    assert raised.value.reason == "too_large"




def test_seipd_v2_below_limit_decrypts(provider: pysequoia.Tsk) -> None:
    cert = bytes(provider.extract_certificate())
    literal = _packet(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + b"small text")
    session_key = os.urandom(32)
    message = _v6_pkesk(cert, session_key) + _seipd_v2(session_key, literal)
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
    literal = _packet(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00hello")
    inner = pk.dearmor(signature).data + literal
    session_key = os.urandom(32)
    cert = bytes(provider.extract_certificate())
    message = _v3_pkesk(cert, session_key) + _seipd_v1(session_key, inner)
    result = ops.decrypt(
        message, [provider], certificates_for=lambda ids: [customer.extract_certificate()]
    )
    assert result.plaintext == b"hello"
    assert [s.status for s in result.signatures] == ["good"]
