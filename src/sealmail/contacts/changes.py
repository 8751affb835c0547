"""Contact changes that need the customer's confirmation by mail.

A change (new address, new key, key removal) is stored as a
:class:`PendingChange`, and the contact keeps its current settings until someone
follows the mailed link and presses the confirm button. The mail goes to the
new address, encrypted to the new key when one is given. Removing encryption
is a downgrade, so that confirmation goes to the current address, encrypted
to the current key. After a change the previous contact gets a notice,
encrypted to the previous key where one was active.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from sealmail.contacts import mail, ratelimit
from sealmail.contacts.models import AuditEvent, Contact, ContactKey, PendingChange
from sealmail.contacts.tokens import hash_token, new_token, token_matches
from sealmail.core.pgp.inspect import KeyReport

logger = logging.getLogger(__name__)

RATE_WINDOW = timedelta(hours=1)


class ChangeError(Exception):
    """A change request or confirmation that cannot go ahead, with a message for the customer."""


class ChangeRejected(ChangeError):
    """The requested change is not allowed as asked."""


class RateLimited(ChangeError):
    """Too many change requests for this contact or from this client address."""


class ChangeNotFound(ChangeError):
    """No change matches the link: wrong id, wrong token or another contact's token."""


class ChangeClosed(ChangeError):
    """The change was already confirmed, cancelled, expired or replaced."""

    def __init__(self, message: str, state: str) -> None:
        super().__init__(message)
        self.state = state


@dataclass(frozen=True)
class Actor:
    """The user, API token or link holder behind an action, and its client address."""

    name: str
    client_address: str | None = None
    user_id: int | None = None
    # A calling system with an API token sends many customers' changes from
    # one address, so only the per-contact limit applies to it.
    api_client: bool = False


def audit(
    kind: str,
    contact: Contact,
    actor: Actor,
    change: PendingChange | None = None,
    **detail: object,
) -> AuditEvent:
    """Record one audit event for ``contact``."""
    return AuditEvent.objects.create(
        customer_id=contact.customer_id,
        contact=contact,
        change=change,
        kind=kind,
        actor=actor.name[:200],
        client_address=actor.client_address,
        detail=detail,
    )


def confirm_hours() -> int:
    return settings.SEALMAIL_CONFIRM_HOURS


def _check_rate(contact: Contact, actor: Actor) -> None:
    contact_bucket = f"change:contact:{contact.pk}"
    if ratelimit.exceeded(
        contact_bucket, settings.SEALMAIL_CHANGE_LIMIT_CONTACT, RATE_WINDOW
    ):
        raise RateLimited(
            f"This contact had {settings.SEALMAIL_CHANGE_LIMIT_CONTACT} change requests "
            "in the last hour. Wait an hour, or use the link in the last mail we sent."
        )
    client_bucket = None
    if actor.client_address and not actor.api_client:
        client_bucket = f"change:client:{actor.client_address}"
    if client_bucket and ratelimit.exceeded(
        client_bucket, settings.SEALMAIL_CHANGE_LIMIT_CLIENT, RATE_WINDOW
    ):
        raise RateLimited(
            f"Your network address made {settings.SEALMAIL_CHANGE_LIMIT_CLIENT} change "
            "requests in the last hour. Wait an hour and try again."
        )
    ratelimit.hit(contact_bucket, RATE_WINDOW)
    if client_bucket:
        ratelimit.hit(client_bucket, RATE_WINDOW)


def _store_key(contact: Contact, report: KeyReport) -> ContactKey:
    key = ContactKey(
        contact=contact,
        fingerprint=report.fingerprint.lower(),
        certificate=report.certificate,
        version=report.version,
        algorithm=report.algorithm[:64],
        user_ids=list(report.user_ids),
        key_created=report.created,
        usable_until=report.usable_until,
    )
    key.refresh_send_check()
    key.save()
    return key


def _validate(
    contact: Contact, address: str, report: KeyReport | None, remove_key: bool
) -> None:
    address_changed = address.lower() != contact.address.lower()
    if remove_key:
        if contact.active_key is None:
            raise ChangeRejected("This contact has no key to remove.")
        if report is not None:
            raise ChangeRejected(
                "Either remove the key or give a new one, not both in one change."
            )
        if address_changed:
            raise ChangeRejected(
                "Remove the key first and change the address in a second step: "
                "removing encryption is confirmed through the current address."
            )
        if contact.encryption == Contact.Encryption.KEY_PROBLEM:
            raise ChangeRejected(
                "The current key is unusable, so we cannot send the confirmation "
                "encrypted to it. Paste a new key instead, or ask support to remove it."
            )
    if (
        address_changed
        and report is None
        and contact.encryption == Contact.Encryption.KEY_PROBLEM
    ):
        raise ChangeRejected(
            "The current key is unusable, so we cannot send the confirmation encrypted "
            "to it. Paste a new key together with the new address."
        )
    if (
        report is not None
        and not address_changed
        and contact.active_key is not None
        and contact.encryption == Contact.Encryption.ACTIVE
        and contact.active_key.fingerprint.lower() == report.fingerprint.lower()
    ):
        raise ChangeRejected(
            f"The key {report.fingerprint_groups} is already active for this contact."
        )
    if address_changed and (
        Contact.objects.filter(
            customer_id=contact.customer_id, role=contact.role, address__iexact=address
        )
        .exclude(pk=contact.pk)
        .exists()
    ):
        raise ChangeRejected(
            f"Another {contact.get_role_display().lower()} contact of this account "
            f"already uses {address}. Choose a different address."
        )
    if not address_changed and report is None and not remove_key:
        raise ChangeRejected("Nothing to confirm: the address and key are unchanged.")


def change_mode(contact: Contact, mode: str, actor: Actor) -> None:
    """Switch between PGP/MIME and inline PGP at once, because neither weakens encryption."""
    if mode == contact.mode:
        return
    previous = contact.mode
    contact.mode = mode
    contact.save(update_fields=["mode", "updated"])
    PendingChange.objects.filter(
        contact=contact, state=PendingChange.State.PENDING
    ).update(new_mode=mode)
    audit(AuditEvent.Kind.MODE_CHANGED, contact, actor, previous=previous, mode=mode)
    logger.info("contact %s mode changed to %s", contact.pk, mode)


def set_wkd_refresh(contact: Contact, enabled: bool, actor: Actor) -> None:
    """Turn the daily WKD lookup of the contact's key on or off at once.

    Neither direction needs a confirmation round, because the lookup applies
    only copies with the confirmed key's fingerprint (see
    ``sealmail.notifications.wkd_refresh``).
    """
    if enabled == contact.wkd_refresh:
        return
    contact.wkd_refresh = enabled
    contact.save(update_fields=["wkd_refresh", "updated"])
    if enabled:
        audit(AuditEvent.Kind.WKD_REFRESH_ON, contact, actor)
    else:
        audit(AuditEvent.Kind.WKD_REFRESH_OFF, contact, actor)
    logger.info(
        "contact %s WKD refresh turned %s", contact.pk, "on" if enabled else "off"
    )


def request_change(
    contact: Contact,
    *,
    address: str,
    mode: str,
    report: KeyReport | None,
    remove_key: bool,
    actor: Actor,
) -> PendingChange:
    """Store a pending change, replace an older one, and mail the confirmation link.

    Raises :class:`ChangeRejected` or :class:`RateLimited` with a message for
    the customer. The confirmation mail is queued in the same transaction.
    """
    address = address.strip()
    with transaction.atomic():
        contact = (
            Contact.objects.select_for_update(of=("self",))
            .select_related("active_key", "customer")
            .get(pk=contact.pk)
        )
        _validate(contact, address, report, remove_key)
        _check_rate(contact, actor)
        now = timezone.now()
        for older in PendingChange.objects.filter(
            contact=contact, state=PendingChange.State.PENDING
        ):
            _close(older, PendingChange.State.SUPERSEDED, now)
            audit(
                AuditEvent.Kind.CANCELLED,
                contact,
                actor,
                older,
                reason="replaced by a new request",
            )

        new_key = _store_key(contact, report) if report is not None else None
        current_key = contact.active_key if contact.encryption_on else None
        if remove_key:
            sent_to, encrypt_to = contact.address, current_key
        elif new_key is not None:
            sent_to, encrypt_to = address, new_key
        else:
            sent_to, encrypt_to = address, current_key

        token = new_token()
        change = PendingChange.objects.create(
            contact=contact,
            new_address=address,
            new_mode=mode,
            new_key=new_key,
            remove_key=remove_key,
            sent_to=sent_to,
            sent_encrypted_to=encrypt_to.fingerprint if encrypt_to else "",
            previous_address=contact.address,
            previous_key=current_key,
            token_hash=hash_token(token),
            requested_by_id=actor.user_id,
            requested_via=actor.name[:100],
            client_address=actor.client_address,
            expires=now + timedelta(hours=confirm_hours()),
        )
        if new_key is not None and contact.encryption == Contact.Encryption.NONE:
            contact.encryption = Contact.Encryption.PENDING
            contact.save(update_fields=["encryption", "updated"])
        audit(
            AuditEvent.Kind.REQUESTED,
            contact,
            actor,
            change,
            new_address=address,
            new_key=new_key.fingerprint if new_key else None,
            remove_key=remove_key,
            sent_to=sent_to,
            encrypted_to=change.sent_encrypted_to or None,
        )
        mail.send_confirmation(change, token, encrypt_to)
    logger.info(
        "contact %s change %s requested by %s, confirmation queued",
        contact.pk,
        change.pk,
        actor.name,
    )
    return change


def _close(change: PendingChange, state: str, now: datetime) -> None:
    change.state = state
    change.resolved = now
    change.save(update_fields=["state", "resolved"])
    contact = change.contact
    still_pending = PendingChange.objects.filter(
        contact=contact, state=PendingChange.State.PENDING
    ).exists()
    if contact.encryption == Contact.Encryption.PENDING and not still_pending:
        contact.encryption = Contact.Encryption.NONE
        contact.save(update_fields=["encryption", "updated"])


def find_change(change_id: int, token: str) -> PendingChange:
    """Return the change ``change_id`` if ``token`` belongs to it, in any state.

    Raises :class:`ChangeNotFound` for an unknown id and for a token of
    another change alike, so a guess learns nothing.
    """
    change = (
        PendingChange.objects.select_related("contact", "new_key", "previous_key")
        .filter(pk=change_id)
        .first()
    )
    # Compare for unknown ids too, so an unknown id and a wrong token take equally long.
    matches = token_matches(change.token_hash if change else "0" * 64, token)
    if change is None or not matches:
        raise ChangeNotFound(
            "This link is not valid. Open the newest mail we sent, or start the "
            "change again from the portal."
        )
    return change


def _expire_if_due(change_id: int, actor: Actor) -> None:
    # Its own transaction, so the expiry stays recorded when the caller raises.
    with transaction.atomic():
        change = (
            PendingChange.objects.select_for_update(of=("self",))
            .select_related("contact")
            .get(pk=change_id)
        )
        if (
            change.state == PendingChange.State.PENDING
            and change.expires <= timezone.now()
        ):
            _close(change, PendingChange.State.EXPIRED, timezone.now())
            audit(AuditEvent.Kind.EXPIRED, change.contact, actor, change)
            logger.info("contact %s change %s expired", change.contact_id, change.pk)


def _lock_pending(change_id: int) -> PendingChange:
    """Lock the change for the current transaction, raising ChangeClosed unless it is pending."""
    change = (
        PendingChange.objects.select_for_update(of=("self",))
        .select_related("contact", "new_key", "previous_key")
        .get(pk=change_id)
    )
    if change.state != PendingChange.State.PENDING:
        raise ChangeClosed(closed_message(change.state), change.state)
    return change


def closed_message(state: str) -> str:
    if state == PendingChange.State.CONFIRMED:
        return "This change was already confirmed; the link works only once."
    if state == PendingChange.State.CANCELLED:
        return "This change was cancelled. Start a new change from the portal."
    if state == PendingChange.State.EXPIRED:
        return (
            f"This link expired: links are valid for {confirm_hours()} hours. "
            "Start the change again from the portal."
        )
    return "A newer change replaced this one. Use the link in the newest mail we sent."


def confirm_change(change_id: int, token: str, actor: Actor) -> PendingChange:
    """Apply a pending change for the holder of its token, and send the change notice."""
    find_change(change_id, token)
    _expire_if_due(change_id, actor)
    with transaction.atomic():
        change = _lock_pending(change_id)
        contact = Contact.objects.select_for_update(of=("self",)).get(
            pk=change.contact_id
        )
        previous_address = contact.address
        previous_key = contact.active_key if contact.encryption_on else None
        if change.remove_key:
            contact.active_key = None
            contact.encryption = Contact.Encryption.NONE
        elif change.new_key is not None:
            contact.active_key = change.new_key
            contact.encryption = Contact.Encryption.ACTIVE
            ContactKey.objects.filter(pk=change.new_key.pk).update(
                last_checked=timezone.now()
            )
        contact.address = change.new_address
        contact.mode = change.new_mode
        try:
            with transaction.atomic():
                contact.save()
        except IntegrityError as exc:
            # Another contact of the same role took the address after the request.
            logger.warning(
                "contact %s change %s not applied: %s", contact.pk, change.pk, exc
            )
            raise ChangeRejected(
                f"Another {contact.get_role_display().lower()} contact of this account "
                f"now uses {change.new_address}. Start a new change with another address."
            ) from exc
        now = timezone.now()
        change.state = PendingChange.State.CONFIRMED
        change.resolved = now
        change.save(update_fields=["state", "resolved"])
        audit(AuditEvent.Kind.CONFIRMED, contact, actor, change)

        key_changed = (previous_key.pk if previous_key else None) != (
            contact.active_key.pk if contact.active_key else None
        )
        address_changed = previous_address.lower() != contact.address.lower()
        if key_changed or address_changed:
            mail.send_change_notice(
                change, contact, previous_address, previous_key, now
            )
            audit(
                AuditEvent.Kind.NOTICE_SENT,
                contact,
                actor,
                change,
                to=previous_address,
                encrypted_to=previous_key.fingerprint if previous_key else None,
            )
        if contact.encryption == Contact.Encryption.ACTIVE and key_changed:
            mail.release_held(contact)
    logger.info(
        "contact %s change %s confirmed by %s", contact.pk, change.pk, actor.name
    )
    return change


def cancel_change(change_id: int, token: str, actor: Actor) -> PendingChange:
    """Discard a pending change for the holder of its token."""
    find_change(change_id, token)
    _expire_if_due(change_id, actor)
    with transaction.atomic():
        change = _lock_pending(change_id)
        _close(change, PendingChange.State.CANCELLED, timezone.now())
        audit(AuditEvent.Kind.CANCELLED, change.contact, actor, change)
    logger.info("contact %s change %s cancelled", change.contact_id, change.pk)
    return change


def cancel_pending_of(contact: Contact, actor: Actor) -> PendingChange | None:
    """Discard the contact's pending change from the portal, where login replaces the token."""
    with transaction.atomic():
        change = (
            PendingChange.objects.select_for_update(of=("self",))
            .filter(contact=contact, state=PendingChange.State.PENDING)
            .first()
        )
        if change is None:
            return None
        _close(change, PendingChange.State.CANCELLED, timezone.now())
        audit(AuditEvent.Kind.CANCELLED, change.contact, actor, change)
    logger.info("contact %s change %s cancelled in the portal", contact.pk, change.pk)
    return change


def expire_due_changes(now: datetime | None = None) -> int:
    """Mark every pending change past its expiry as expired and return how many."""
    now = now or timezone.now()
    expired = 0
    system = Actor("system")
    for change_id in PendingChange.objects.filter(
        state=PendingChange.State.PENDING, expires__lte=now
    ).values_list("pk", flat=True):
        with transaction.atomic():
            change = (
                PendingChange.objects.select_for_update(of=("self",))
                .select_related("contact")
                .get(pk=change_id)
            )
            if change.state != PendingChange.State.PENDING:
                continue
            _close(change, PendingChange.State.EXPIRED, now)
            audit(AuditEvent.Kind.EXPIRED, change.contact, system, change)
            expired += 1
    if expired:
        logger.info("%d pending contact changes expired", expired)
    return expired
