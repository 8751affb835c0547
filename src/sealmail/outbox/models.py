"""Outgoing messages, one row per recipient, stored before any attempt to send.

A row keeps the rendered content, the Message-ID chosen at enqueue time and,
once the worker composed it, the exact bytes that go on the wire. Retries
send those stored bytes again, so every copy a recipient may receive carries
the same Message-ID.
"""

from __future__ import annotations

from django.db import models

from sealmail.contacts.models import Contact, ContactKey, Customer


class Category(models.TextChoices):
    """The topic of a message, which selects the default template and the policy."""

    INVOICE = "invoice", "Invoice"
    ORDER_CONFIRMATION = "order_confirmation", "Order confirmation"
    DIRECT_DEBIT = "direct_debit", "Direct debit notice"
    ORDER_PROGRESS = "order_progress", "Order progress"
    LINE_STATUS = "line_status", "Line status"
    TICKET_REPLY = "ticket_reply", "Ticket reply"
    ACCOUNT_NOTICE = "account_notice", "Account notice"
    CUSTOM = "custom", "Custom"
    # Internal categories, sent by sealmail itself and not offered by the API.
    CONFIRMATION = "confirmation", "Key confirmation"
    KEY_PROBLEM = "key_problem", "Key problem notice"
    KEY_EXPIRY = "key_expiry", "Key expiry warning"


# Categories any caller may use through the API and the `send` command.
PUBLIC_CATEGORIES: tuple[str, ...] = (
    Category.INVOICE,
    Category.ORDER_CONFIRMATION,
    Category.DIRECT_DEBIT,
    Category.ORDER_PROGRESS,
    Category.LINE_STATUS,
    Category.TICKET_REPLY,
    Category.ACCOUNT_NOTICE,
    Category.CUSTOM,
)

# Categories whose text carries nothing about the customer's account, so they
# may go out unencrypted to a contact whose key became unusable.
CONTENT_FREE_CATEGORIES: frozenset[str] = frozenset({Category.KEY_PROBLEM})


class Blob(models.Model):
    """Attachment content, stored once per SHA-256 digest and shared by messages."""

    sha256 = models.CharField(max_length=64, unique=True)
    data = models.BinaryField()
    size = models.PositiveBigIntegerField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]} ({self.size} bytes)"


class SendRequest(models.Model):
    """One call to enqueue: the idempotency key and the messages it created."""

    source = models.CharField(
        max_length=100, help_text="API token name, 'cli' or the calling module"
    )
    idempotency_key = models.CharField(max_length=200, null=True, blank=True)
    request_hash = models.CharField(
        max_length=64, blank=True, help_text="SHA-256 of the request content"
    )
    recipients = models.PositiveIntegerField(
        default=0, help_text="messages the request creates, one per recipient"
    )
    complete = models.BooleanField(
        default=True,
        help_text="false while a large request is still storing its messages "
        "in chunks, or after it failed midway",
    )
    lease_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="an incomplete request belongs to the call storing it until then",
    )
    lease_token = models.CharField(
        max_length=32,
        blank=True,
        help_text="names the call that stores an incomplete request",
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["source", "idempotency_key"],
                name="outbox_sendrequest_unique_key",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.source} {self.idempotency_key or self.pk}"


class OutboxMessage(models.Model):
    """One outgoing message to one recipient address."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        HELD = "held", "Held until the contact has a usable key"
        FAILED = "failed", "Failed"

    request = models.ForeignKey(
        SendRequest, on_delete=models.PROTECT, related_name="messages"
    )
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="outbox_messages"
    )
    customer = models.ForeignKey(
        Customer, null=True, on_delete=models.SET_NULL, related_name="outbox_messages"
    )
    category = models.CharField(max_length=32, choices=Category.choices)
    to_address = models.EmailField(max_length=254)
    explicit_address = models.BooleanField(
        default=False,
        help_text="sent to to_address even if the contact's address changes",
    )
    recipient_key = models.ForeignKey(
        ContactKey,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text="encrypt to this key instead of the contact's active key",
    )
    subject = models.CharField(max_length=998)
    text = models.TextField(null=True, blank=True)
    html = models.TextField(null=True, blank=True)
    sensitive = models.BooleanField(
        default=False,
        help_text="holds a one-time link; text, HTML and unencrypted bytes are "
        "erased once sent",
    )
    attachments = models.JSONField(
        default=list, blank=True, help_text="[{filename, content_type, sha256, size}]"
    )
    message_id = models.CharField(max_length=250, unique=True)
    in_reply_to = models.CharField(max_length=250, blank=True)
    references = models.JSONField(default=list, blank=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    next_attempt = models.DateTimeField(db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_token = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_attempt = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    composed = models.BinaryField(null=True, editable=False)
    format = models.CharField(max_length=10, blank=True)
    encrypted_to = models.CharField(max_length=64, blank=True)
    signed_by = models.CharField(max_length=64, blank=True)
    relay_reply = models.TextField(blank=True)
    tls_protocol = models.CharField(max_length=20, blank=True)
    tls_cipher = models.CharField(max_length=100, blank=True)
    error = models.TextField(blank=True)
    hold_reason = models.CharField(max_length=32, blank=True)

    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["contact", "status"], name="outbox_contact_status"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.category} {self.status}"

    @property
    def encrypted(self) -> bool:
        return bool(self.encrypted_to)


class NoticeState(models.Model):
    """The time a contact was last notified that mail is held for an unusable key."""

    contact = models.OneToOneField(
        Contact, on_delete=models.CASCADE, related_name="outbox_notice_state"
    )
    last_notice = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"notice state of contact {self.contact_id}"
