"""The OpenPGP layer for inbound mail: provider keys and customers' confirmed certificates."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pysequoia
from django.conf import settings

from sealmail.core.mime.inbound import SequoiaOpenPGP
from sealmail.core.mime.inbound.parse import Limits
from sealmail.inbound.lookups import confirmed_key_rows
from sealmail.keys.store import get_keystore

logger = logging.getLogger(__name__)


class CertificateLookup:
    """Return the confirmed certificates that may have made a signature.

    A signature names its issuer by key id or fingerprint, often of a
    signing subkey that sealmail does not index. So the lookup offers the
    confirmed keys of the sender's address and any confirmed key whose
    primary fingerprint ends with an asked id; Sequoia then picks the key
    that really made the signature.
    """

    def __init__(self, sender_address: str = "") -> None:
        self.sender_address = sender_address.lower()
        # Every key offered so far: fingerprint -> (contact id, customer id).
        self.offered: dict[str, tuple[int, int]] = {}

    def __call__(self, key_ids: list[str]) -> list[Any]:
        ids = [key_id.lower() for key_id in key_ids if key_id]
        fingerprints = [key_id for key_id in ids if len(key_id) >= 40]
        suffixes = [key_id for key_id in ids if len(key_id) < 40]
        rows = confirmed_key_rows(self.sender_address, fingerprints, suffixes)
        certificates = {}
        for fingerprint, certificate, contact_id, customer_id in rows:
            parsed = _parse_certificate(certificate)
            if parsed is None:
                logger.warning(
                    "stored certificate %s cannot be parsed; skipped", fingerprint
                )
                continue
            certificates[fingerprint.lower()] = parsed
            self.offered[fingerprint.lower()] = (contact_id, customer_id)
        return list(certificates.values())


@functools.lru_cache(maxsize=1024)
def _parse_certificate(data: bytes) -> Any:
    """Parse a stored certificate once per process; the bytes are the cache key."""
    try:
        return pysequoia.Cert.from_bytes(data)
    except Exception:  # pysequoia raises plain Exception
        return None


def openpgp_for(lookup: CertificateLookup) -> SequoiaOpenPGP:
    """Return the OpenPGP layer for one message, offering certificates from ``lookup``."""
    return SequoiaOpenPGP(
        get_keystore(),
        lookup,
        max_plaintext_bytes=settings.SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES,
    )


def parse_limits() -> Limits:
    """Return the parser's limits, with the plaintext limit from the settings."""
    return Limits(max_plaintext_bytes=settings.SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES)
