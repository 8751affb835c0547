"""The lifecycle of contact keys after they were confirmed.

- :func:`refresh_key` takes a newer copy of a contact's active key (new
  expiry, new subkey, revocation) and applies it without a new confirmation
  round when the fingerprint is unchanged, because the customer already
  proved they hold that key. A different fingerprint always needs the
  portal's confirmation.
- :func:`revalidate_keys` re-checks every active key with the intake rules
  and marks keys that expired or were revoked as unusable, so the outbox
  keeps new mail for them until a usable key is confirmed.
- :func:`send_expiry_warnings` warns contacts ``SEALMAIL_KEY_WARNING_DAYS``
  before their key stops being usable.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pysequoia
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import check_certificate as _check_certificate
from sealmail.notifications import mail
from sealmail.notifications.models import KeyEvent, KeyExpiryWarning

logger = logging.getLogger(__name__)

# Reasons for which a confirmed key stops being usable; any other rejection
# of a refreshed copy is an input error and changes nothing.
UNUSABLE_REASONS = frozenset({"expired", "revoked", "no_encryption_key"})

MAX_CERT_BYTES = 1024 * 1024


class RefreshStatus(enum.StrEnum):
    REFRESHED = "refreshed"
    UNCHANGED = "unchanged"
    UNUSABLE = "unusable"
    NEEDS_CONFIRMATION = "needs_confirmation"


@dataclass(frozen=True)
class RefreshResult:
    """The outcome of :func:`refresh_key`, with a sentence for the customer."""

    status: RefreshStatus
    fingerprint: str
    message: str
    key: ContactKey | None = None


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def format_fingerprint(fingerprint: str) -> str:
    """Format a fingerprint in upper-case groups of four, as the portal shows it."""
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def _parse_one(data: bytes, now: datetime) -> pysequoia.Cert:
    """Parse exactly one public certificate, raising the intake's KeyRejected."""
    if len(data) > MAX_CERT_BYTES:
        raise KeyRejected(
            "too_large", "The key is larger than 1 MB; export only the public key."
        )
    try:
        certs = pysequoia.Cert.split_bytes(data)
    except Exception as exc:  # pysequoia raises plain Exception
        raise KeyRejected(
            "malformed", f"This is not an OpenPGP public key: {exc}."
        ) from exc
    if len(certs) != 1 or certs[0].has_secret_keys:
        # The intake check words these cases (none, several, secret key).
        _check_certificate(data, now=now)
        raise KeyRejected("malformed", "Paste exactly one OpenPGP public key.")
    return certs[0]


def refresh_key(
    contact: Contact,
    data: bytes | str,
    *,
    source: str = "upload",
    now: datetime | None = None,
    notify: bool = True,
) -> RefreshResult:
    """Apply a newer copy of ``contact``'s active key and tell the contact.

    The copy is merged into the stored certificate, so an old copy can never
    roll back a newer expiry or hide a revocation. Returns
    ``NEEDS_CONFIRMATION`` without changing anything when the contact has no
    confirmed key or the fingerprint differs: the caller then starts the
    confirmation round. Raises :class:`KeyRejected` for input the intake
    would reject (malformed, secret key, several keys, weak algorithms).
    """
    now = _now(now)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    new = _parse_one(raw, now)
    fingerprint = new.fingerprint.lower()
    with transaction.atomic():
        contact = Contact.objects.select_for_update().get(pk=contact.pk)
        key = contact.active_key
        confirmed = contact.encryption in {
            Contact.Encryption.ACTIVE,
            Contact.Encryption.KEY_PROBLEM,
        }
        if key is None or not confirmed or key.fingerprint.lower() != fingerprint:
            return RefreshResult(
                RefreshStatus.NEEDS_CONFIRMATION,
                fingerprint,
                f"The key {format_fingerprint(fingerprint)} is not the confirmed key of "
                f"{contact.address}; it needs a confirmation by encrypted mail "
                "before we use it.",
            )
        stored = pysequoia.Cert.from_bytes(bytes(key.certificate))
        merged = bytes(stored.merge(new))
        try:
            report = _check_certificate(merged, now=now)
        except KeyRejected as exc:
            if exc.reason not in UNUSABLE_REASONS:
                raise
            changed = _mark_unusable(contact, key, exc.reason, source, now, merged)
            if changed and notify:
                _send_unusable_notice(contact, exc.reason, now)
            return RefreshResult(RefreshStatus.UNUSABLE, fingerprint, exc.message, key)
        if bytes(report.certificate) == bytes(key.certificate) and not key.problem:
            key.last_checked = now
            key.save(update_fields=["last_checked"])
            if source != "wkd":  # a daily lookup that finds nothing new is not news
                _log_event(contact, key, KeyEvent.Kind.UNCHANGED, source, "", now)
            return RefreshResult(
                RefreshStatus.UNCHANGED,
                fingerprint,
                "This copy of your key contains nothing new; nothing changed.",
                key,
            )
        previous_until = key.usable_until
        key.certificate = bytes(report.certificate)
        key.usable_until = report.usable_until
        key.user_ids = list(report.user_ids)
        key.last_checked = now
        key.problem = ""
        key.refresh_send_check()
        key.save(
            update_fields=[
                "certificate",
                "usable_until",
                "user_ids",
                "last_checked",
                "problem",
                "send_check",
            ]
        )
        reactivated = contact.encryption == Contact.Encryption.KEY_PROBLEM
        if reactivated:
            contact.encryption = Contact.Encryption.ACTIVE
            contact.save(update_fields=["encryption", "updated"])
        event = _log_event(contact, key, KeyEvent.Kind.REFRESHED, source, "", now)
        if notify:
            _send_refreshed_notice(contact, key, previous_until, source, event)
        if reactivated:
            transaction.on_commit(lambda: _release_held(contact))
    logger.info("refreshed key of contact %d from %s", contact.pk, source)
    until = (
        f"usable until {mail.format_time(key.usable_until)}"
        if key.usable_until
        else "usable without an expiry date"
    )
    return RefreshResult(
        RefreshStatus.REFRESHED,
        fingerprint,
        f"Your key {format_fingerprint(fingerprint)} was updated and is {until}. No "
        "confirmation was needed because the fingerprint is unchanged.",
        key,
    )


def _release_held(contact: Contact) -> None:
    from sealmail.outbox.service import release_held

    release_held(contact)


def _log_event(
    contact: Contact,
    key: ContactKey | None,
    kind: str,
    source: str,
    detail: str,
    now: datetime,
) -> KeyEvent:
    return KeyEvent.objects.create(
        contact=contact, key=key, kind=kind, source=source, detail=detail, created=now
    )


def _mark_unusable(
    contact: Contact,
    key: ContactKey,
    reason: str,
    source: str,
    now: datetime,
    certificate: bytes | None = None,
) -> bool:
    """Record that ``key`` is unusable; return whether this is news."""
    changed = key.problem != reason
    key.problem = reason
    key.last_checked = now
    fields = ["problem", "last_checked"]
    if certificate is not None:
        key.certificate = certificate
        fields.append("certificate")
    key.save(update_fields=fields)
    if (
        contact.active_key_id == key.pk
        and contact.encryption == Contact.Encryption.ACTIVE
    ):
        contact.encryption = Contact.Encryption.KEY_PROBLEM
        contact.save(update_fields=["encryption", "updated"])
        changed = True
    if changed:
        _log_event(contact, key, KeyEvent.Kind.UNUSABLE, source, reason, now)
        logger.warning(
            "key %d of contact %d is unusable (%s); new mail is held",
            key.pk,
            contact.pk,
            reason,
        )
    return changed


def _portal_url(contact: Contact) -> str:
    from sealmail.outbox.delivery import key_update_url

    return key_update_url(contact)


def _send_refreshed_notice(
    contact: Contact,
    key: ContactKey,
    previous_until: datetime | None,
    source: str,
    event: KeyEvent,
) -> None:
    text = mail.render_text(
        "key_refreshed.txt",
        {
            "contact": contact,
            "fingerprint": format_fingerprint(key.fingerprint),
            "usable_until": mail.format_time(key.usable_until)
            if key.usable_until
            else "",
            "previous_until": mail.format_time(previous_until)
            if previous_until
            else "",
            "from_wkd": source == "wkd",
            "portal_url": _portal_url(contact),
        },
    )
    mail.send(
        [contact],
        category="account_notice",
        subject="Your OpenPGP key was updated",
        text=text,
        idempotency_key=f"key-refreshed:{event.pk}",
    )


def _send_unusable_notice(contact: Contact, reason: str, now: datetime) -> None:
    """Queue the outbox's content-free notice that the key stopped working.

    The outbox sends it unencrypted, because the key is unusable, and at
    most once a day per contact.
    """
    from sealmail.outbox.delivery import notify_key_problem

    notify_key_problem(contact, reason, now)


def active_keys() -> Iterable[tuple[Contact, ContactKey]]:
    """Yield every contact whose mail is encrypted, with its active key."""
    contacts = (
        Contact.objects.filter(
            encryption__in=[Contact.Encryption.ACTIVE, Contact.Encryption.KEY_PROBLEM],
            active_key__isnull=False,
        )
        .select_related("active_key", "customer")
        .order_by("id")
    )
    for contact in contacts.iterator(chunk_size=500):
        yield contact, contact.active_key


@dataclass
class RevalidationResult:
    checked: int = 0
    unusable: int = 0


def revalidate_keys(*, now: datetime | None = None) -> RevalidationResult:
    """Check every active key with the intake rules as of ``now``.

    Every key that the intake would now reject (expired, revoked, or caught
    by a policy that became stricter) is marked with the reason, and its
    contact is notified once, because mail must not be encrypted to it.
    """
    now = _now(now)
    result = RevalidationResult()
    for contact, key in active_keys():
        result.checked += 1
        try:
            report = _check_certificate(bytes(key.certificate), now=now)
        except KeyRejected as exc:
            with transaction.atomic():
                changed = _mark_unusable(contact, key, exc.reason, "daily check", now)
                if changed:
                    _send_unusable_notice(contact, exc.reason, now)
            result.unusable += 1
            continue
        ContactKey.objects.filter(pk=key.pk).update(
            last_checked=now, usable_until=report.usable_until
        )
    logger.info("re-validated %d key(s), %d unusable", result.checked, result.unusable)
    return result


def send_expiry_warnings(*, now: datetime | None = None) -> int:
    """Warn contacts whose key stops being usable within a warning threshold.

    A contact gets the warning of the nearest threshold it has reached and
    not been warned for, so a job that did not run for some days sends one
    warning, not several. Returns how many warnings were sent.
    """
    now = _now(now)
    thresholds = sorted(settings.SEALMAIL_KEY_WARNING_DAYS)
    horizon = now + timedelta(days=max(thresholds))
    sent = 0
    candidates = (
        Contact.objects.filter(
            encryption=Contact.Encryption.ACTIVE,
            active_key__usable_until__isnull=False,
            active_key__usable_until__gt=now,
            active_key__usable_until__lte=horizon,
        )
        .select_related("active_key", "customer")
        .order_by("id")
    )
    for contact in candidates.iterator(chunk_size=500):
        key = contact.active_key
        left = key.usable_until - now
        reached = {days for days in thresholds if left <= timedelta(days=days)}
        reached -= set(
            KeyExpiryWarning.objects.filter(
                key=key, usable_until=key.usable_until
            ).values_list("days_before", flat=True)
        )
        if not reached:
            continue
        days = min(reached)
        try:
            with transaction.atomic():
                # Record every threshold reached so far, so a missed day does
                # not send an older, less urgent warning later. A concurrent
                # run that recorded one first makes this one roll back.
                for threshold in sorted(reached):
                    KeyExpiryWarning.objects.create(
                        key=key,
                        contact=contact,
                        usable_until=key.usable_until,
                        days_before=threshold,
                        sent=now,
                    )
                _send_expiry_warning(contact, key, days, left)
        except IntegrityError:
            continue  # already warned for this threshold
        sent += 1
    if sent:
        logger.info("sent %d key expiry warning(s)", sent)
    return sent


def _send_expiry_warning(
    contact: Contact, key: ContactKey, days: int, left: timedelta
) -> None:
    days_left = max(1, round(left / timedelta(days=1)))
    text = mail.render_text(
        "key_expiry.txt",
        {
            "contact": contact,
            "fingerprint": format_fingerprint(key.fingerprint),
            "fingerprint_plain": key.fingerprint.upper(),
            "usable_until": mail.format_time(key.usable_until),
            "days_left": days_left,
            "portal_url": _portal_url(contact),
        },
    )
    plural = "s" if days_left != 1 else ""
    mail.send(
        [contact],
        category="key_expiry",
        subject=f"Your OpenPGP key stops working in {days_left} day{plural}",
        text=text,
        idempotency_key=f"key-expiry:{key.pk}:{key.usable_until:%Y%m%d%H%M%S}:{days}",
    )


def run_daily_check(*, now: datetime | None = None) -> None:
    """Run the daily key job: WKD refresh for opted-in contacts, then checks, then warnings.

    The WKD refresh runs first so a contact who extended the key in its WKD
    is not warned about the old expiry.
    """
    from sealmail.notifications import wkd_refresh

    now = _now(now)
    logger.info("daily key check started")
    wkd_refresh.refresh_from_wkd(now=now)
    revalidate_keys(now=now)
    send_expiry_warnings(now=now)
    logger.info("daily key check finished")
