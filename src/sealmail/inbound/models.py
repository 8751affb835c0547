"""Inbound messages, the tickets they open or continue, and their parts.

An ``InboundMessage`` is written raw before the SMTP/LMTP server replies
250; parsing fills in the rest later, so a message that cannot be parsed or
decrypted is still kept and shown with the reason.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Ticket(models.Model):
    """A conversation with a customer in one queue (the role address)."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        WAITING = "waiting", "Waiting for customer"
        CLOSED = "closed", "Closed"

    queue = models.CharField(max_length=254, db_index=True)
    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.OPEN, db_index=True
    )
    subject = models.CharField(max_length=998, blank=True)
    customer = models.ForeignKey(
        "contacts.Customer",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tickets",
    )
    contact = models.ForeignKey(
        "contacts.Contact",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="tickets",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["-updated"]

    def __str__(self) -> str:
        return f"{self.reference} {self.subject}"

    @property
    def reference(self) -> str:
        """The ticket reference that replies carry in their Subject, e.g. ``SM-42``."""
        return f"SM-{self.pk}"


class InboundMessage(models.Model):
    """A message as received over SMTP or LMTP, stored before it is parsed."""

    class State(models.TextChoices):
        RECEIVED = "received", "Received, not parsed yet"
        PARSED = "parsed", "Parsed"
        FAILED = "failed", "Parsing failed"

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    protocol = models.CharField(max_length=8)  # "smtp" or "lmtp"
    peer = models.CharField(max_length=100)
    mail_from = models.CharField(max_length=998, blank=True)
    rcpt_to = models.JSONField(default=list)
    raw = models.BinaryField()
    size = models.PositiveIntegerField()

    state = models.CharField(
        max_length=10, choices=State.choices, default=State.RECEIVED, db_index=True
    )
    parse_error = models.TextField(blank=True)
    parsed_at = models.DateTimeField(null=True, blank=True)
    ticket = models.ForeignKey(
        Ticket,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    subject = models.CharField(max_length=998, blank=True)
    sender = models.CharField(max_length=998, blank=True)  # inner From if protected
    message_id = models.CharField(max_length=998, blank=True, db_index=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = models.JSONField(default=list, blank=True)
    # "none", "full" or "partial", see sealmail.core.mime.inbound.MessageEncryption
    encryption = models.CharField(max_length=10, blank=True)
    signed_by_customer = models.BooleanField(default=False)
    signer_fingerprint = models.CharField(max_length=64, blank=True)
    protected_headers = models.BooleanField(default=False)
    repaired_mixed_up = models.BooleanField(default=False)
    defects = models.JSONField(default=list, blank=True)
    failures = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"inbound #{self.pk}"


class MessagePart(models.Model):
    """One leaf of an inbound message with its own security status."""

    message = models.ForeignKey(
        InboundMessage, on_delete=models.CASCADE, related_name="parts"
    )
    position = models.PositiveIntegerField()
    path = models.CharField(max_length=200)
    content_type = models.CharField(max_length=255)
    filename = models.CharField(max_length=255, blank=True)
    original_filename = models.CharField(max_length=255, blank=True)
    is_attachment = models.BooleanField(default=False)
    content = models.BinaryField()
    text = models.TextField(blank=True)
    charset = models.CharField(max_length=64, blank=True)
    # "none", "decrypted" or "failed"
    encryption = models.CharField(max_length=10)
    kind = models.CharField(max_length=20, blank=True)
    failure = models.JSONField(null=True, blank=True)
    signatures = models.JSONField(default=list, blank=True)
    defects = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["message", "position"]

    def __str__(self) -> str:
        return f"part {self.path} of inbound #{self.message_id}"


class TicketReply(models.Model):
    """A reply or acknowledgement sent to the customer through the outbox."""

    class Kind(models.TextChoices):
        REPLY = "reply", "Reply by staff"
        ACKNOWLEDGEMENT = "ack", "Automatic acknowledgement"

    ticket = models.ForeignKey(Ticket, on_delete=models.CASCADE, related_name="replies")
    kind = models.CharField(max_length=5, choices=Kind.choices)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    text = models.TextField()
    outbox_id = models.CharField(max_length=64, blank=True)
    message_id = models.CharField(max_length=998, blank=True, db_index=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created"]
