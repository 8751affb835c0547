"""Customers, their contacts and the public keys registered for them.

A ``Contact`` is where mail goes: an address, a role, a mode (PGP/MIME or
inline) and an encryption status. Its ``active_key`` is the certificate that
outgoing mail is encrypted to; it is set only once the customer proved they
can decrypt with it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from sealmail.core.pgp.ops import recipient_check
from sealmail.core.pgp.packets import PacketError


class Customer(models.Model):
    """A customer account of the provider, identified by its account number."""

    account_number = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="customers", blank=True
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_number"]

    def __str__(self) -> str:
        return f"{self.account_number} {self.name}"


class Contact(models.Model):
    """An address of a customer that receives mail in one role."""

    class Role(models.TextChoices):
        GENERAL = "general", "General"
        BILLING = "billing", "Billing"
        TECHNICAL = "technical", "Technical"

    class Mode(models.TextChoices):
        PGPMIME = "pgpmime", "PGP/MIME"
        INLINE = "inline", "Inline PGP"

    class Encryption(models.TextChoices):
        NONE = "none", "No encryption"
        PENDING = "pending", "Waiting for confirmation"
        ACTIVE = "active", "Encryption active"
        KEY_PROBLEM = "key_problem", "Key unusable"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="contacts")
    address = models.EmailField(max_length=254, db_index=True)
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.GENERAL)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.PGPMIME)
    encryption = models.CharField(
        max_length=12, choices=Encryption.choices, default=Encryption.NONE
    )
    active_key = models.ForeignKey(
        "ContactKey", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    wkd_refresh = models.BooleanField(
        default=False,
        help_text="look for a refreshed copy of the active key in the address's "
        "Web Key Directory",
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer", "role", "address"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "role", "address"], name="contact_unique_role_address"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.address} ({self.get_role_display()}, {self.customer.account_number})"

    @property
    def encryption_on(self) -> bool:
        """Whether the customer turned encryption on: mail must never go out in clear.

        True for an active key and for a key that became unusable since,
        because the customer asked for encryption in both cases.
        """
        return self.encryption in {self.Encryption.ACTIVE, self.Encryption.KEY_PROBLEM}


class ContactKey(models.Model):
    """A public certificate offered for a contact, as sealmail stored it.

    ``certificate`` is the binary certificate after intake stripped
    third-party certifications; secret key material is never stored.
    """

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="keys")
    fingerprint = models.CharField(max_length=64, db_index=True)
    certificate = models.BinaryField(editable=False)
    version = models.PositiveSmallIntegerField()
    algorithm = models.CharField(max_length=64)
    user_ids = models.JSONField(default=list, blank=True)
    key_created = models.DateTimeField()
    usable_until = models.DateTimeField(null=True, blank=True)
    added = models.DateTimeField(auto_now_add=True)
    last_checked = models.DateTimeField(null=True, blank=True)
    problem = models.CharField(
        max_length=32, blank=True, help_text="reason code when the key became unusable"
    )
    # The encryption layer's check of ``certificate``
    # (sealmail.core.pgp.ops.RecipientCheck.to_json), kept so that workers
    # do not inspect the certificate again for every message. It contains the
    # time until which it is valid and the digest of the bytes it describes.
    send_check = models.JSONField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-added"]

    def __str__(self) -> str:
        return self.fingerprint.upper()

    def refresh_send_check(self) -> None:
        """Check ``certificate`` as the encryption layer does and keep the result in ``send_check``."""
        try:
            self.send_check = recipient_check(bytes(self.certificate)).to_json()
        except PacketError:
            self.send_check = None


class PendingChange(models.Model):
    """A contact change that waits for the customer to follow the link we mailed.

    The contact keeps its current settings until the change is confirmed.
    Only the HMAC-SHA256 of the link's token is stored, so a database dump
    cannot confirm anything.
    """

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for confirmation"
        CONFIRMED = "confirmed", "Confirmed"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"
        SUPERSEDED = "superseded", "Replaced by a newer request"

    contact = models.ForeignKey(
        Contact, on_delete=models.CASCADE, related_name="changes"
    )
    state = models.CharField(
        max_length=12, choices=State.choices, default=State.PENDING
    )
    new_address = models.EmailField(max_length=254)
    new_mode = models.CharField(max_length=10, choices=Contact.Mode.choices)
    new_key = models.ForeignKey(
        ContactKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    remove_key = models.BooleanField(default=False)
    # Where the confirmation mail went and the key it was encrypted to.
    sent_to = models.EmailField(max_length=254)
    sent_encrypted_to = models.CharField(max_length=64, blank=True)
    # The contact as it was when the change was requested, for the notice.
    previous_address = models.EmailField(max_length=254)
    previous_key = models.ForeignKey(
        ContactKey, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    token_hash = models.CharField(max_length=64, editable=False)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    requested_via = models.CharField(max_length=100, blank=True)
    client_address = models.GenericIPAddressField(null=True, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    expires = models.DateTimeField()
    resolved = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        constraints = [
            models.UniqueConstraint(
                fields=["contact"],
                condition=models.Q(state="pending"),
                name="pendingchange_one_pending_per_contact",
            ),
        ]

    def __str__(self) -> str:
        return f"change {self.pk} of contact {self.contact_id} ({self.state})"


class AuditEvent(models.Model):
    """One contact or key event: who did it, when and from which client address."""

    class Kind(models.TextChoices):
        REQUESTED = "requested", "Change requested"
        CONFIRMED = "confirmed", "Change confirmed"
        CANCELLED = "cancelled", "Change cancelled"
        EXPIRED = "expired", "Change expired"
        NOTICE_SENT = "notice_sent", "Change notice sent"
        MODE_CHANGED = "mode_changed", "Mode changed"
        KEY_REJECTED = "key_rejected", "Key rejected"
        WKD_REFRESH_ON = "wkd_refresh_on", "WKD key refresh turned on"
        WKD_REFRESH_OFF = "wkd_refresh_off", "WKD key refresh turned off"

    customer = models.ForeignKey(
        Customer, null=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    contact = models.ForeignKey(
        Contact, null=True, on_delete=models.SET_NULL, related_name="audit_events"
    )
    change = models.ForeignKey(
        PendingChange,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.CharField(
        max_length=200, help_text="user name, API token name or 'system'"
    )
    client_address = models.GenericIPAddressField(null=True, blank=True)
    time = models.DateTimeField(auto_now_add=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-time", "-id"]

    def __str__(self) -> str:
        return f"{self.time:%Y-%m-%d %H:%M} {self.kind} contact {self.contact_id}"


class RateLimitHit(models.Model):
    """One counted attempt (change request, failed login) for a rate-limit bucket.

    Counters live in the database so that every web process on every host
    reads the same count.
    """

    bucket = models.CharField(max_length=200)
    time = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["bucket", "time"])]
