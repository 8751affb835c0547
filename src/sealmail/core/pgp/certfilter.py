"""Copy a public certificate with only some of its user IDs.

A transferable public key (RFC 9580 section 10.1) is a sequence of
components: the primary key, then user IDs, user attributes and subkeys, each
followed by its signatures. Dropping a whole component with its signatures
leaves every other signature valid, because each signature covers only the
primary key and its own component. This module never creates or checks a
signature.
"""

from __future__ import annotations

from collections.abc import Callable

from sealmail.core.pgp.packets import (
    SECRET_TAGS,
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_MARKER,
    TAG_PADDING,
    TAG_TRUST,
    TAG_USER_ID,
    PacketError,
    RawPacket,
    read_packets,
)

# Bounds the work on malformed input. A provider key has fewer than ten packets.
MAX_PACKETS = 10_000
# Packets that belong to no component and that no consumer of a certificate
# needs. They are left out wherever they occur.
NOISE_TAGS = frozenset({TAG_MARKER, TAG_PADDING, TAG_TRUST})


def keep_user_ids(certificate: bytes, keep: Callable[[str], bool]) -> bytes:
    """Return ``certificate`` with only the user IDs for which ``keep`` returns True.

    The primary key, every subkey and their signatures (including
    revocations and direct-key signatures) stay. Dropped user IDs take their
    certifications and revocations with them. User attributes (photo IDs)
    are always dropped, because they name no address. ``keep`` gets each
    user ID decoded as UTF-8, with invalid bytes replaced.

    ``certificate`` is one binary public certificate. Raises
    :class:`PacketError` for malformed input, for secret key material and
    when no user ID is kept, because OpenPGP implementations such as GnuPG
    reject a certificate without user IDs.
    """
    packets = read_packets(certificate, max_packets=MAX_PACKETS)
    if any(packet.tag in SECRET_TAGS for packet in packets):
        raise PacketError("the certificate contains secret key material")
    if not packets or packets[0].tag != TAG_PUBLIC_KEY:
        raise PacketError("the data does not start with a public key packet")
    selected: list[RawPacket] = []
    keeping = True
    user_ids = 0
    for packet in packets:
        if packet.tag == TAG_PUBLIC_KEY and selected:
            raise PacketError("the data contains more than one certificate")
        if packet.tag in (TAG_PUBLIC_KEY, TAG_PUBLIC_SUBKEY):
            keeping = True
        elif packet.tag == TAG_USER_ID:
            keeping = keep(packet.body.decode("utf-8", "replace"))
            if keeping:
                user_ids += 1
        elif packet.tag in NOISE_TAGS:
            continue
        elif packet.tag != TAG_SIGNATURE:
            # User attributes and unknown components, with their signatures.
            keeping = False
        if keeping:
            selected.append(packet)
    if not user_ids:
        raise PacketError("no user ID of the certificate was selected")
    return b"".join(packet.serialize() for packet in selected)
