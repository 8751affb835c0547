"""Compose and deliver batches of stored messages; the worker's tasks call this.

A batch runs in three steps, each committed before the next:

1. Claim: an atomic UPDATE sets a lease on the rows that are due, so two
   workers never send the same row at the same time.
2. Compose: the policy decides per row; the composed bytes are stored with
   the format and the key fingerprint. Held and failed rows are final here.
3. Send: one transport session sends the stored bytes of every composed row;
   the relay's replies are written back in one update per batch.

A worker that dies between steps 2 and 3 leaves rows with a lease that
expires. The sweep then queues them again, and they go out with the stored
bytes and the same Message-ID. A worker that dies during step 3 may have handed
some messages to the relay already, so a recipient can get a second copy,
but with the same Message-ID and bytes.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pysequoia
from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Q
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.errors import EncryptionError, KeyStoreError, SealmailError
from sealmail.core.mime import compose as compose_module
from sealmail.core.mime.message import (
    Attachment,
    ComposedMessage,
    Format,
    OutgoingMessage,
)
from sealmail.core.pgp.ops import ProviderSigner
from sealmail.keys.store import get_keystore
from sealmail.outbox.dbvalues import ValueConverter
from sealmail.outbox.models import Blob, Category, NoticeState, OutboxMessage
from sealmail.outbox.service import redact_addresses
from sealmail.outbox.policy import (
    ENCRYPTED_FORMATS,
    Action,
    Decision,
    KeyChecker,
    decide,
    requires_encryption,
)
from sealmail.outbox.transport import (
    Delivered,
    DeliveryFailure,
    Envelope,
    PermanentFailure,
    Transport,
    TransportConfigError,
    transport_from_url,
)

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
SWEEP_GRACE = timedelta(minutes=5)
NOTICE_INTERVAL = timedelta(days=1)
MAX_RETRY_DELAY = timedelta(hours=4)
SWEEP_LIMIT = 5000

Status = OutboxMessage.Status

RESULT_FIELDS = [
    "status",
    "attempts",
    "last_attempt",
    "next_attempt",
    "sent_at",
    "relay_reply",
    "tls_protocol",
    "tls_cipher",
    "error",
    "hold_reason",
    "lease_until",
    "lease_token",
    "updated",
]
COMPOSED_FIELDS = ["composed", "format", "encrypted_to", "signed_by", "to_address"]


def sign_plain() -> bool:
    return bool(getattr(settings, "SEALMAIL_SIGN_PLAIN", False))


def max_attempts() -> int:
    return int(getattr(settings, "SEALMAIL_SEND_MAX_ATTEMPTS", 10))


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff: the base delay doubled for every earlier attempt."""
    base = float(getattr(settings, "SEALMAIL_SEND_RETRY_SECONDS", 60))
    seconds = base * 2 ** max(0, attempts - 1)
    return min(timedelta(seconds=seconds), MAX_RETRY_DELAY)


def get_transport() -> Transport:
    helo = settings.SEALMAIL_FROM.rpartition("@")[2] or "localhost"
    return transport_from_url(settings.SEALMAIL_SMTP_URL, settings.MAILDIR, helo)


def looks_encrypted(data: bytes, format: Format) -> bool:
    """Return whether composed bytes carry an OpenPGP message as ``format`` needs.

    This is a last check against a composer bug, and bytes that fail it are
    never sent.
    """
    if format == Format.PGPMIME:
        head = data[:8192].lower()
        return (
            b"multipart/encrypted" in head
            and b"-----begin pgp message-----" in data.lower()
        )
    if format == Format.INLINE:
        return b"-----BEGIN PGP MESSAGE-----" in data
    return False


@dataclass
class BatchContext:
    """Per-batch caches: provider keys, key checks and attachment blobs."""

    now: datetime
    keys: KeyChecker
    token: str = ""  # the lease token of the claimed rows
    lease_until: datetime | None = None
    lease_lost: bool = False
    _signer: ProviderSigner | None = None
    _autocrypt: pysequoia.Cert | None = None
    _blobs: dict[str, bytes] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)  # rows composed or decided now

    def signer(self) -> ProviderSigner:
        if self._signer is None:
            self._signer = get_keystore().signer()
        return self._signer

    def autocrypt(self) -> pysequoia.Cert | None:
        if self._autocrypt is None:
            certificates = get_keystore().certificates()
            self._autocrypt = certificates[0] if certificates else None
        return self._autocrypt

    def attachments(self, message: OutboxMessage) -> tuple[Attachment, ...]:
        missing = [
            a["sha256"] for a in message.attachments if a["sha256"] not in self._blobs
        ]
        if missing:
            for sha256, data in Blob.objects.filter(sha256__in=missing).values_list(
                "sha256", "data"
            ):
                self._blobs[sha256] = bytes(data)
        return tuple(
            Attachment(a["filename"], a["content_type"], self._blobs[a["sha256"]])
            for a in message.attachments
        )


@dataclass
class BatchResult:
    claimed: int = 0
    sent: int = 0
    held: int = 0
    failed: int = 0
    retry: int = 0


def write_fields(
    objects: Sequence[models.Model], fields: Sequence[str], *, lease_token: str = ""
) -> int:
    """Write ``fields`` of every object (all of one model) with one UPDATE run per row.

    ``executemany`` of one parameterized UPDATE is much faster here than
    ``bulk_update``, which builds a CASE expression per field and row. With
    ``lease_token``, only rows that still carry that lease are written, so a
    worker whose lease was taken over cannot overwrite the new owner's
    results. Returns the number of rows written.
    """
    if not objects:
        return 0
    meta = type(objects[0])._meta
    quote = connection.ops.quote_name
    columns = [meta.get_field(name) for name in fields]
    assignments = ", ".join(f"{quote(column.column)} = %s" for column in columns)
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {assignments} "
        f"WHERE {quote(meta.pk.column)} = %s"
    )
    guard = []
    if lease_token:
        sql += " AND lease_token = %s"
        guard = [lease_token]
    converters = [ValueConverter(column) for column in columns]
    rows = [
        [convert(getattr(item, convert.attname)) for convert in converters]
        + [item.pk]
        + guard
        for item in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)
        return cursor.rowcount


def erase_sensitive_content(sent: Sequence[OutboxMessage]) -> None:
    """Erase the content of sent mail that contained a one-time link.

    A confirmation or password reset link stays valid for hours after the
    mail left, so it must not stay readable in the database or the admin. The
    encrypted bytes stay, because only the customer's key opens them.
    """
    sensitive = [message.pk for message in sent if message.sensitive]
    if not sensitive:
        return
    OutboxMessage.objects.filter(pk__in=sensitive).update(text=None, html=None)
    OutboxMessage.objects.filter(pk__in=sensitive, encrypted_to="").update(composed=None)


def claim(ids: Sequence[int], now: datetime) -> list[OutboxMessage]:
    """Lease the due, queued rows among ``ids`` and return them with their contacts."""
    token = uuid.uuid4().hex
    claimed = (
        OutboxMessage.objects.filter(
            id__in=ids, status=Status.QUEUED, next_attempt__lte=now
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE, lease_token=token)
    )
    if not claimed:
        return []
    # Only the fields that the policy and the composer read are loaded.
    unused = [
        "created",
        "contact__created",
        "contact__updated",
        "contact__wkd_refresh",
        *(
            f"{key}__{name}"
            for key in ("contact__active_key", "recipient_key")
            for name in ("version", "algorithm", "user_ids", "key_created", "added")
        ),
    ]
    return list(
        OutboxMessage.objects.filter(id__in=ids, lease_token=token)
        .select_related("contact", "contact__active_key", "recipient_key")
        .defer(*unused)
        .order_by("id")
    )


def is_stale(message: OutboxMessage, contact: Contact | None) -> bool:
    """Whether stored composed bytes no longer fit the contact and must be redone."""
    if message.composed is None:
        return True
    composed_format = Format(message.format)
    if composed_format not in ENCRYPTED_FORMATS and requires_encryption(
        message, contact
    ):
        return True
    if contact is None:
        return False
    if not message.explicit_address and contact.address != message.to_address:
        return True
    if composed_format in ENCRYPTED_FORMATS and _key_became_unusable(message, contact):
        # This is a retry after a relay failure. Composing again puts the
        # message on hold or fails it instead of sending it to that key.
        return True
    active = contact.active_key
    return (
        message.recipient_key_id is None
        and composed_format in ENCRYPTED_FORMATS
        and active is not None
        and contact.encryption == Contact.Encryption.ACTIVE
        and active.fingerprint.lower() != message.encrypted_to.lower()
    )


def _key_became_unusable(message: OutboxMessage, contact: Contact) -> bool:
    """Return whether the key that the stored ciphertext was made for is now known to be unusable."""
    if message.recipient_key_id is None:
        if contact.encryption != Contact.Encryption.ACTIVE:
            return True
        key = contact.active_key
    else:
        key = message.recipient_key
    if key is None:
        return False
    expired = key.usable_until is not None and key.usable_until <= timezone.now()
    return bool(key.problem) or expired


def _retry(
    message: OutboxMessage, now: datetime, error: str, *, log: bool = True
) -> str:
    """Count a failed attempt and schedule the next one, or fail after the last.

    ``log=False`` leaves logging to the caller, which logs one line for a
    whole batch that failed for one reason.
    """
    message.attempts += 1
    message.last_attempt = now
    message.error = error
    message.lease_until = None
    message.lease_token = ""
    if message.attempts >= max_attempts():
        message.status = Status.FAILED
        logger.error(
            "message %d failed after %d attempts: %s",
            message.pk,
            message.attempts,
            redact_addresses(error),
        )
        return "failed"
    message.next_attempt = now + retry_delay(message.attempts)
    if log:
        logger.warning(
            "message %d attempt %d failed, retrying at %s: %s",
            message.pk,
            message.attempts,
            message.next_attempt.isoformat(timespec="seconds"),
            redact_addresses(error),
        )
    return "retry"


def _fail(message: OutboxMessage, now: datetime, error: str) -> str:
    message.status = Status.FAILED
    message.error = error
    message.last_attempt = now
    message.lease_until = None
    message.lease_token = ""
    logger.error("message %d failed: %s", message.pk, redact_addresses(error))
    return "failed"


def prepare(message: OutboxMessage, ctx: BatchContext) -> str:
    """Compose ``message`` if needed; return ready, held, failed or retry."""
    contact = message.contact
    if not is_stale(message, contact):
        return "ready"
    ctx.changed.add(message.pk)
    message.composed = None
    decision = decide(message, contact, ctx.keys, sign_plain=sign_plain())
    if decision.action == Action.HOLD:
        return _hold(message, decision.reason)
    if decision.action == Action.FAIL:
        return _fail(message, ctx.now, f"not sent: {decision.reason}")

    if contact is not None and not message.explicit_address:
        message.to_address = contact.address
    try:
        composed = _compose(message, decision, ctx)
    except EncryptionError as exc:
        reason = ctx.keys.problem(decision.key) if decision.key is not None else ""
        if not reason:
            return _retry(message, ctx.now, f"composing failed: {exc}")
        if message.recipient_key_id is not None:
            return _fail(message, ctx.now, f"not sent: key_{reason}")
        return _hold(message, reason)
    except SealmailError as exc:
        return _retry(message, ctx.now, f"composing failed: {exc}")
    except Exception as exc:  # a composer bug must not stop the batch
        logger.exception("composing message %d raised", message.pk)
        return _retry(
            message, ctx.now, f"composing failed: {type(exc).__name__}: {exc}"
        )

    problem = _composed_problem(message, decision, composed)
    if problem:
        return _retry(message, ctx.now, f"{problem}; nothing was sent")
    encrypted = decision.format in ENCRYPTED_FORMATS
    message.composed = bytes(composed.data)
    message.format = composed.format.value
    message.encrypted_to = decision.certificate.fingerprint.lower() if encrypted else ""
    message.signed_by = composed.signed_by or ""
    return "ready"


def _hold(message: OutboxMessage, reason: str) -> str:
    message.status = Status.HELD
    message.hold_reason = reason
    message.lease_until = None
    message.lease_token = ""
    logger.info(
        "message %d held: contact %s key unusable (%s)",
        message.pk,
        message.contact_id,
        reason,
    )
    return "held"


def _compose(
    message: OutboxMessage, decision: Decision, ctx: BatchContext
) -> ComposedMessage:
    """Compose ``message`` in the decided format with the provider's keys."""
    assert decision.format is not None
    encrypted = decision.format in ENCRYPTED_FORMATS
    signer = ctx.signer() if decision.format != Format.PLAIN else None
    try:
        autocrypt = ctx.autocrypt()
    except KeyStoreError:
        # Plain mail may go out without the Autocrypt header; nothing else may.
        if encrypted or signer is not None:
            raise
        autocrypt = None
    outgoing = OutgoingMessage(
        sender=settings.SEALMAIL_FROM,
        to=message.to_address,
        subject=message.subject,
        text=message.text,
        html=message.html,
        attachments=ctx.attachments(message),
        message_id=message.message_id,
        date=ctx.now,
        in_reply_to=message.in_reply_to or None,
        references=tuple(message.references),
    )
    return compose_module.compose(
        outgoing,
        decision.format,
        recipients=[decision.certificate] if encrypted and decision.certificate else [],
        signer=signer,
        autocrypt_certificate=autocrypt,
    )


def _composed_problem(
    message: OutboxMessage, decision: Decision, composed: ComposedMessage
) -> str:
    """Return what is wrong with the composer's output, or "" if it is as requested."""
    if composed.message_id != message.message_id:
        return f"composer changed the Message-ID to {composed.message_id}"
    if composed.format != decision.format:
        return f"composer returned {composed.format.value}, not {decision.format.value}"
    if decision.format not in ENCRYPTED_FORMATS:
        return ""
    expected = decision.certificate.fingerprint.lower() if decision.certificate else ""
    encrypted_to = [fingerprint.lower() for fingerprint in composed.encrypted_to]
    if (
        not looks_encrypted(bytes(composed.data), decision.format)
        or expected not in encrypted_to
    ):
        return f"composer output is not encrypted to {expected}"
    return ""


def _mark_key_problem(
    contact: Contact, key: ContactKey | None, reason: str, now: datetime
) -> None:
    """Record that the contact's active key failed the send-time check."""
    if key is not None:
        ContactKey.objects.filter(pk=key.pk).update(
            problem=reason[:32], last_checked=now
        )
    Contact.objects.filter(pk=contact.pk, encryption=Contact.Encryption.ACTIVE).update(
        encryption=Contact.Encryption.KEY_PROBLEM
    )


def key_update_url(contact: Contact) -> str:
    try:
        path = reverse("contacts:update", args=[contact.pk])
    except NoReverseMatch:
        path = "/"
    return settings.SEALMAIL_BASE_URL + path


def notify_key_problem(contact: Contact, reason: str, now: datetime) -> bool:
    """Queue the content-free notice for ``contact`` unless one went out in the last day.

    The check and the claim are one conditional UPDATE, so concurrent workers
    queue at most one notice. Returns whether a notice was queued.
    """
    from sealmail.outbox.service import enqueue

    with transaction.atomic():
        state, _ = NoticeState.objects.get_or_create(contact=contact)
        claimed = (
            NoticeState.objects.filter(pk=state.pk)
            .filter(
                Q(last_notice__isnull=True) | Q(last_notice__lte=now - NOTICE_INTERVAL)
            )
            .update(last_notice=now)
        )
        if not claimed:
            return False
        enqueue(
            contact,
            category=Category.KEY_PROBLEM,
            template="key_problem",
            context={"reason": reason, "update_url": key_update_url(contact)},
            source="sealmail",
        )
    logger.info("queued a key problem notice for contact %d (%s)", contact.pk, reason)
    return True


def deliver_batch(
    ids: Sequence[int], *, transport: Transport | None = None
) -> BatchResult:
    """Compose and send the due, queued messages among ``ids``."""
    now = timezone.now()
    messages = claim(ids, now)
    result = BatchResult(claimed=len(messages))
    if not messages:
        return result
    ctx = BatchContext(
        now=now,
        keys=KeyChecker(now),
        token=messages[0].lease_token,
        lease_until=messages[0].lease_until,
    )
    outcomes: dict[str, list[OutboxMessage]] = defaultdict(list)
    for message in messages:
        outcomes[prepare(message, ctx)].append(message)

    held_contacts: dict[int, tuple[Contact, str, ContactKey | None]] = {}
    for message in outcomes["held"]:
        contact = message.contact
        assert contact is not None
        held_contacts[contact.pk] = (contact, message.hold_reason, contact.active_key)
    changed = [message for message in messages if message.pk in ctx.changed]
    ready_ids = {message.pk for message in outcomes["ready"]}
    with transaction.atomic():
        for message in changed:
            message.updated = now
        # prepare() changed only the composed fields of rows that are ready.
        write_fields(
            [message for message in changed if message.pk in ready_ids],
            [*COMPOSED_FIELDS, "updated"],
            lease_token=ctx.token,
        )
        write_fields(
            [message for message in changed if message.pk not in ready_ids],
            COMPOSED_FIELDS + RESULT_FIELDS,
            lease_token=ctx.token,
        )
        write_fields(ctx.keys.changed_checks(), ["send_check"])
        for contact, reason, key in held_contacts.values():
            _mark_key_problem(contact, key, reason, now)
    for contact, reason, _key in held_contacts.values():
        notify_key_problem(contact, reason, now)

    ready = outcomes["ready"]
    # The session stays open until the results are written, so that a relay
    # that is slow to reply to QUIT cannot delay them past the lease.
    with ExitStack() as open_session:
        send_outcomes = _send(ready, transport, ctx, open_session) if ready else {}
        for name, group in send_outcomes.items():
            outcomes[name].extend(group)
        with transaction.atomic():
            written = write_fields(ready, RESULT_FIELDS, lease_token=ctx.token)
            if written < len(ready):
                ctx.lease_lost = True
                logger.error(
                    "batch (first id %d) lost the lease of %d of %d message(s) "
                    "before writing their results; the worker that holds them "
                    "now may send them again",
                    ready[0].pk,
                    len(ready) - written,
                    len(ready),
                )
            else:
                erase_sensitive_content(outcomes["sent"])
    _schedule_retries(outcomes["retry"])
    result.sent = len(outcomes["sent"])
    result.held = len(outcomes["held"])
    result.failed = len(outcomes["failed"])
    result.retry = len(outcomes["retry"])
    logger.info(
        "batch of %d: %d sent, %d held, %d failed, %d to retry",
        result.claimed,
        result.sent,
        result.held,
        result.failed,
        result.retry,
    )
    return result


def _renew_lease(messages: list[OutboxMessage], ctx: BatchContext) -> bool:
    """Extend the lease of ``messages``; return False if another worker took any."""
    until = timezone.now() + LEASE
    renewed = OutboxMessage.objects.filter(
        pk__in=[message.pk for message in messages], lease_token=ctx.token
    ).update(lease_until=until)
    if renewed < len(messages):
        return False
    ctx.lease_until = until
    return True


def _send(
    ready: list[OutboxMessage],
    transport: Transport | None,
    ctx: BatchContext,
    open_session: ExitStack,
) -> dict[str, list[OutboxMessage]]:
    """Send the ready messages over one session, which ``open_session`` closes later."""
    outcomes: dict[str, list[OutboxMessage]] = defaultdict(list)
    now = timezone.now()
    sendable = []
    for message in ready:
        assert message.composed is not None
        if requires_encryption(message, message.contact) and (
            Format(message.format) not in ENCRYPTED_FORMATS
        ):
            # prepare() recomposes such rows; this guards against a bug there.
            error = "not sent: plaintext for a contact with encryption on"
            outcomes[_fail(message, now, error)].append(message)
            continue
        sendable.append(message)
    if not sendable:
        return outcomes
    envelopes = [
        Envelope(settings.SEALMAIL_FROM, message.to_address, bytes(message.composed))
        for message in sendable
    ]
    try:
        transport = transport or get_transport()
        session = transport.open()
    except (DeliveryFailure, TransportConfigError) as exc:
        error = getattr(exc, "reply", str(exc))
        logger.warning(
            "relay unavailable for %d message(s) (first id %d): %s",
            len(sendable),
            sendable[0].pk,
            redact_addresses(error),
        )
        for message in sendable:
            outcomes[_retry(message, now, error, log=False)].append(message)
        return outcomes
    open_session.enter_context(session)
    outcomes_iter = session.send_all(envelopes)
    try:
        done = _collect(sendable, outcomes_iter, outcomes, ctx)
    finally:
        # The generator's use of the session ends before the session closes.
        close = getattr(outcomes_iter, "close", None)
        if close is not None:
            close()
    if ctx.lease_lost:
        return outcomes
    now = timezone.now()
    rest = sendable[done:]
    if rest:
        logger.warning(
            "connection lost; %d more message(s) wait for a retry", len(rest)
        )
        error = "the connection to the relay was lost before this message was sent"
        for other in rest:
            other.updated = now
            outcomes[_retry(other, now, error, log=False)].append(other)
    return outcomes


def _collect(
    sendable: list[OutboxMessage],
    outcomes_iter: Iterator[Delivered | DeliveryFailure],
    outcomes: dict[str, list[OutboxMessage]],
    ctx: BatchContext,
) -> int:
    """Record the session's outcome of each message in order; return how many."""
    done = 0
    for message in sendable:
        # A slow relay can keep a batch busy for longer than its lease, so
        # the lease is renewed when half of it is left. A session spends at
        # most EXCHANGE_LIMIT seconds on one message, less than half.
        if ctx.lease_until is not None and (
            timezone.now() >= ctx.lease_until - LEASE / 2
        ) and not _renew_lease(sendable, ctx):
            logger.error(
                "batch lost its lease to another worker after %d of %d "
                "message(s) (first id %d); it stops sending and leaves the "
                "results to that worker",
                done,
                len(sendable),
                sendable[0].pk,
            )
            ctx.lease_lost = True
            return done
        outcome = next(outcomes_iter, None)
        if outcome is None:
            return done
        done += 1
        now = timezone.now()
        message.updated = now
        if isinstance(outcome, Delivered):
            _mark_sent(message, outcome, now)
            outcomes["sent"].append(message)
            continue
        message.relay_reply = outcome.reply
        if isinstance(outcome, PermanentFailure):
            message.attempts += 1
            error = f"rejected by the relay: {outcome.reply}"
            outcomes[_fail(message, now, error)].append(message)
        else:
            outcomes[_retry(message, now, outcome.reply)].append(message)
        if outcome.connection_lost:
            return done
    return done


def _mark_sent(message: OutboxMessage, delivered: Delivered, now: datetime) -> None:
    message.status = Status.SENT
    message.attempts += 1
    message.last_attempt = now
    message.sent_at = now
    message.relay_reply = delivered.reply
    message.tls_protocol = delivered.tls_protocol
    message.tls_cipher = delivered.tls_cipher
    message.error = ""
    message.lease_until = None
    message.lease_token = ""


def _schedule_retries(messages: list[OutboxMessage]) -> None:
    if not messages:
        return
    from sealmail.outbox.tasks import schedule_batches

    by_time: dict[datetime, list[int]] = defaultdict(list)
    for message in messages:
        by_time[message.next_attempt.replace(microsecond=0)].append(message.pk)
    for eta, ids in by_time.items():
        try:
            schedule_batches(ids, eta=eta + timedelta(seconds=1))
        except Exception:
            logger.exception("scheduling the retry of %d message(s) failed", len(ids))


def sweep(now: datetime | None = None) -> tuple[int, int]:
    """Queue rows whose task was lost and release held mail of re-enabled contacts.

    Returns (rows queued again, rows released).
    """
    from sealmail.outbox.service import release_held
    from sealmail.outbox.tasks import schedule_batches

    now = now or timezone.now()
    ids = list(
        OutboxMessage.objects.filter(
            status=Status.QUEUED, next_attempt__lte=now - SWEEP_GRACE
        )
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt")
        .values_list("id", flat=True)[:SWEEP_LIMIT]
    )
    if ids:
        logger.info("sweep queues %d message(s) again", len(ids))
        schedule_batches(ids)
    released = 0
    contacts = Contact.objects.filter(
        encryption=Contact.Encryption.ACTIVE,
        outbox_messages__status=Status.HELD,
    ).distinct()
    for contact in contacts:
        released += release_held(contact)
    return len(ids), released
