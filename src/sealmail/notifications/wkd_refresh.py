"""Look for refreshed copies of contact keys in the contacts' Web Key Directories.

Only contacts with ``wkd_refresh`` turned on are looked up. A copy with the
confirmed fingerprint is applied through :func:`keys.refresh_key`; a
different key is never used, and the contact is notified once per fingerprint
that it must be uploaded and confirmed in the portal.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.utils import timezone

from sealmail.contacts.models import Contact
from sealmail.core.errors import KeyRejected
from sealmail.keys.wkd import WkdClient, WkdError
from sealmail.notifications import keys, mail
from sealmail.notifications.models import KeyEvent

logger = logging.getLogger(__name__)


def client_from_settings() -> WkdClient:
    """Build the client from ``SEALMAIL_WKD_URLS`` and ``SEALMAIL_WKD_CA_FILE``."""
    context = ssl.create_default_context(cafile=settings.SEALMAIL_WKD_CA_FILE or None)
    return WkdClient(base_urls=settings.SEALMAIL_WKD_URLS, ssl_context=context)


@dataclass
class WkdRefreshResult:
    """Counts of one refresh run, by outcome (``refreshed``, ``failed`` and so on)."""

    looked_up: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return self.outcomes.get(outcome, 0)


def refresh_contact(
    contact: Contact, *, client: WkdClient, now: datetime | None = None
) -> str:
    """Look up ``contact``'s address by WKD and apply a copy of its active key.

    Returns the outcome: a :class:`keys.RefreshStatus` value when a copy of
    the confirmed key was found, ``other_fingerprint`` when only other keys
    are published, ``failed`` when the lookup failed and ``rejected`` when
    the copy failed the intake rules.
    """
    now = now or timezone.now()
    key = contact.active_key
    if key is None:
        return "no_key"
    try:
        certs = client.lookup(contact.address)
    except WkdError as exc:
        logger.info("WKD lookup for contact %d failed: %s", contact.pk, exc.reason)
        KeyEvent.objects.create(
            contact=contact,
            key=key,
            kind=KeyEvent.Kind.WKD_FAILED,
            source="wkd",
            detail=exc.reason,
            created=now,
        )
        return "failed"
    wanted = key.fingerprint.lower()
    for cert in certs:
        if cert.fingerprint.lower() == wanted:
            try:
                return str(
                    keys.refresh_key(contact, bytes(cert), source="wkd", now=now).status
                )
            except KeyRejected as exc:
                logger.warning(
                    "WKD copy of key %d of contact %d rejected: %s",
                    key.pk,
                    contact.pk,
                    exc.reason,
                )
                return "rejected"
    _tell_other_fingerprints(contact, [cert.fingerprint.lower() for cert in certs], now)
    return "other_fingerprint"


def _tell_other_fingerprints(
    contact: Contact, fingerprints: list[str], now: datetime
) -> None:
    told = set(
        KeyEvent.objects.filter(
            contact=contact, kind=KeyEvent.Kind.OTHER_FINGERPRINT
        ).values_list("detail", flat=True)
    )
    new = [fingerprint for fingerprint in fingerprints if fingerprint not in told]
    if not new:
        return
    for fingerprint in new:
        KeyEvent.objects.create(
            contact=contact,
            key=contact.active_key,
            kind=KeyEvent.Kind.OTHER_FINGERPRINT,
            source="wkd",
            detail=fingerprint,
            created=now,
        )
    logger.info(
        "WKD for contact %d publishes %d other key(s); not applied",
        contact.pk,
        len(new),
    )
    text = mail.render_text(
        "key_wkd_other.txt",
        {
            "fingerprints": [keys.format_fingerprint(fp) for fp in new],
            "active": keys.format_fingerprint(contact.active_key.fingerprint),
            "portal_url": keys._portal_url(contact),
        },
    )
    mail.send(
        [contact],
        category="account_notice",
        subject="Another OpenPGP key is published for your address",
        text=text,
        idempotency_key=f"key-wkd-other:{contact.pk}:{','.join(sorted(new))}"[:200],
    )


def refresh_from_wkd(
    *, now: datetime | None = None, client: WkdClient | None = None
) -> WkdRefreshResult:
    """Look up every opted-in contact with a confirmed key by WKD."""
    now = now or timezone.now()
    client = client or client_from_settings()
    result = WkdRefreshResult()
    contacts = (
        Contact.objects.filter(
            wkd_refresh=True,
            active_key__isnull=False,
            encryption__in=[Contact.Encryption.ACTIVE, Contact.Encryption.KEY_PROBLEM],
        )
        .select_related("active_key", "customer")
        .order_by("id")
    )
    for contact in contacts.iterator(chunk_size=200):
        result.looked_up += 1
        outcome = refresh_contact(contact, client=client, now=now)
        result.outcomes[outcome] = result.outcomes.get(outcome, 0) + 1
    logger.info(
        "WKD refresh of %d contact(s): %s",
        result.looked_up,
        ", ".join(f"{count} {name}" for name, count in sorted(result.outcomes.items()))
        or "nothing to do",
    )
    return result
