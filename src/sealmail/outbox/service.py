"""The one entry point every part of sealmail and every caller sends mail through.

:func:`enqueue` and :func:`enqueue_bulk` validate and render the content,
commit one :class:`OutboxMessage` per recipient, and only after the commit
hand the ids to the worker. A crash at any point therefore loses nothing:
rows whose task never ran are picked up by the periodic sweep.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import uuid
from collections.abc import Iterable, Sequence
import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from sealmail.contacts.models import Contact, ContactKey, Customer
from sealmail.core.mime.message import Attachment
from sealmail.outbox.dbvalues import ValueConverter
from sealmail.outbox.models import (
    PUBLIC_CATEGORIES,
    Blob,
    Category,
    NoticeState,
    OutboxMessage,
    SendRequest,
)
from sealmail.outbox.rendering import TemplateError, render

logger = logging.getLogger(__name__)

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Base64 and the OpenPGP armor grow a message by about 40 %, so 15 MiB of
# attachments stays under the 25 MB limit that many relays apply.
MAX_TOTAL_ATTACHMENT_BYTES = 15 * 1024 * 1024
MAX_ATTACHMENTS = 20
MAX_SUBJECT_CHARS = 400
MAX_BODY_CHARS = 2 * 1024 * 1024
INSERT_BATCH = 500
# A request with more recipients commits its messages in chunks of this
# many, so the worker starts delivering before the whole request is stored.
COMMIT_CHUNK = 1000
# How long an incomplete request belongs to the call storing it; a repeat
# after that takes over and stores the rest.
REQUEST_LEASE = timedelta(minutes=2)

CONTENT_TYPE = re.compile(
    r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$"
)
FILENAME_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f/\\]")


ADDRESS = re.compile(r"[^\s<>()\[\]'\",;:]+@[^\s<>()\[\]'\",;:]+")


def redact_addresses(text: str) -> str:
    """Replace email addresses in ``text`` with ``<address>`` before it is logged."""
    return ADDRESS.sub("<address>", text)


class EnqueueError(ValueError):
    """A request to send is invalid, and ``field`` names the invalid input.

    ``status`` is the HTTP status the API returns for it.
    """

    status = 400

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class IdempotencyConflict(EnqueueError):
    """The idempotency key was already used for a different request.

    The status is 422, which the IETF draft "The Idempotency-Key HTTP Header
    Field" (draft-ietf-httpapi-idempotency-key-header-07) recommends for a
    key reused with another payload.
    """

    status = 422


class RequestInProgress(EnqueueError):
    """Another call with the same idempotency key is still storing its messages.

    The status is 409, which the same draft gives for a request that is
    still being processed. ``retry_after`` is the number of seconds until a
    repeat can take the request over.
    """

    status = 409

    def __init__(self, field: str, message: str, *, retry_after: int) -> None:
        super().__init__(field, message)
        self.retry_after = retry_after


class RequestTakenOver(RequestInProgress):
    """A repeat took over a chunked request from the call that was storing it."""


def _category(value: str, *, internal: bool) -> str:
    allowed = list(Category.values if internal else PUBLIC_CATEGORIES)
    if value not in allowed:
        raise EnqueueError(
            "category",
            f"category {value!r} is unknown; use one of {', '.join(allowed)}",
        )
    return value


def _check_no_nul(value: str | None, field: str) -> None:
    # PostgreSQL text columns cannot store NUL, and no mail client shows it.
    if value is not None and "\x00" in value:
        raise EnqueueError(field, f"{field} contains a NUL character; remove it")


def _check_subject(subject: str) -> str:
    _check_no_nul(subject, "subject")
    if "\r" in subject or "\n" in subject:
        raise EnqueueError("subject", "subject contains a line break; give one line")
    subject = subject.strip()
    if len(subject) > MAX_SUBJECT_CHARS:
        raise EnqueueError(
            "subject",
            f"subject has {len(subject)} characters; the maximum is "
            f"{MAX_SUBJECT_CHARS}",
        )
    return subject


def _check_address(value: str, field: str) -> str:
    try:
        validate_email(value)
    except ValidationError:
        raise EnqueueError(
            field, f"{value!r} is not an email address; give one like name@example.net"
        ) from None
    return value


def _check_message_id(value: str, field: str) -> str:
    value = value.strip()
    if not re.fullmatch(r"<[!-;=?-~]{1,240}@[!-;=?-~]{1,240}>", value):
        raise EnqueueError(
            field,
            f"{value!r} is not a Message-ID; give one like <id@example.net>, "
            "with the angle brackets",
        )
    return value


def check_attachments(attachments: Sequence[Attachment]) -> list[Attachment]:
    """Validate attachment names, content types and sizes, raising EnqueueError."""
    if len(attachments) > MAX_ATTACHMENTS:
        raise EnqueueError(
            "attachments",
            f"{len(attachments)} attachments given; the maximum is {MAX_ATTACHMENTS}",
        )
    total = 0
    for index, attachment in enumerate(attachments):
        field = f"attachments[{index}]"
        name = attachment.filename
        if not name.strip() or len(name) > 200 or FILENAME_FORBIDDEN.search(name):
            raise EnqueueError(
                f"{field}.filename",
                f"file name {name!r} is invalid; give a name of 1 to 200 characters "
                "without slashes or control characters, like invoice-2026-11.pdf",
            )
        content_type = attachment.content_type.strip().lower()
        if not CONTENT_TYPE.match(content_type) or content_type.startswith(
            "multipart/"
        ):
            raise EnqueueError(
                f"{field}.content_type",
                f"content type {attachment.content_type!r} is invalid; give a "
                "MIME type like application/pdf or text/csv",
            )
        size = len(attachment.data)
        if size == 0:
            raise EnqueueError(f"{field}.content", f"attachment {name!r} is empty")
        if size > MAX_ATTACHMENT_BYTES:
            raise EnqueueError(
                f"{field}.content",
                f"attachment {name!r} has {size} bytes; the maximum is "
                f"{MAX_ATTACHMENT_BYTES} bytes per attachment",
            )
        total += size
    if total > MAX_TOTAL_ATTACHMENT_BYTES:
        raise EnqueueError(
            "attachments",
            f"the attachments add up to {total} bytes; the maximum is "
            f"{MAX_TOTAL_ATTACHMENT_BYTES} bytes per message",
        )
    return [
        Attachment(a.filename, a.content_type.strip().lower(), bytes(a.data))
        for a in attachments
    ]


def contacts_of(
    customers: Iterable[Customer], role: str | None = None
) -> list[Contact]:
    """Return the contacts of ``customers``, only those in ``role`` when given."""
    customers = list(customers)
    if role is not None and role not in Contact.Role.values:
        raise EnqueueError(
            "role",
            f"role {role!r} is unknown; use one of {', '.join(Contact.Role.values)}",
        )
    # The keys are not loaded: the worker decides at send time, and a
    # certificate and its stored check for every recipient slowed bulk calls.
    # Each contact gets the given customer object instead of a second copy
    # from a join.
    by_id = {customer.pk: customer for customer in customers}
    queryset = Contact.objects.filter(customer_id__in=list(by_id)).defer(
        "created", "updated"
    )
    if role is not None:
        queryset = queryset.filter(role=role)
    contacts = list(queryset.order_by("customer_id", "id"))
    customer_field = Contact._meta.get_field("customer")
    for contact in contacts:
        customer_field.set_cached_value(contact, by_id[contact.customer_id])
    found = {contact.customer_id for contact in contacts}
    empty = [c.account_number for c in customers if c.pk not in found]
    if empty:
        suffix = f" with role {role!r}" if role else ""
        listed = ", ".join(empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise EnqueueError(
            "customer",
            f"customer {listed} has no contact{suffix}; add one with "
            "POST /api/v1/customers",
        )
    return contacts


def _request_hash(
    recipients: Any,
    content: dict[str, Any],
    attachments: Sequence[Attachment],
) -> str:
    """Return the SHA-256 of a request: its recipients as named, content and attachments."""
    named = json.dumps(recipients, sort_keys=True, default=str).encode()
    return _hash_parts(named, content, attachments)


def _legacy_request_hash(
    contacts: Sequence[Contact],
    content: dict[str, Any],
    attachments: Sequence[Attachment],
) -> str:
    """Return the hash that requests stored before the recipients were hashed as named have."""
    ids = ",".join(str(contact.pk) for contact in contacts).encode()
    return _hash_parts(ids, content, attachments)


def _hash_parts(
    recipients: bytes, content: dict[str, Any], attachments: Sequence[Attachment]
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps(content, sort_keys=True, default=str).encode())
    digest.update(recipients)
    for attachment in attachments:
        digest.update(attachment.filename.encode() + b"\0")
        digest.update(attachment.content_type.encode() + b"\0")
        digest.update(hashlib.sha256(attachment.data).digest())
    return digest.hexdigest()


def _message_id() -> str:
    domain = settings.SEALMAIL_FROM.rpartition("@")[2] or "sealmail.invalid"
    return f"<{uuid.uuid4().hex}@{domain}>"


def _template_context(
    contact: Contact, context: dict[str, Any] | None, category: str
) -> dict[str, Any]:
    base = {
        "customer": contact.customer,
        "contact": contact,
        "category": category,
        "base_url": settings.SEALMAIL_BASE_URL,
        "sender": settings.SEALMAIL_FROM,
    }
    return {**base, **(context or {})}


def _store_blobs(attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    stored = []
    for attachment in attachments:
        sha256 = hashlib.sha256(attachment.data).hexdigest()
        Blob.objects.get_or_create(
            sha256=sha256,
            defaults={"data": attachment.data, "size": len(attachment.data)},
        )
        stored.append(
            {
                "filename": attachment.filename,
                "content_type": attachment.content_type,
                "sha256": sha256,
                "size": len(attachment.data),
            }
        )
    return stored


def enqueue(
    contact: Contact | None = None,
    *,
    customer: Customer | None = None,
    category: str,
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    template: str | None = None,
    context: dict[str, Any] | None = None,
    attachments: Sequence[Attachment] = (),
    idempotency_key: str | None = None,
    to_address: str | None = None,
    recipient_key: ContactKey | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    role: str | None = None,
    source: str = "python",
    sensitive: bool = False,
) -> list[OutboxMessage]:
    """Store a message for ``contact``, or for every contact of ``customer``.

    With ``customer`` the message fans out to all of its contacts, or to those
    in ``role``. ``to_address`` sends to another address than the contact's,
    such as a confirmation to a new address or a notice to a previous one.
    ``recipient_key`` encrypts to that key of the contact instead of its
    active key, and the message never falls back to plaintext. ``sensitive``
    marks mail holding a one-time link: its content is erased once it is
    sent. Returns one committed row
    per recipient; with an ``idempotency_key`` already used by ``source`` it
    returns the rows of the first call instead. Raises :class:`EnqueueError`
    for invalid input and :class:`IdempotencyConflict` when the key was used
    for different content.
    """
    if contact is None and customer is None:
        raise EnqueueError("contact", "give a contact or a customer to send to")
    if contact is not None:
        if customer is not None and contact.customer_id != customer.pk:
            raise EnqueueError(
                "contact",
                f"contact {contact.pk} does not belong to customer "
                f"{customer.account_number}",
            )
        if role is not None and contact.role != role:
            raise EnqueueError(
                "role", f"contact {contact.pk} has role {contact.role!r}, not {role!r}"
            )
        contacts = [contact]
        named = {"contacts": [contact.pk]}
    else:
        contacts = contacts_of([customer], role)  # type: ignore[list-item]
        named = {"customers": [customer.account_number], "role": role}  # type: ignore[union-attr]
    return enqueue_bulk(
        contacts,
        category=category,
        subject=subject,
        text=text,
        html=html,
        template=template,
        context=context,
        attachments=attachments,
        idempotency_key=idempotency_key,
        to_address=to_address,
        recipient_key=recipient_key,
        in_reply_to=in_reply_to,
        references=references,
        source=source,
        sensitive=sensitive,
        internal=True,
        recipients=named,
    )


def enqueue_bulk(contacts: Iterable[Contact], **options: Any) -> list[OutboxMessage]:
    """Store one message per contact with batched inserts and batched tasks.

    Takes the keyword arguments of :func:`enqueue_bulk_checked`, which are
    the content arguments of :func:`enqueue`. ``internal=False`` limits
    ``category`` to the public categories, as the API and the ``send``
    command do.
    """
    messages, _repeated = enqueue_bulk_checked(contacts, **options)
    return messages


def enqueue_bulk_checked(
    contacts: Iterable[Contact],
    *,
    category: str,
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    template: str | None = None,
    context: dict[str, Any] | None = None,
    attachments: Sequence[Attachment] = (),
    idempotency_key: str | None = None,
    to_address: str | None = None,
    recipient_key: ContactKey | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    source: str = "python",
    sensitive: bool = False,
    internal: bool = True,
    recipients: Any = None,
) -> tuple[list[OutboxMessage], bool]:
    """Do what :func:`enqueue_bulk` does; also return whether the call was a repeat.

    The flag is True when ``idempotency_key`` matched an earlier call and
    the earlier call's rows were returned. ``recipients`` is what the caller
    named (customers, contacts, a role), as JSON-serializable data. The
    idempotency check compares it instead of the contact ids, so a repeat
    matches even when a customer's contacts changed in between. Without an
    idempotency key, the messages are stored in one transaction, so a failed
    call stores nothing. With a key, more than ``COMMIT_CHUNK`` messages are
    stored in chunks (see :class:`_RequestWriter`).
    """
    contacts = list(contacts)
    if not contacts:
        raise EnqueueError("contacts", "no recipient given; give at least one contact")
    seen: set[int] = set()
    for contact in contacts:
        if contact.pk in seen:
            raise EnqueueError(
                "contacts", f"contact {contact.pk} is listed twice; list each once"
            )
        seen.add(contact.pk)
    category = _category(category, internal=internal)
    subject = _check_subject(subject or "")
    if to_address is not None:
        to_address = _check_address(to_address.strip(), "to_address")
    if (to_address or recipient_key) and len(contacts) != 1:
        raise EnqueueError(
            "to_address" if to_address else "recipient_key",
            "to_address and recipient_key apply to a single contact; "
            f"this request has {len(contacts)} recipients",
        )
    if recipient_key is not None and recipient_key.contact_id != contacts[0].pk:
        raise EnqueueError(
            "recipient_key",
            f"key {recipient_key.fingerprint} belongs to another contact "
            f"than contact {contacts[0].pk}",
        )
    if in_reply_to:
        in_reply_to = _check_message_id(in_reply_to, "in_reply_to")
    references = [
        _check_message_id(value, f"references[{i}]")
        for i, value in enumerate(references)
    ]
    for name, body in (("text", text), ("html", html)):
        _check_no_nul(body, name)
        if body is not None and len(body) > MAX_BODY_CHARS:
            raise EnqueueError(
                name,
                f"{name} has {len(body)} characters; the maximum is {MAX_BODY_CHARS}",
            )
    if text is None and html is None and template is None:
        template = category if category != Category.CUSTOM else None
        if template is None:
            raise EnqueueError(
                "text", "give text, html or a template name for a custom message"
            )
    if template is not None and (text is not None or html is not None):
        raise EnqueueError("template", "give either a template or text/html, not both")
    if context is not None and not isinstance(context, dict):
        raise EnqueueError("context", "context must be an object of template variables")
    attachments = check_attachments(attachments)

    rendered_rows = []
    for contact in contacts:
        if template is not None:
            try:
                rendered = render(
                    template,
                    _template_context(contact, context, category),
                    subject=subject,
                )
            except TemplateError as exc:
                raise EnqueueError("template", str(exc)) from exc
            row_subject, row_text, row_html = (
                rendered.subject,
                rendered.text,
                rendered.html,
            )
        else:
            row_subject, row_text, row_html = subject, text, html
        row_subject = _check_subject(row_subject)
        _check_no_nul(row_text, "text")
        _check_no_nul(row_html, "html")
        if not row_subject:
            raise EnqueueError(
                "subject",
                "subject is empty; give a subject or a template with a subject",
            )
        rendered_rows.append((contact, row_subject, row_text, row_html))

    content = {
        "category": category,
        "subject": subject,
        "text": text,
        "html": html,
        "template": template,
        "context": context,
        "to_address": to_address,
        "recipient_key": recipient_key.pk if recipient_key else None,
        "in_reply_to": in_reply_to,
        "references": references,
    }
    if recipients is None:
        recipients = {"contacts": [contact.pk for contact in contacts]}
    request_hash = _request_hash(recipients, content, attachments)
    hashes = (request_hash, _legacy_request_hash(contacts, content, attachments))

    writer = _RequestWriter(
        shared={
            "category": category,
            "explicit_address": to_address is not None,
            "recipient_key_id": recipient_key.pk if recipient_key else None,
            "in_reply_to": in_reply_to or "",
            "references": references,
            "sensitive": sensitive,
        },
        attachments=attachments,
        to_address=to_address,
        recipient_key=recipient_key,
    )
    if idempotency_key is not None:
        _check_no_nul(idempotency_key, "idempotency_key")
        idempotency_key = idempotency_key.strip()
        if not 1 <= len(idempotency_key) <= 200:
            raise EnqueueError(
                "idempotency_key", "idempotency_key must have 1 to 200 characters"
            )
        existing = _existing_request(source, idempotency_key, hashes)
        if existing is not None:
            return _repeat(existing, writer, rendered_rows)

    # Without an idempotency key a failed call must store nothing, because
    # its caller can only repeat it whole.
    first = len(rendered_rows) if idempotency_key is None else COMMIT_CHUNK
    chunked = len(rendered_rows) > first
    try:
        with transaction.atomic():
            request = SendRequest.objects.create(
                source=source,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                recipients=len(rendered_rows),
                complete=not chunked,
                lease_until=timezone.now() + REQUEST_LEASE if chunked else None,
                lease_token=writer.token if chunked else "",
            )
            messages = writer.insert(request, rendered_rows[:first])
    except IntegrityError:
        if idempotency_key is None:
            raise
        # Another call with the same key committed first.
        existing = _existing_request(source, idempotency_key, hashes)
        if existing is None:
            raise
        return _repeat(existing, writer, rendered_rows)
    if chunked:
        try:
            messages += writer.store_rest(
                request, rendered_rows[first:], stored=len(messages)
            )
        except RequestTakenOver:
            # A repeat of this request took it over while this call stalled.
            request.refresh_from_db()
            return _repeat(request, writer, rendered_rows)
    logger.info(
        "enqueued request %d: %d message(s), category %s, source %s",
        request.pk,
        len(messages),
        category,
        source,
    )
    return messages, False


RenderedRow = tuple[Contact, str, str | None, str | None]


@dataclass
class _RequestWriter:
    """Store the messages of one request, one committed transaction per chunk.

    The worker starts on a chunk as soon as it commits, so a large request
    is delivered while the rest is still being stored. Until the last chunk
    commits, the request is marked incomplete, with a lease that the storing
    call renews per chunk. A repeat of a request whose call failed midway
    stores only the missing recipients (see :func:`_repeat`).
    """

    shared: dict[str, Any]
    attachments: Sequence[Attachment]
    to_address: str | None
    recipient_key: ContactKey | None
    stored_attachments: list[dict[str, Any]] | None = None
    # Names this call as the one storing a chunked request.
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    def insert(
        self, request: SendRequest, chunk: Sequence[RenderedRow]
    ) -> list[OutboxMessage]:
        """Insert one message per row of ``chunk``; queue them when the transaction commits."""
        if self.stored_attachments is None:
            self.stored_attachments = _store_blobs(self.attachments)
        shared = {
            **self.shared,
            "attachments": self.stored_attachments,
            "next_attempt": timezone.now(),
        }
        rows = [
            {
                "contact_id": contact.pk,
                "customer_id": contact.customer_id,
                "to_address": self.to_address or contact.address,
                "subject": row_subject,
                "text": row_text,
                "html": row_html,
                "message_id": _message_id(),
            }
            for contact, row_subject, row_text, row_html in chunk
        ]
        messages = insert_messages(request, shared, rows)
        contact_field = OutboxMessage._meta.get_field("contact")
        for message, (contact, *_content) in zip(messages, chunk, strict=True):
            contact_field.set_cached_value(message, contact)
            if self.recipient_key is not None:
                message.recipient_key = self.recipient_key
        ids = [message.pk for message in messages]
        transaction.on_commit(lambda: schedule_delivery(ids))
        return messages

    def store_rest(
        self, request: SendRequest, rows: Sequence[RenderedRow], stored: int
    ) -> list[OutboxMessage]:
        """Insert ``rows`` in committed chunks, then mark ``request`` complete.

        ``stored`` is the number of the request's messages stored before.
        """
        chunks = [
            rows[start : start + COMMIT_CHUNK]
            for start in range(0, len(rows), COMMIT_CHUNK)
        ]
        messages: list[OutboxMessage] = []
        try:
            for index, chunk in enumerate(chunks):
                with transaction.atomic():
                    # Renewing first locks the request row, so a repeat
                    # cannot take the request over while this chunk is stored.
                    self.renew(request)
                    messages += self.insert(request, chunk)
                    if index == len(chunks) - 1:
                        _mark_complete(request)
            if not chunks:
                with transaction.atomic():
                    self.renew(request)
                    _mark_complete(request)
        except RequestTakenOver:
            logger.warning(
                "request %d was taken over by a repeat after this call stored "
                "%d of its %d message(s); this call stops storing",
                request.pk,
                stored + len(messages),
                request.recipients,
            )
            raise
        except Exception:
            logger.exception(
                "request %d failed after storing %d of its %d message(s); the "
                "stored ones are queued, and a repeat with the same idempotency "
                "key stores the rest",
                request.pk,
                stored + len(messages),
                request.recipients,
            )
            raise
        return messages


    def renew(self, request: SendRequest) -> None:
        """Extend this call's lease on ``request``; raise RequestTakenOver if it lost it."""
        renewed = SendRequest.objects.filter(
            pk=request.pk, lease_token=self.token, complete=False
        ).update(lease_until=timezone.now() + REQUEST_LEASE)
        if not renewed:
            raise RequestTakenOver(
                "idempotency_key",
                f"request {request.pk} was taken over by a repeat with the same "
                "idempotency key; repeat this call after that one has finished",
                retry_after=int(REQUEST_LEASE.total_seconds()),
            )


def _mark_complete(request: SendRequest) -> None:
    SendRequest.objects.filter(pk=request.pk).update(
        complete=True, lease_until=None, lease_token=""
    )
    request.complete = True
    request.lease_until = None
    request.lease_token = ""


def _repeat(
    request: SendRequest, writer: _RequestWriter, rendered_rows: Sequence[RenderedRow]
) -> tuple[list[OutboxMessage], bool]:
    """Return the messages of a repeated request, storing missing ones first.

    A request is missing messages when the call that stored it failed
    midway. Returns the messages and whether the request was complete
    already.
    Raises :class:`RequestInProgress` while another call still stores it.
    """
    if not request.complete:
        now = timezone.now()
        claimed = (
            SendRequest.objects.filter(pk=request.pk, complete=False)
            .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
            .update(lease_until=now + REQUEST_LEASE, lease_token=writer.token)
        )
        request.refresh_from_db(fields=["complete", "lease_until", "lease_token"])
        if claimed:
            stored = set(request.messages.values_list("contact_id", flat=True))
            missing = [row for row in rendered_rows if row[0].pk not in stored]
            logger.info(
                "request %d repeated after it stopped midway; storing the "
                "missing %d of %d message(s)",
                request.pk,
                len(missing),
                request.recipients,
            )
            writer.store_rest(request, missing, stored=len(stored))
            return list(request.messages.order_by("id")), False
        if not request.complete:
            wait = request.lease_until - now if request.lease_until else REQUEST_LEASE
            raise RequestInProgress(
                "idempotency_key",
                f"a call with idempotency_key {request.idempotency_key!r} is still "
                f"storing its {request.recipients} messages; repeat this call "
                "after it has finished",
                retry_after=max(1, math.ceil(wait.total_seconds())),
            )
    logger.info("request %d repeated with its idempotency key", request.pk)
    return list(request.messages.order_by("id")), True


def insert_messages(
    request: SendRequest, shared: dict[str, Any], rows: list[dict[str, Any]]
) -> list[OutboxMessage]:
    """Insert one message of ``request`` per entry of ``rows``; return them with ids.

    ``shared`` maps field attnames to the values that every row has. Each
    entry of ``rows`` maps the attnames that differ per row to that row's
    values, with the same keys in each entry.
    Other fields get their defaults. ``bulk_create`` compiles every value of
    every row in Python, and SQLite's 999-parameter limit splits the rows
    into statements of a few dozen. One parameterized INSERT run per row,
    with the shared values converted once, is several times faster. The ids
    come back from one SELECT by the request, matched on the unique
    Message-ID.
    """
    meta = OutboxMessage._meta
    quote = connection.ops.quote_name
    now = timezone.now()
    shared = {"request_id": request.pk, "created": now, "updated": now, **shared}
    varying = set(rows[0]) if rows else set()
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    sql = (
        f"INSERT INTO {quote(meta.db_table)} "
        f"({', '.join(quote(field.column) for field in fields)}) "
        f"VALUES ({', '.join(['%s'] * len(fields))})"
    )
    template: list[Any] = []  # Python values, in column order
    prepared: list[Any] = []  # the same, converted for the database
    converters = []  # (column index, converter) of the values that differ per row
    for index, field in enumerate(fields):
        if field.attname in varying:
            template.append(None)
            prepared.append(None)
            converters.append((index, ValueConverter(field)))
            continue
        value = shared[field.attname] if field.attname in shared else field.get_default()
        template.append(value)
        prepared.append(field.get_db_prep_save(value, connection))
    params = []
    for row in rows:
        values = prepared.copy()
        for index, convert in converters:
            values[index] = convert(row[convert.attname])
        params.append(values)
    with connection.cursor() as cursor:
        for start in range(0, len(params), INSERT_BATCH):
            cursor.executemany(sql, params[start : start + INSERT_BATCH])
    # Slices of COMMIT_CHUNK keep each IN list far below SQLite's default
    # limit of 32,766 parameters (SQLite 3.32 and later).
    message_ids = [row["message_id"] for row in rows]
    ids: dict[str, int] = {}
    for start in range(0, len(message_ids), COMMIT_CHUNK):
        ids.update(
            OutboxMessage.objects.filter(
                request=request,
                message_id__in=message_ids[start : start + COMMIT_CHUNK],
            ).values_list("message_id", "id")
        )
    messages = []
    for row in rows:
        values = template.copy()
        for index, convert in converters:
            values[index] = row[convert.attname]
        # Positional arguments in field order skip the keyword path of
        # Model.__init__, which looks up every field's default.
        message = OutboxMessage(ids[row["message_id"]], *values)
        message._state.adding = False
        message._state.db = connection.alias
        messages.append(message)
    return messages


def _existing_request(
    source: str, idempotency_key: str, hashes: Sequence[str]
) -> SendRequest | None:
    """Return the request stored under ``idempotency_key``, or None.

    Raises IdempotencyConflict when its hash is not among ``hashes``.
    """
    request = SendRequest.objects.filter(
        source=source, idempotency_key=idempotency_key
    ).first()
    if request is None:
        return None
    if request.request_hash not in hashes:
        raise IdempotencyConflict(
            "idempotency_key",
            f"idempotency_key {idempotency_key!r} was already used for a different "
            "message; use a new key for new content",
        )
    return request


def schedule_delivery(ids: Sequence[int]) -> None:
    """Hand message ids to the worker in batches; a failure is left to the sweep."""
    from sealmail.outbox import tasks

    try:
        tasks.schedule_batches(list(ids))
    except Exception:
        # The rows are committed; the periodic sweep queues them later.
        logger.exception(
            "queueing %d message(s) for delivery failed; the sweep retries", len(ids)
        )


def release_held(contact: Contact) -> int:
    """Queue every message held for ``contact`` again and return how many.

    The portal calls this once the contact confirmed a new key; the worker
    then encrypts the released messages to that key. The periodic sweep also
    releases held messages of contacts whose encryption is active again.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            OutboxMessage.objects.filter(
                contact=contact, status=OutboxMessage.Status.HELD
            ).values_list("id", flat=True)
        )
        if ids:
            OutboxMessage.objects.filter(
                id__in=ids, status=OutboxMessage.Status.HELD
            ).update(
                status=OutboxMessage.Status.QUEUED,
                hold_reason="",
                next_attempt=now,
                lease_until=None,
                updated=now,
            )
            transaction.on_commit(lambda: schedule_delivery(ids))
        NoticeState.objects.filter(contact=contact).update(last_notice=None)
    if ids:
        logger.info("released %d held message(s) of contact %d", len(ids), contact.pk)
    return len(ids)
