"""The Autocrypt header that carries the provider's certificate.

Autocrypt Level 1 recommends a small ``keydata``. This one contains the
primary key, the user ID for the sender address with its self-signatures,
and every subkey with its binding signatures. The signing subkey stays
because receivers need it to check the provider's signatures. Third-party
certifications, other user IDs and user attributes are dropped.
"""

from __future__ import annotations

import base64
import functools

import pysequoia
from pysequoia.packet import Tag

from sealmail.core.errors import CompositionError
from sealmail.core.pgp.userid import user_id_address

_KEYDATA_LINE_LENGTH = 76
_CACHE_SIZE = 64
_by_object: dict[str, tuple[pysequoia.Cert, bytes]] = {}
_SECRET_TAGS = (Tag.SecretKey, Tag.SecretSubkey)


def autocrypt_header(addr: str, certificate: pysequoia.Cert) -> bytes:
    """Return the folded ``Autocrypt:`` header line for ``addr``."""
    addr = addr.lower()
    # The caller passes the same Cert object for every message, so the entry
    # keeps a reference to it and is reused while that object is passed.
    cached = _by_object.get(addr)
    if cached is not None and cached[0] is certificate:
        return cached[1]
    header = _autocrypt_header(addr, certificate.fingerprint, bytes(certificate))
    if len(_by_object) >= _CACHE_SIZE:
        _by_object.clear()
    _by_object[addr] = (certificate, header)
    return header


def minimal_certificate(certificate: pysequoia.Cert, addr: str) -> bytes:
    """Return the binary minimal certificate for ``addr`` (see the module text)."""
    primary_fingerprint = certificate.fingerprint.lower()
    addr = addr.lower()
    packets = list(pysequoia.packet.PacketPile.from_bytes(bytes(certificate)))
    if any(packet.tag in _SECRET_TAGS for packet in packets):
        raise CompositionError(
            f"the Autocrypt certificate {certificate.fingerprint} contains secret key "
            "material; pass the public certificate (Tsk.extract_certificate())"
        )

    # The user ID for addr, else the first one, decides which user ID survives.
    user_ids = [p.user_id for p in packets if p.tag == Tag.UserID]
    chosen = next(
        (
            uid
            for uid in user_ids
            if uid and (user_id_address(uid) or "").lower() == addr
        ),
        user_ids[0] if user_ids else None,
    )

    # Signatures follow the key, user ID or subkey they belong to.
    kept: list[pysequoia.packet.Packet] = []
    keep_section = True
    for packet in packets:
        tag = packet.tag
        if tag in (Tag.PublicKey, Tag.PublicSubkey):
            keep_section = True
        elif tag == Tag.UserID:
            keep_section = packet.user_id == chosen
        elif tag == Tag.UserAttribute:
            keep_section = False
        elif tag == Tag.Signature:
            issuer = (packet.issuer_fingerprint or "").lower()
            # Certifications by other keys are not self-signatures: drop them.
            if keep_section and issuer and issuer != primary_fingerprint:
                continue
        else:
            continue
        if keep_section:
            kept.append(packet)

    try:
        return bytes(pysequoia.Cert.from_packets(kept))
    except Exception as exc:  # pysequoia raises plain Exception
        raise CompositionError(
            f"cannot build the Autocrypt key data of {certificate.fingerprint}: {exc}"
        ) from exc


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _autocrypt_header(addr: str, fingerprint: str, certificate_bytes: bytes) -> bytes:
    certificate = pysequoia.Cert.from_bytes(certificate_bytes)
    keydata = base64.b64encode(minimal_certificate(certificate, addr)).decode("ascii")
    lines = [f"Autocrypt: addr={addr}; keydata="]
    lines += [
        " " + keydata[i : i + _KEYDATA_LINE_LENGTH]
        for i in range(0, len(keydata), _KEYDATA_LINE_LENGTH)
    ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")
