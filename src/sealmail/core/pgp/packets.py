"""A small OpenPGP packet reader for what pysequoia 0.1.35 does not expose.

pysequoia parses, verifies and encrypts. This module only reads packet
framing (RFC 9580 section 4) and key packets (algorithm, size, curve,
fingerprint). It also reads signature subpackets (key flags, expiry,
features, preferences) and the session key packets of a message. It never verifies
a signature: cryptographic checks stay with Sequoia.
"""

from __future__ import annotations

import base64
import binascii
import bz2
import hashlib
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

# Packet tags (RFC 9580 section 5).
TAG_PKESK = 1
TAG_SIGNATURE = 2
TAG_SKESK = 3
TAG_ONE_PASS_SIGNATURE = 4
TAG_SECRET_KEY = 5
TAG_PUBLIC_KEY = 6
TAG_SECRET_SUBKEY = 7
TAG_COMPRESSED = 8
TAG_SED = 9
TAG_MARKER = 10
TAG_LITERAL = 11
TAG_TRUST = 12
TAG_USER_ID = 13
TAG_PUBLIC_SUBKEY = 14
TAG_USER_ATTRIBUTE = 17
TAG_SEIPD = 18
TAG_MDC = 19
TAG_AEAD = 20
TAG_PADDING = 21

KEY_TAGS = {TAG_PUBLIC_KEY, TAG_SECRET_KEY, TAG_PUBLIC_SUBKEY, TAG_SECRET_SUBKEY}
SECRET_TAGS = {TAG_SECRET_KEY, TAG_SECRET_SUBKEY}

# Signature types (RFC 9580 section 5.2.1).
SIG_BINARY = 0x00
SIG_TEXT = 0x01
SIG_CERTIFICATIONS = {0x10, 0x11, 0x12, 0x13}
SIG_SUBKEY_BINDING = 0x18
SIG_PRIMARY_KEY_BINDING = 0x19
SIG_DIRECT_KEY = 0x1F
SIG_KEY_REVOCATION = 0x20
SIG_SUBKEY_REVOCATION = 0x28
SIG_CERTIFICATION_REVOCATION = 0x30

# Key flags, first octet (RFC 9580 section 5.2.3.29).
FLAG_CERTIFY = 0x01
FLAG_SIGN = 0x02
FLAG_ENCRYPT_COMMUNICATIONS = 0x04
FLAG_ENCRYPT_STORAGE = 0x08
FLAG_AUTHENTICATE = 0x20
FLAGS_ENCRYPT = FLAG_ENCRYPT_COMMUNICATIONS | FLAG_ENCRYPT_STORAGE

# Features, first octet (RFC 9580 section 5.2.3.32).
FEATURE_SEIPD_V1 = 0x01
FEATURE_SEIPD_V2 = 0x08

PUBLIC_KEY_ALGORITHMS = {
    1: "RSA",
    2: "RSA (encrypt only)",
    3: "RSA (sign only)",
    16: "ElGamal",
    17: "DSA",
    18: "ECDH",
    19: "ECDSA",
    20: "ElGamal (sign and encrypt)",
    22: "EdDSA",
    25: "X25519",
    26: "X448",
    27: "Ed25519",
    28: "Ed448",
}
RSA_ALGORITHMS = {1, 2, 3}
ELGAMAL_ALGORITHMS = {16, 20}
ENCRYPTION_ALGORITHMS = {1, 2, 16, 18, 20, 25, 26}

HASH_ALGORITHMS = {
    1: "MD5",
    2: "SHA1",
    3: "RIPEMD160",
    8: "SHA256",
    9: "SHA384",
    10: "SHA512",
    11: "SHA224",
    12: "SHA3-256",
    14: "SHA3-512",
}
# Hash algorithms the standard policy no longer accepts in signatures.
WEAK_HASHES = {1, 2, 3}

SYMMETRIC_ALGORITHMS = {
    1: "IDEA",
    2: "3DES",
    3: "CAST5",
    4: "Blowfish",
    7: "AES128",
    8: "AES192",
    9: "AES256",
    10: "Twofish",
    11: "Camellia128",
    12: "Camellia192",
    13: "Camellia256",
}

# Curve OIDs (RFC 9580 section 9.2) to the names GnuPG prints.
CURVES = {
    bytes.fromhex("2B06010401DA470F01"): "ed25519",
    bytes.fromhex("2B060104019755010501"): "cv25519",
    bytes.fromhex("2A8648CE3D030107"): "nistp256",
    bytes.fromhex("2B81040022"): "nistp384",
    bytes.fromhex("2B81040023"): "nistp521",
    bytes.fromhex("2B2403030208010107"): "brainpoolP256r1",
    bytes.fromhex("2B240303020801010B"): "brainpoolP384r1",
    bytes.fromhex("2B240303020801010D"): "brainpoolP512r1",
    bytes.fromhex("2B8104000A"): "secp256k1",
}
CURVE_BITS = {
    "ed25519": 255,
    "cv25519": 255,
    "nistp256": 256,
    "nistp384": 384,
    "nistp521": 521,
    "brainpoolP256r1": 256,
    "brainpoolP384r1": 384,
    "brainpoolP512r1": 512,
    "secp256k1": 256,
}
# Native key algorithms of RFC 9580 (fixed-size key material).
NATIVE_KEYS = {25: ("x25519", 32, 255), 26: ("x448", 56, 448), 27: ("ed25519", 32, 255), 28: ("ed448", 57, 448)}

ARMOR_BEGIN = re.compile(rb"-----BEGIN PGP ([A-Z ,0-9/]+)-----\r?\n")
ARMOR_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*: ?.*$")


class PacketError(ValueError):
    """The input is not well-formed OpenPGP data."""


@dataclass(frozen=True)
class RawPacket:
    """One packet: its tag and its body without the length header."""

    tag: int
    body: bytes

    def serialize(self) -> bytes:
        """Encode the packet with a new-format header (RFC 9580 section 4.2.1)."""
        return bytes([0xC0 | self.tag]) + encode_length(len(self.body)) + self.body


def encode_length(length: int) -> bytes:
    if length < 192:
        return bytes([length])
    if length < 8384:
        length -= 192
        return bytes([(length >> 8) + 192, length & 0xFF])
    return b"\xff" + length.to_bytes(4, "big")


def _crc24_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
        table.append(crc & 0xFFFFFF)
    return table


_CRC24_TABLE = _crc24_table()


def crc24(data: bytes) -> int:
    """Return the CRC-24 of the armor checksum (RFC 9580 section 6.1)."""
    crc = 0xB704CE
    table = _CRC24_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ byte]
    return crc


@dataclass(frozen=True)
class Dearmored:
    """Binary OpenPGP data and the armor labels it came under (empty for binary)."""

    data: bytes
    labels: tuple[str, ...] = ()


def looks_armored(data: bytes) -> bool:
    return b"-----BEGIN PGP " in data


def dearmor(data: bytes, *, verify_checksum: bool = True) -> Dearmored:
    """Decode every ASCII armor block in ``data``, or return binary input unchanged.

    Raises :class:`PacketError` on damaged armor: bad Base64, a checksum
    mismatch or a missing END line. ``verify_checksum=False`` skips the
    CRC-24, which RFC 9580 lets a decoder ignore; encrypted messages carry
    their own integrity check, and the CRC costs more than the decryption.
    """
    if not looks_armored(data):
        return Dearmored(data)
    labels = []
    chunks = []
    for label, body in _armor_blocks(data):
        labels.append(label)
        if label == "SIGNED MESSAGE":
            raise PacketError("this is a clear-signed text, not a key or message")
        chunks.append(_decode_armor_body(body, label, verify_checksum))
    if not chunks:
        raise PacketError("the ASCII armor has a BEGIN line but no matching END line")
    return Dearmored(b"".join(chunks), tuple(labels))


def _armor_blocks(data: bytes) -> Iterator[tuple[str, bytes]]:
    """Yield the label and the text between the BEGIN and END lines of each armor block."""
    position = 0
    while True:
        begin = ARMOR_BEGIN.search(data, position)
        if begin is None:
            return
        end = data.find(b"-----END PGP " + begin.group(1) + b"-----", begin.end())
        if end < 0:
            return
        yield begin.group(1).decode("ascii"), data[begin.end() : end]
        position = end


def _armor_payload(body: bytes) -> tuple[bytes, bytes | None]:
    """Split an armor body into its Base64 text without whitespace and its checksum."""
    # Armor headers run up to the first blank line; some producers omit it.
    first_line = body[: body.find(b"\n")] if b"\n" in body else body
    if ARMOR_HEADER.match(first_line.strip()):
        lines = body.split(b"\n")
        while lines and lines[0].strip():
            lines.pop(0)
        body = b"\n".join(lines)
    words = body.split()
    checksum = None
    # The checksum is the last line, "=" and four Base64 characters.
    if words and words[-1].startswith(b"=") and len(words[-1]) == 5:
        checksum = words.pop()[1:]
    return b"".join(words), checksum


def _decode_armor_body(body: bytes, label: str, verify_checksum: bool) -> bytes:
    payload, checksum = _armor_payload(body)
    try:
        decoded = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PacketError(f"the ASCII armor of the {label} is damaged ({exc})") from exc
    if checksum is not None and verify_checksum:
        try:
            expected = int.from_bytes(base64.b64decode(checksum, validate=True), "big")
        except (binascii.Error, ValueError) as exc:
            raise PacketError(f"the armor checksum of the {label} is damaged") from exc
        if crc24(decoded) != expected:
            raise PacketError(f"the armor checksum of the {label} does not match its data")
    if not decoded:
        raise PacketError(f"the {label} armor block is empty")
    return decoded


def read_packets(data: bytes, *, max_packets: int | None = None) -> list[RawPacket]:
    """Split binary OpenPGP data into packets.

    Raises :class:`PacketError` on a truncated packet, a reserved tag or
    more than ``max_packets`` packets.
    """
    packets = []
    for packet in iter_packets(data):
        if max_packets is not None and len(packets) >= max_packets:
            raise PacketError(f"more than {max_packets} packets")
        packets.append(packet)
    return packets


def iter_packets(data: bytes, *, head_only: frozenset[int] = frozenset()) -> Iterator[RawPacket]:
    """Yield the packets of binary OpenPGP data one by one; see :func:`read_packets`.

    For a tag in ``head_only`` the packet carries only the start of its body
    (at least its first octet) and iteration stops after it, so a caller can
    read the version of a large encrypted data packet without copying it.
    """
    offset = 0
    size = len(data)
    while offset < size:
        header = data[offset]
        if not header & 0x80:
            raise PacketError(f"byte {offset} is not a packet header (0x{header:02x})")
        offset += 1
        if header & 0x40 and header & 0x3F in head_only:
            start = _body_start(data, offset)
            yield RawPacket(header & 0x3F, bytes(data[start : start + 1]))
            return
        if header & 0x40:
            tag = header & 0x3F
            body, offset = _read_new_format_body(data, offset)
        else:
            tag = (header >> 2) & 0x0F
            length_type = header & 0x03
            if length_type == 3:
                body, offset = data[offset:], size
            else:
                width = (1, 2, 4)[length_type]
                if offset + width > size:
                    raise PacketError("a packet header is truncated")
                length = int.from_bytes(data[offset : offset + width], "big")
                offset += width
                if offset + length > size:
                    raise PacketError(f"a packet with tag {tag} is truncated")
                body = data[offset : offset + length]
                offset += length
        if tag == 0:
            raise PacketError("a packet has the reserved tag 0")
        yield RawPacket(tag, bytes(body))


def _body_start(data: bytes, offset: int) -> int:
    """Return where the body of a new-format packet starts, given its length offset."""
    if offset >= len(data):
        raise PacketError("a packet length is truncated")
    first = data[offset]
    if first < 192 or 224 <= first < 255:
        return offset + 1
    return offset + (2 if first < 224 else 5)


def _read_new_format_body(data: bytes, offset: int) -> tuple[bytes, int]:
    chunks = []
    size = len(data)
    while True:
        if offset >= size:
            raise PacketError("a packet length is truncated")
        first = data[offset]
        if first < 192:
            length, offset, partial = first, offset + 1, False
        elif first < 224:
            if offset + 2 > size:
                raise PacketError("a packet length is truncated")
            length = ((first - 192) << 8) + data[offset + 1] + 192
            offset, partial = offset + 2, False
        elif first == 255:
            if offset + 5 > size:
                raise PacketError("a packet length is truncated")
            length = int.from_bytes(data[offset + 1 : offset + 5], "big")
            offset, partial = offset + 5, False
        else:
            length, offset, partial = 1 << (first & 0x1F), offset + 1, True
        if offset + length > size:
            raise PacketError("a packet body is truncated")
        chunks.append(data[offset : offset + length])
        offset += length
        if not partial:
            return b"".join(chunks), offset


def _mpi(body: bytes, offset: int) -> tuple[int, int]:
    """Return the bit length of the MPI at ``offset`` and the offset after it."""
    if offset + 2 > len(body):
        raise PacketError("a key packet is truncated")
    bits = int.from_bytes(body[offset : offset + 2], "big")
    end = offset + 2 + (bits + 7) // 8
    if end > len(body):
        raise PacketError("a key packet is truncated")
    return bits, end


@dataclass(frozen=True)
class KeyInfo:
    """The public parameters of a key packet."""

    version: int
    created: datetime
    algorithm_id: int
    bits: int | None
    curve: str | None
    fingerprint: str  # lowercase hex; empty for v3 keys
    key_id: str  # lowercase hex
    secret: bool
    public_body: bytes

    @property
    def algorithm(self) -> str:
        """The algorithm in GnuPG's notation: rsa4096, ed25519, cv25519, nistp256, ..."""
        if self.curve:
            return self.curve
        if self.algorithm_id in RSA_ALGORITHMS:
            return f"rsa{self.bits}"
        if self.algorithm_id == 17:
            return f"dsa{self.bits}"
        if self.algorithm_id in ELGAMAL_ALGORITHMS:
            return f"elg{self.bits}"
        return PUBLIC_KEY_ALGORITHMS.get(self.algorithm_id, f"algorithm {self.algorithm_id}")

    @property
    def algorithm_name(self) -> str:
        """The OpenPGP name of the public-key algorithm (RSA, EdDSA, ECDH, ...)."""
        return PUBLIC_KEY_ALGORITHMS.get(self.algorithm_id, f"algorithm {self.algorithm_id}")

    @property
    def can_encrypt(self) -> bool:
        return self.algorithm_id in ENCRYPTION_ALGORITHMS


def parse_key(packet: RawPacket) -> KeyInfo:
    """Read a public or secret key packet; raises :class:`PacketError` when malformed."""
    body = packet.body
    if len(body) < 6:
        raise PacketError("a key packet is truncated")
    version = body[0]
    secret = packet.tag in SECRET_TAGS
    created = datetime.fromtimestamp(int.from_bytes(body[1:5], "big"), timezone.utc)
    if version in (2, 3):
        algorithm = body[7]
        bits, end = _mpi(body, 8)
        _, end = _mpi(body, end)
        key_id = body[8 + 2 + (bits + 7) // 8 - 8 : 8 + 2 + (bits + 7) // 8].hex()
        return KeyInfo(version, created, algorithm, bits, None, "", key_id, secret, body[:end])
    if version == 4:
        algorithm = body[5]
        end, bits, curve = _key_material(body, 6, algorithm)
        public = body[:end]
        digest = hashlib.sha1(b"\x99" + len(public).to_bytes(2, "big") + public).hexdigest()
        return KeyInfo(version, created, algorithm, bits, curve, digest, digest[-16:], secret, public)
    if version == 6:
        algorithm = body[5]
        if len(body) < 10:
            raise PacketError("a key packet is truncated")
        material_length = int.from_bytes(body[6:10], "big")
        end, bits, curve = _key_material(body, 10, algorithm)
        if end != 10 + material_length:
            raise PacketError("a v6 key packet has an inconsistent key material length")
        public = body[:end]
        digest = hashlib.sha256(b"\x9b" + len(public).to_bytes(4, "big") + public).hexdigest()
        return KeyInfo(version, created, algorithm, bits, curve, digest, digest[:16], secret, public)
    raise PacketError(f"key packet version {version} is not supported")


def _key_material(body: bytes, offset: int, algorithm: int) -> tuple[int, int | None, str | None]:
    """Return the end offset of the public key material, its size in bits and its curve."""
    if algorithm in RSA_ALGORITHMS:
        bits, offset = _mpi(body, offset)
        _, offset = _mpi(body, offset)
        return offset, bits, None
    if algorithm == 17:
        bits, offset = _mpi(body, offset)
        for _ in range(3):
            _, offset = _mpi(body, offset)
        return offset, bits, None
    if algorithm in ELGAMAL_ALGORITHMS:
        bits, offset = _mpi(body, offset)
        for _ in range(2):
            _, offset = _mpi(body, offset)
        return offset, bits, None
    if algorithm in (18, 19, 22):
        if offset >= len(body):
            raise PacketError("a key packet is truncated")
        oid_length = body[offset]
        oid = body[offset + 1 : offset + 1 + oid_length]
        offset += 1 + oid_length
        _, offset = _mpi(body, offset)
        if algorithm == 18:
            if offset >= len(body):
                raise PacketError("a key packet is truncated")
            offset += 1 + body[offset]
        curve = CURVES.get(oid, f"curve {oid.hex()}")
        return offset, CURVE_BITS.get(curve), curve
    if algorithm in NATIVE_KEYS:
        name, length, bits = NATIVE_KEYS[algorithm]
        if offset + length > len(body):
            raise PacketError("a key packet is truncated")
        return offset + length, bits, name
    # Unknown algorithms: the rest of a public key packet is its material.
    return len(body), None, None


@dataclass(frozen=True)
class Subpacket:
    type: int
    critical: bool
    data: bytes


@dataclass(frozen=True)
class SignatureInfo:
    """The fields of a signature packet that policy checks need."""

    version: int
    type: int
    algorithm_id: int
    hash_id: int
    hashed: tuple[Subpacket, ...] = ()
    unhashed: tuple[Subpacket, ...] = ()
    v3_created: datetime | None = None
    v3_issuer: str | None = None

    def _first(self, subpacket_type: int, *, unhashed: bool = False) -> bytes | None:
        for subpacket in self.hashed:
            if subpacket.type == subpacket_type:
                return subpacket.data
        if unhashed:
            for subpacket in self.unhashed:
                if subpacket.type == subpacket_type:
                    return subpacket.data
        return None

    @property
    def hash_algorithm(self) -> str:
        return HASH_ALGORITHMS.get(self.hash_id, f"hash {self.hash_id}")

    @property
    def weak_hash(self) -> bool:
        return self.hash_id in WEAK_HASHES

    @property
    def created(self) -> datetime | None:
        if self.v3_created is not None:
            return self.v3_created
        data = self._first(2)
        if data is None or len(data) != 4:
            return None
        return datetime.fromtimestamp(int.from_bytes(data, "big"), timezone.utc)

    @property
    def expiration(self) -> datetime | None:
        """When the signature itself expires (subpacket 3)."""
        data = self._first(3)
        created = self.created
        if data is None or created is None or len(data) != 4:
            return None
        seconds = int.from_bytes(data, "big")
        return created + timedelta(seconds=seconds) if seconds else None

    @property
    def key_validity(self) -> timedelta | None:
        """The key expiration time (subpacket 9), relative to key creation; None: never."""
        data = self._first(9)
        if data is None or len(data) != 4:
            return None
        seconds = int.from_bytes(data, "big")
        return timedelta(seconds=seconds) if seconds else None

    @property
    def key_flags(self) -> int | None:
        data = self._first(27)
        return data[0] if data else None

    @property
    def features(self) -> int | None:
        data = self._first(30)
        return data[0] if data else None

    @property
    def preferred_hashes(self) -> list[int]:
        return list(self._first(21) or b"")

    @property
    def preferred_symmetric(self) -> list[int]:
        return list(self._first(11) or b"")

    @property
    def primary_user_id(self) -> bool:
        data = self._first(25)
        return bool(data and data[0])

    @property
    def issuer_fingerprint(self) -> str | None:
        data = self._first(33, unhashed=True)
        return data[1:].hex() if data and len(data) > 1 else None

    @property
    def issuer_key_id(self) -> str | None:
        if self.v3_issuer:
            return self.v3_issuer
        data = self._first(16, unhashed=True)
        if data and len(data) == 8:
            return data.hex()
        fingerprint = self.issuer_fingerprint
        if fingerprint:
            return fingerprint[:16] if len(fingerprint) == 64 else fingerprint[-16:]
        return None

    @property
    def revocation_reason(self) -> tuple[int, str] | None:
        data = self._first(29)
        if not data:
            return None
        return data[0], data[1:].decode("utf-8", "replace")

    def issued_by(self, key: KeyInfo) -> bool:
        """Check whether the issuer subpackets name ``key``, without a cryptographic check."""
        fingerprint = self.issuer_fingerprint
        if fingerprint is not None:
            return fingerprint == key.fingerprint
        key_id = self.issuer_key_id
        return key_id is None or key_id == key.key_id


def _subpackets(area: bytes) -> tuple[Subpacket, ...]:
    result = []
    offset = 0
    while offset < len(area):
        first = area[offset]
        if first < 192:
            length, offset = first, offset + 1
        elif first < 255:
            if offset + 2 > len(area):
                raise PacketError("a signature subpacket is truncated")
            length = ((first - 192) << 8) + area[offset + 1] + 192
            offset += 2
        else:
            if offset + 5 > len(area):
                raise PacketError("a signature subpacket is truncated")
            length = int.from_bytes(area[offset + 1 : offset + 5], "big")
            offset += 5
        if length == 0 or offset + length > len(area):
            raise PacketError("a signature subpacket is truncated")
        kind = area[offset]
        result.append(Subpacket(kind & 0x7F, bool(kind & 0x80), area[offset + 1 : offset + length]))
        offset += length
    return tuple(result)


def parse_signature(packet: RawPacket) -> SignatureInfo:
    """Read a signature packet; raises :class:`PacketError` when malformed."""
    body = packet.body
    if len(body) < 4:
        raise PacketError("a signature packet is truncated")
    version = body[0]
    if version == 3:
        if len(body) < 19:
            raise PacketError("a signature packet is truncated")
        created = datetime.fromtimestamp(int.from_bytes(body[3:7], "big"), timezone.utc)
        return SignatureInfo(3, body[2], body[15], body[16], v3_created=created, v3_issuer=body[7:15].hex())
    if version in (4, 5, 6):
        width = 4 if version == 6 else 2
        offset = 4
        hashed_length = int.from_bytes(body[offset : offset + width], "big")
        offset += width
        hashed = body[offset : offset + hashed_length]
        offset += hashed_length
        unhashed_length = int.from_bytes(body[offset : offset + width], "big")
        offset += width
        unhashed = body[offset : offset + unhashed_length]
        if offset + unhashed_length > len(body) or len(hashed) != hashed_length:
            raise PacketError("a signature packet is truncated")
        return SignatureInfo(
            version, body[1], body[2], body[3], _subpackets(hashed), _subpackets(unhashed)
        )
    raise PacketError(f"signature packet version {version} is not supported")


@dataclass(frozen=True)
class SessionKeyRecipient:
    """One public-key encrypted session key packet (PKESK)."""

    version: int
    key_id: str | None  # None: the recipient is hidden (wildcard key ID)
    fingerprint: str | None = None


def parse_pkesk(packet: RawPacket) -> SessionKeyRecipient:
    body = packet.body
    if not body:
        raise PacketError("a session key packet is empty")
    version = body[0]
    if version == 3:
        if len(body) < 10:
            raise PacketError("a session key packet is truncated")
        key_id = body[1:9].hex()
        return SessionKeyRecipient(3, None if key_id == "0" * 16 else key_id)
    if version == 6:
        length = body[1] if len(body) > 1 else 0
        if length == 0:
            return SessionKeyRecipient(6, None)
        key_version = body[2]
        fingerprint = body[3 : 2 + length].hex()
        key_id = fingerprint[:16] if key_version == 6 else fingerprint[-16:]
        return SessionKeyRecipient(6, key_id, fingerprint)
    raise PacketError(f"session key packet version {version} is not supported")


@dataclass
class MessageOutline:
    """The outer packets of an OpenPGP message, as read before decryption."""

    recipients: list[SessionKeyRecipient] = field(default_factory=list)
    passwords: int = 0
    encrypted_tag: int | None = None
    encrypted_version: int | None = None

    @property
    def integrity_protected(self) -> bool:
        return self.encrypted_tag in (TAG_SEIPD, TAG_AEAD)


def outline_message(data: bytes) -> MessageOutline:
    """Read the session key packets and the kind of encrypted data packet.

    ``data`` is binary or armored. Of armored data only the first block is
    read, and only as much of it as the outline needs; its checksum is not
    checked.
    """
    if not looks_armored(data):
        return _outline(data)
    block = next(_armor_blocks(data), None)
    if block is None:
        raise PacketError("the ASCII armor has a BEGIN line but no matching END line")
    label, body = block
    size = 8192
    while True:
        whole = size >= len(body)
        payload, _ = _armor_payload(body if whole else body[:size])
        if not whole:
            payload = payload[: len(payload) - len(payload) % 4]
        try:
            outline = _outline(base64.b64decode(payload, validate=True))
        except (PacketError, binascii.Error, ValueError) as exc:
            if whole:
                if isinstance(exc, PacketError):
                    raise
                raise PacketError(f"the ASCII armor of the {label} is damaged ({exc})") from exc
        else:
            if whole or outline.encrypted_tag is not None:
                return outline
        size *= 8


def _outline(binary: bytes) -> MessageOutline:
    outline = MessageOutline()
    encrypted_tags = frozenset({TAG_SED, TAG_SEIPD, TAG_AEAD})
    for packet in iter_packets(binary, head_only=encrypted_tags):
        if packet.tag == TAG_PKESK:
            outline.recipients.append(parse_pkesk(packet))
        elif packet.tag == TAG_SKESK:
            outline.passwords += 1
        elif packet.tag in encrypted_tags:
            outline.encrypted_tag = packet.tag
            outline.encrypted_version = packet.body[0] if packet.tag != TAG_SED and packet.body else None
            break
        elif packet.tag in (TAG_MARKER, TAG_PADDING):
            continue
        else:
            break
    return outline


def count_encrypted_messages(binary: bytes) -> int:
    """Return how many encrypted data packets follow one another at the top level of ``binary``.

    One OpenPGP message contains one, so a larger count means that several
    messages were concatenated. Counting stops at the first damaged packet.
    Every packet body is copied, so this is meant for messages that have
    already failed to decrypt.
    """
    count = 0
    try:
        for packet in iter_packets(binary):
            if packet.tag in (TAG_SED, TAG_SEIPD, TAG_AEAD):
                count += 1
    except PacketError:
        pass
    return count


def decompress(packet: RawPacket, *, max_size: int) -> bytes:
    """Return the contents of a compressed data packet, at most ``max_size`` bytes."""
    if not packet.body:
        raise PacketError("a compressed data packet is empty")
    algorithm, payload = packet.body[0], packet.body[1:]
    if algorithm == 0:
        return payload[:max_size]
    if algorithm == 1:
        inflater = zlib.decompressobj(-15)
    elif algorithm == 2:
        inflater = zlib.decompressobj()
    elif algorithm == 3:
        try:
            return bz2.BZ2Decompressor().decompress(payload, max_size)
        except (OSError, ValueError) as exc:
            raise PacketError(f"a BZip2 compressed packet is damaged ({exc})") from exc
    else:
        raise PacketError(f"compression algorithm {algorithm} is not supported")
    try:
        return inflater.decompress(payload, max_size)
    except zlib.error as exc:
        raise PacketError(f"a compressed packet is damaged ({exc})") from exc
