"""The OpenPGP layer as the inbound parser sees it: provider keys, customer certificates."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pysequoia
from django.conf import settings
from django.db.models import F, Q, QuerySet

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.mime.inbound import SequoiaOpenPGP
from sealmail.keys.store import get_keystore

logger = logging.getLogger(__name__)


def confirmed_keys() -> QuerySet[ContactKey]:
    """ContactKeys that are the active key of a contact with encryption turned on."""
    return ContactKey.objects.filter(
        contact__active_key_id=F("pk"),
        contact__encryption__in=[Contact.Encryption.ACTIVE, Contact.Encryption.KEY_PROBLEM],
    )


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
        query = Q()
        if self.sender_address:
            query |= Q(contact__address__iexact=self.sender_address)
        for key_id in key_ids:
            if key_id:
                query |= Q(fingerprint__iendswith=key_id.lower())
        if not query:
            return []
        rows = confirmed_keys().filter(query).values_list(
            "fingerprint", "certificate", "contact_id", "contact__customer_id"
        )[:50]
        certificates = {}
        for fingerprint, certificate, contact_id, customer_id in rows:
            parsed = _parse_certificate(bytes(certificate))
            if parsed is None:
                logger.warning("stored certificate %s cannot be parsed; skipped", fingerprint)
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
