"""The OpenPGP layer as the inbound parser sees it: provider keys, customer certificates."""

from __future__ import annotations

import logging
from typing import Any

import pysequoia
from django.conf import settings
from django.db.models import F, QuerySet

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
        self._cache: dict[str, Any] = {}

    def __call__(self, key_ids: list[str]) -> list[Any]:
        ids = [key_id.lower() for key_id in key_ids if key_id]
        rows = list(
            confirmed_keys()
            .filter(contact__address__iexact=self.sender_address)
            .values_list("fingerprint", "certificate")
        ) if self.sender_address else []
        for key_id in ids:
            rows.extend(
                confirmed_keys()
                .filter(fingerprint__iendswith=key_id)
                .values_list("fingerprint", "certificate")
            )
        certificates = []
        for fingerprint, certificate in rows:
            fingerprint = fingerprint.lower()
            if fingerprint not in self._cache:
                try:
                    self._cache[fingerprint] = pysequoia.Cert.from_bytes(bytes(certificate))
                except Exception:  # pysequoia raises plain Exception
                    logger.warning("stored certificate %s cannot be parsed; skipped", fingerprint)
                    continue
            certificates.append(self._cache[fingerprint])
        return list({id(cert): cert for cert in certificates}.values())


def openpgp_for(sender_address: str = "") -> SequoiaOpenPGP:
    """Return the OpenPGP layer for one message from ``sender_address``."""
    return SequoiaOpenPGP(
        get_keystore(),
        CertificateLookup(sender_address),
        max_plaintext_bytes=settings.SEALMAIL_INBOUND_MAX_PLAINTEXT_BYTES,
    )
