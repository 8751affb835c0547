"""Open encrypted messages with sealmail's own Cv25519 keys, without pysequoia.

pysequoia 0.1.35 checks signatures during decryption only when the signed
data is not wrapped in a compressed data packet; GnuPG compresses unless the
recipient's preferences forbid it, and sq 0.27 always adds a compressed
packet for padding. Where it does check them, it returns only the valid
ones. For those messages this module opens the message a second time, only
to find the signature packets and the signed literal data:

1. decrypt the session key of a version 3 PKESK for an ECDH Curve25519
   secret subkey (RFC 9580 section 5.1.6, RFC 6637), unlocking a protected
   subkey with its passphrase first;
2. decrypt a SEIPDv1 packet (AES-CFB with zero IV, section 5.13.1) and
   check its MDC;
3. decompress and split the inner packets.

The signatures themselves are still verified by pysequoia, over the
literal data. :func:`expanded_size` uses the same steps to measure a
message before pysequoia, which would expand a compression bomb in memory,
decrypts it. Anything else (RSA, SEIPDv2, v6 session key packets, and
protected subkeys other than those described at :func:`_unlock_scalar`)
returns None and the caller reports the signatures as unchecked.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from sealmail.core.pgp import packets as pk

try:  # cryptography 47 moved CFB, which OpenPGP still needs, to "decrepit".
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB

CV25519_OID = bytes.fromhex("2B060104019755010501")
AES_KEY_SIZES = {7: 16, 8: 24, 9: 32}
KDF_HASHES = {8: hashlib.sha256, 9: hashlib.sha384, 10: hashlib.sha512}
# Hash algorithms of the S2K specifiers that protect secret keys.
S2K_HASHES = {2: hashlib.sha1, 8: hashlib.sha256, 9: hashlib.sha384, 10: hashlib.sha512}
MAX_INNER_SIZE = 64 * 1024 * 1024
# Compressed packets inside compressed packets; senders use one layer.
MAX_NESTING = 4


@dataclass(frozen=True)
class InnerMessage:
    """The signed content of a decrypted message and its signature packets."""

    literal: bytes
    signatures: list[pk.RawPacket]


@dataclass(frozen=True)
class _EcdhSecret:
    key_id: str
    fingerprint: bytes
    public_body: bytes
    scalar: bytes  # little-endian X25519 private key
    kdf_hash: int
    kek_algorithm: int


def _mpi_bytes(data: bytes, offset: int) -> tuple[bytes, int]:
    bits = int.from_bytes(data[offset : offset + 2], "big")
    end = offset + 2 + (bits + 7) // 8
    if end > len(data):
        raise pk.PacketError("an MPI is truncated")
    return data[offset + 2 : end], end


def _ecdh_secrets(tsk_bytes: bytes, passphrase: str | None) -> list[_EcdhSecret]:
    secrets = []
    for packet in pk.iter_packets(pk.dearmor(tsk_bytes).data):
        if packet.tag != pk.TAG_SECRET_SUBKEY:
            continue
        info = pk.parse_key(packet)
        if info.version != 4 or info.algorithm_id != 18 or info.curve != "cv25519":
            continue
        rest = packet.body[len(info.public_body) :]
        if rest[:1] == b"\x00":
            scalar, _ = _mpi_bytes(rest, 1)
        elif passphrase is not None:
            unlocked = _unlock_scalar(rest, passphrase)
            if unlocked is None:
                continue
            scalar = unlocked
        else:
            continue
        kdf = info.public_body[-4:]  # length 3, reserved 1, hash, symmetric algorithm
        secrets.append(
            _EcdhSecret(
                info.key_id,
                bytes.fromhex(info.fingerprint),
                info.public_body,
                bytes(reversed(scalar.rjust(32, b"\x00"))),
                kdf[2],
                kdf[3],
            )
        )
    return secrets


@functools.lru_cache(maxsize=64)
def _unlock_scalar(protected: bytes, passphrase: str) -> bytes | None:
    """Return the ECDH secret scalar of a protected secret subkey, or None when this module cannot.

    ``protected`` is the packet body after the public key. This handles the
    form that GnuPG 2.2 exports: S2K usage 254 (RFC 9580 section 5.5.3) with
    AES, CFB and the SHA-1 check. The S2K may be iterated and salted, salted
    or simple, with a hash at least as long as the key. Anything
    else, a wrong passphrase included, returns None. Each key is unlocked
    once per process, because a GnuPG S2K hashes 65 MB on every unlock.
    """
    if len(protected) < 3 or protected[0] != 254 or protected[1] not in AES_KEY_SIZES:
        return None
    derived = _s2k(protected[2:], passphrase.encode(), AES_KEY_SIZES[protected[1]])
    if derived is None:
        return None
    key, s2k_length = derived
    iv_start = 2 + s2k_length
    iv, encrypted = protected[iv_start : iv_start + 16], protected[iv_start + 16 :]
    if len(iv) != 16 or len(encrypted) < 20:
        return None
    decryptor = Cipher(algorithms.AES(key), CFB(iv)).decryptor()
    plain = decryptor.update(encrypted) + decryptor.finalize()
    material, check = plain[:-20], plain[-20:]
    if not hmac.compare_digest(hashlib.sha1(material).digest(), check):
        return None
    try:
        scalar, _ = _mpi_bytes(material, 0)
    except pk.PacketError:
        return None
    return scalar


def _s2k(specifier: bytes, passphrase: bytes, size: int) -> tuple[bytes, int] | None:
    """Derive a ``size``-octet key with a simple (0), salted (1) or iterated and salted (3) S2K.

    Returns the key and the length of the specifier (RFC 9580 section
    3.7.1), or None for another S2K type or a hash shorter than ``size``.
    """
    if len(specifier) < 2 or specifier[0] not in (0, 1, 3):
        return None
    hash_function = S2K_HASHES.get(specifier[1])
    if hash_function is None or hash_function().digest_size < size:
        return None
    kind, salt, length = specifier[0], b"", 2
    if kind in (1, 3):
        salt, length = specifier[2:10], 10
    if kind == 3:
        length = 11
    if len(specifier) < length:
        return None
    material = salt + passphrase
    hashed = hash_function()
    if kind == 3:
        coded = specifier[10]
        count = max((16 + (coded & 15)) << ((coded >> 4) + 6), len(material))
        # The salt and passphrase are repeated until ``count`` octets were
        # hashed. Whole blocks of about 64 KiB keep that fast.
        block = material * max(1, 65536 // max(len(material), 1))
        for _ in range(count // len(block)):
            hashed.update(block)
        hashed.update(block[: count % len(block)])
    else:
        hashed.update(material)
    return hashed.digest()[:size], length


def _session_key(pkesk: bytes, secret: _EcdhSecret) -> tuple[int, bytes] | None:
    if len(pkesk) < 10 or pkesk[0] != 3 or pkesk[9] != 18:
        return None
    point, offset = _mpi_bytes(pkesk, 10)
    if len(point) != 33 or point[0] != 0x40 or offset >= len(pkesk):
        return None
    wrapped = pkesk[offset + 1 : offset + 1 + pkesk[offset]]

    private = X25519PrivateKey.from_private_bytes(secret.scalar)
    shared = private.exchange(X25519PublicKey.from_public_bytes(point[1:]))
    parameters = (
        bytes([len(CV25519_OID)]) + CV25519_OID + bytes([18])
        + bytes([3, 1, secret.kdf_hash, secret.kek_algorithm])
        + b"Anonymous Sender    " + secret.fingerprint
    )
    hash_function = KDF_HASHES.get(secret.kdf_hash)
    kek_size = AES_KEY_SIZES.get(secret.kek_algorithm)
    if hash_function is None or kek_size is None:
        return None
    kek = hash_function(b"\x00\x00\x00\x01" + shared + parameters).digest()[:kek_size]

    try:
        padded = aes_key_unwrap(kek, wrapped)
    except (InvalidUnwrap, ValueError):
        return None

    padding = padded[-1]
    if padding == 0 or padding > 8 or padded[-padding:] != bytes([padding]) * padding:
        return None
    message = padded[:-padding]
    algorithm, key, checksum = message[0], message[1:-2], message[-2:]
    if AES_KEY_SIZES.get(algorithm) != len(key):
        return None
    if sum(key) & 0xFFFF != int.from_bytes(checksum, "big"):
        return None
    return algorithm, key


class Tampered(Exception):
    """The session key fits, but the MDC of the encrypted data does not."""


def _decrypt_seipd_v1(body: bytes, key: bytes) -> bytes | None:
    """Return the packets inside a SEIPDv1 body, or None when it is not SEIPDv1.

    Raises :class:`Tampered` when the data fails its integrity checks.
    """
    if not body or body[0] != 1:
        return None
    decryptor = Cipher(algorithms.AES(key), CFB(b"\x00" * 16)).decryptor()
    plain = decryptor.update(body[1:]) + decryptor.finalize()
    # The quick check (octets 15 and 16 repeated) is skipped, because a
    # response that depends on it can leak plaintext to someone who sends
    # many crafted messages. The MDC below covers those octets too.
    if len(plain) < 16 + 2 + 22:
        raise Tampered("the encrypted data is too short to contain an MDC")
    content, mdc = plain[:-20], plain[-20:]
    if content[-2:] != b"\xd3\x14":
        raise Tampered("the modification detection code packet is missing")
    if not hmac.compare_digest(hashlib.sha1(content).digest(), mdc):
        raise Tampered("the modification detection code does not match")
    return content[18:-2]


def _open(data: bytes, tsk_bytes: bytes, passphrase: str | None) -> bytes | None:
    """Return the packets inside the encryption of ``data``, or None when this module cannot."""
    secrets = _ecdh_secrets(tsk_bytes, passphrase)
    if not secrets:
        return None
    pkesks = []
    encrypted = None
    for packet in pk.iter_packets(pk.dearmor(data, verify_checksum=False).data):
        if packet.tag == pk.TAG_PKESK:
            pkesks.append(packet.body)
        elif packet.tag == pk.TAG_SEIPD:
            encrypted = packet.body
            break
    if encrypted is None:
        return None
    for body in pkesks:
        for secret in secrets:
            session = _session_key(body, secret)
            if session is not None:
                return _decrypt_seipd_v1(encrypted, session[1])
    return None


def expanded_size(
    data: bytes, tsk_bytes: bytes, limit: int, passphrase: str | None = None
) -> int | None:
    """Return how many bytes the packets inside ``data`` take with every compressed layer expanded.

    Counting stops once it passes ``limit``, and no layer is expanded
    beyond what is left of the limit, so a compression bomb costs at most
    ``limit`` bytes of memory here. More than :data:`MAX_NESTING` nested
    compressed layers count as ``limit + 1``. Returns None when this
    module cannot open the message (see the module documentation), and
    raises :class:`Tampered` when it can but the integrity check fails.
    ``passphrase`` unlocks a protected subkey in ``tsk_bytes``.
    """
    try:
        plain = _open(data, tsk_bytes, passphrase)
        if plain is None:
            return None
        return _expanded(plain, limit, 0)
    except (pk.PacketError, ValueError):
        return None


def _expanded(packets: bytes, limit: int, depth: int) -> int:
    total = 0
    for packet in pk.iter_packets(packets):
        if packet.tag == pk.TAG_COMPRESSED:
            if depth >= MAX_NESTING:
                return limit + 1
            left = limit - total
            inner = pk.decompress(packet, max_size=left + 1)
            # A layer cut off at the limit is too large, and cannot be parsed.
            total += left + 1 if len(inner) > left else _expanded(inner, left, depth + 1)
        else:
            total += len(packet.body)
        if total > limit:
            return total
    return total


def inner_message(
    data: bytes, tsk_bytes: bytes, passphrase: str | None = None
) -> InnerMessage | None:
    """Return the literal data and signature packets of ``data``, or None when not possible."""
    try:
        plain = _open(data, tsk_bytes, passphrase)
        if plain is None:
            return None
        packets = pk.read_packets(plain)
        while packets and packets[0].tag == pk.TAG_COMPRESSED:
            packets = pk.read_packets(pk.decompress(packets[0], max_size=MAX_INNER_SIZE))
        literal = next((p for p in packets if p.tag == pk.TAG_LITERAL), None)
        if literal is None or len(literal.body) < 6:
            return None
        content = literal.body[2 + literal.body[1] + 4 :]
        signatures = [p for p in packets if p.tag == pk.TAG_SIGNATURE]
        return InnerMessage(content, signatures)
    except (pk.PacketError, ValueError, Tampered):
        return None
