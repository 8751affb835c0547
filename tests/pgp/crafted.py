"""OpenPGP messages built packet by packet, around any inner packets a test needs.

The session key packets and encrypted data packets follow RFC 9580 for a
v4 Cv25519 encryption subkey, as GnuPG and Sequoia write them. The inner
packets can be anything, including shapes that no OpenPGP program produces.
"""

from __future__ import annotations

import hashlib
import os
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.ciphers.aead import AESOCB3
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from sealmail.core.pgp import packets as pk

try:  # cryptography 47 moved CFB to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

CV25519_OID = bytes.fromhex("2B060104019755010501")


def packet_bytes(tag: int, body: bytes) -> bytes:
    return bytes([0xC0 | tag]) + pk.encode_length(len(body)) + body


def cv25519_subkey(cert: bytes) -> tuple[bytes, bytes, int, int]:
    """Return the fingerprint, public point, KDF hash and KEK algorithm of the encryption subkey."""
    for packet in pk.read_packets(cert):
        if packet.tag == pk.TAG_PUBLIC_SUBKEY:
            info = pk.parse_key(packet)
            body = info.public_body
            start = 7 + body[6] + 2
            point = body[start + 1 : start + 33]
            return bytes.fromhex(info.fingerprint), point, body[-2], body[-1]
    raise AssertionError("no encryption subkey")


def v3_pkesk(cert: bytes, session_key: bytes) -> bytes:
    """Build a v3 PKESK for AES-256 to the Cv25519 subkey, as GnuPG writes it."""
    fingerprint = cv25519_subkey(cert)[0]
    checksum = struct.pack(">H", sum(session_key) & 0xFFFF)
    ecdh = ecdh_fields(cert, bytes([9]) + session_key + checksum)
    return packet_bytes(pk.TAG_PKESK, bytes([3]) + fingerprint[-8:] + bytes([18]) + ecdh)


def seipd_v1(session_key: bytes, inner: bytes) -> bytes:
    prefix = os.urandom(16)
    data = prefix + prefix[-2:] + inner + b"\xd3\x14"
    data += hashlib.sha1(data).digest()
    encryptor = Cipher(algorithms.AES(session_key), CFB(b"\x00" * 16)).encryptor()
    return packet_bytes(pk.TAG_SEIPD, b"\x01" + encryptor.update(data) + encryptor.finalize())


def ecdh_fields(cert: bytes, payload: bytes) -> bytes:
    """Return the ECDH fields of a PKESK that wraps ``payload`` for the Cv25519 subkey."""
    fingerprint, point, kdf_hash, kek_algorithm = cv25519_subkey(cert)
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


def v6_pkesk(cert: bytes, session_key: bytes) -> bytes:
    """Build a v6 PKESK (RFC 9580 section 5.1) for a v4 Cv25519 subkey."""
    fingerprint = cv25519_subkey(cert)[0]
    payload = session_key + struct.pack(">H", sum(session_key) & 0xFFFF)
    body = bytes([6, 21, 4]) + fingerprint + bytes([18]) + ecdh_fields(cert, payload)
    return packet_bytes(pk.TAG_PKESK, body)


def seipd_v2(session_key: bytes, inner: bytes) -> bytes:
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
    return packet_bytes(pk.TAG_SEIPD, b"".join(out))


def encrypt_packets(cert: bytes, inner: bytes) -> bytes:
    """Return a SEIPDv1 message to the Cv25519 subkey of ``cert`` that contains ``inner`` as is."""
    session_key = os.urandom(32)
    return v3_pkesk(cert, session_key) + seipd_v1(session_key, inner)
