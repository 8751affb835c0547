"""Generate provider keys: a v4 Ed25519 primary key with a Cv25519 subkey.

pysequoia 0.1.35 (Sequoia 2.4) generates v4 keys whose self-signatures
advertise SEIPDv2 in their Features subpacket, so Sequoia encrypts replies
to them with SEIPDv2, which GnuPG 2.2 cannot read. It also always adds a
signing subkey and sets no compression preference. This module builds the
key packets and self-signatures itself (RFC 4880 profile, as RFC 9580
section 5 describes v4 keys) with the ``cryptography`` package:

- primary key: EdDSA (legacy, algorithm 22) on Ed25519, flags certify + sign;
- subkey: ECDH on Curve25519, KDF SHA-256 / AES-128, flags encrypt;
- Features: SEIPDv1 only, no AEAD preferences;
- preferences: AES-256, AES-128; SHA-512, SHA-256; uncompressed only, so that
  GnuPG does not compress, because pysequoia 0.1.35 cannot report the
  signatures inside a compressed encrypted message.

The result is an unprotected transferable secret key (binary) that
``pysequoia.Tsk.from_bytes`` reads.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from sealmail.core.pgp.packets import (
    FLAG_CERTIFY,
    FLAG_ENCRYPT_COMMUNICATIONS,
    FLAG_ENCRYPT_STORAGE,
    FLAG_SIGN,
    TAG_SECRET_KEY,
    TAG_SECRET_SUBKEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    RawPacket,
    encode_length,
)

ED25519_OID = bytes.fromhex("2B06010401DA470F01")
CV25519_OID = bytes.fromhex("2B060104019755010501")
ALGORITHM_ECDH = 18
ALGORITHM_EDDSA = 22
HASH_SHA512 = 10
RAW = serialization.Encoding.Raw


def _mpi(value: bytes) -> bytes:
    stripped = value.lstrip(b"\x00")
    bits = len(stripped) * 8 - (8 - stripped[0].bit_length()) if stripped else 0
    return bits.to_bytes(2, "big") + stripped


def _subpacket(kind: int, data: bytes) -> bytes:
    return encode_length(len(data) + 1) + bytes([kind]) + data


def _secret_part(*mpis: bytes) -> bytes:
    material = b"".join(_mpi(value) for value in mpis)
    checksum = sum(material) & 0xFFFF
    return b"\x00" + material + checksum.to_bytes(2, "big")


class _KeyMaterial:
    def __init__(self, public_body: bytes) -> None:
        self.public_body = public_body
        self.fingerprint = hashlib.sha1(
            b"\x99" + len(public_body).to_bytes(2, "big") + public_body
        ).digest()

    @property
    def hashed_form(self) -> bytes:
        return b"\x99" + len(self.public_body).to_bytes(2, "big") + self.public_body


def _sign(
    signing_key: Ed25519PrivateKey,
    issuer: _KeyMaterial,
    signature_type: int,
    signed_data: bytes,
    subpackets: bytes,
) -> RawPacket:
    hashed = bytes([4, signature_type, ALGORITHM_EDDSA, HASH_SHA512])
    hashed += len(subpackets).to_bytes(2, "big") + subpackets
    trailer = b"\x04\xff" + len(hashed).to_bytes(4, "big")
    digest = hashlib.sha512(signed_data + hashed + trailer).digest()
    # Legacy EdDSA signs the digest itself (RFC 9580 section 5.2.3.3).
    signature = signing_key.sign(digest)
    unhashed = _subpacket(16, issuer.fingerprint[-8:])
    body = hashed + len(unhashed).to_bytes(2, "big") + unhashed
    body += digest[:2] + _mpi(signature[:32]) + _mpi(signature[32:])
    return RawPacket(TAG_SIGNATURE, body)


def generate_provider_key(user_ids: list[str], *, now: datetime | None = None) -> bytes:
    """Return a new binary transferable secret key for ``user_ids`` that never expires."""
    if not user_ids:
        raise ValueError("a provider key needs at least one user ID")
    created = int((now or datetime.now(timezone.utc)).timestamp())
    created_bytes = created.to_bytes(4, "big")

    primary_secret = Ed25519PrivateKey.generate()
    primary_public = primary_secret.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)
    primary = _KeyMaterial(
        b"\x04" + created_bytes + bytes([ALGORITHM_EDDSA, len(ED25519_OID)]) + ED25519_OID
        + _mpi(b"\x40" + primary_public)
    )
    seed = primary_secret.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())

    subkey_secret = X25519PrivateKey.generate()
    subkey_public = subkey_secret.public_key().public_bytes(RAW, serialization.PublicFormat.Raw)
    scalar = bytearray(
        subkey_secret.private_bytes(RAW, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    )
    scalar[0] &= 248
    scalar[31] &= 127
    scalar[31] |= 64
    kdf_parameters = bytes([3, 1, 8, 7])  # SHA-256, AES-128
    subkey = _KeyMaterial(
        b"\x04" + created_bytes + bytes([ALGORITHM_ECDH, len(CV25519_OID)]) + CV25519_OID
        + _mpi(b"\x40" + subkey_public) + kdf_parameters
    )

    common = _subpacket(2, created_bytes) + _subpacket(33, b"\x04" + primary.fingerprint)
    preferences = (
        _subpacket(11, bytes([9, 7]))  # AES-256, AES-128
        + _subpacket(21, bytes([10, 8]))  # SHA-512, SHA-256
        + _subpacket(22, bytes([0]))  # uncompressed
        + _subpacket(30, bytes([0x01]))  # SEIPDv1 only
        + _subpacket(23, bytes([0x80]))  # no-modify
    )
    packets = [RawPacket(TAG_SECRET_KEY, primary.public_body + _secret_part(seed))]
    for index, user_id in enumerate(user_ids):
        encoded = user_id.encode("utf-8")
        subpackets = common + _subpacket(27, bytes([FLAG_CERTIFY | FLAG_SIGN])) + preferences
        if index == 0:
            subpackets += _subpacket(25, b"\x01")
        signed = primary.hashed_form + b"\xb4" + len(encoded).to_bytes(4, "big") + encoded
        packets.append(RawPacket(TAG_USER_ID, encoded))
        packets.append(_sign(primary_secret, primary, 0x13, signed, subpackets))
    packets.append(
        RawPacket(TAG_SECRET_SUBKEY, subkey.public_body + _secret_part(bytes(reversed(scalar))))
    )
    binding = common + _subpacket(27, bytes([FLAG_ENCRYPT_COMMUNICATIONS | FLAG_ENCRYPT_STORAGE]))
    packets.append(
        _sign(primary_secret, primary, 0x18, primary.hashed_form + subkey.hashed_form, binding)
    )
    return b"".join(packet.serialize() for packet in packets)
