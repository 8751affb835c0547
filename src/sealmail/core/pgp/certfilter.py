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
    SIG_CERTIFICATION_REVOCATION,
    SIG_CERTIFICATIONS,
    TAG_MARKER,
    TAG_PADDING,
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ID,
    KeyInfo,
    PacketError,
    RawPacket,
    iter_packets,
    parse_key,
    parse_signature,
)

# Bounds the size of the copy, in packets. A provider key has fewer than ten
# packets of its own. The limit applies after filtering, so third-party
# certifications that a caller drops do not count towards it.
MAX_PACKETS = 10_000
# Packets that belong to no component and that no consumer of a certificate
# needs. They are left out wherever they occur.
NOISE_TAGS = frozenset({TAG_MARKER, TAG_PADDING, TAG_TRUST})
# Signatures by which a key vouches for another key's user ID, or withdraws that.
_USER_ID_CERTIFICATIONS = frozenset({*SIG_CERTIFICATIONS, SIG_CERTIFICATION_REVOCATION})


def keep_user_ids(
    certificate: bytes,
    keep: Callable[[str], bool],
    *,
    third_party_certifications: bool = True,
) -> bytes:
    """Return ``certificate`` with only the user IDs for which ``keep`` returns True.

    The primary key, every subkey and their signatures (including
    revocations and direct-key signatures) stay. Dropped user IDs take their
    certifications and revocations with them. User attributes (photo IDs)
    are always dropped, because they name no address. ``keep`` gets each
    user ID decoded as UTF-8, with invalid bytes replaced.

    With ``third_party_certifications=False``, the certifications of kept
    user IDs by other keys, and their revocations, are dropped as well. The
    user ID self-signatures and self-revocations stay. A certification
    whose issuer is not named, or that cannot be parsed, is kept.

    ``certificate`` is one binary public certificate. Raises
    :class:`PacketError` for malformed input, for secret key material, when
    the copy would have more than :data:`MAX_PACKETS` packets and when no
    user ID is kept, because OpenPGP implementations such as GnuPG reject a
    certificate without user IDs.
    """
    packets = iter_packets(certificate)
    first = next(packets, None)
    if first is not None and first.tag in SECRET_TAGS:
        raise PacketError("the certificate contains secret key material")
    if first is None or first.tag != TAG_PUBLIC_KEY:
        raise PacketError("the data does not start with a public key packet")
    primary = None if third_party_certifications else parse_key(first)
    selected: list[RawPacket] = [first]
    keeping = True
    in_user_id = False
    user_ids = 0
    for packet in packets:
        if packet.tag in SECRET_TAGS:
            raise PacketError("the certificate contains secret key material")
        if packet.tag == TAG_PUBLIC_KEY:
            raise PacketError("the data contains more than one certificate")
        if packet.tag == TAG_PUBLIC_SUBKEY:
            keeping, in_user_id = True, False
        elif packet.tag == TAG_USER_ID:
            keeping = keep(packet.body.decode("utf-8", "replace"))
            in_user_id = True
            if keeping:
                user_ids += 1
        elif packet.tag in NOISE_TAGS:
            continue
        elif packet.tag != TAG_SIGNATURE:
            # User attributes and unknown components, with their signatures.
            keeping, in_user_id = False, False
        elif (
            keeping
            and in_user_id
            and primary is not None
            and _certifies_for_another_key(packet, primary)
        ):
            continue
        if keeping:
            if len(selected) >= MAX_PACKETS:
                raise PacketError(
                    f"the copy of the certificate would have more than "
                    f"{MAX_PACKETS} packets"
                )
            selected.append(packet)
    if not user_ids:
        raise PacketError("no user ID of the certificate was selected")
    return b"".join(packet.serialize() for packet in selected)


def _certifies_for_another_key(signature: RawPacket, primary: KeyInfo) -> bool:
    """Return whether another key made ``signature``, a user ID certification.

    Certification revocations count as certifications.
    """
    try:
        info = parse_signature(signature)
    except PacketError:
        return False
    return info.type in _USER_ID_CERTIFICATIONS and not info.issued_by(primary)
