"""Line and order registries, the events received for them, flap windows and
the key lifecycle records.

Every piece of state that decides whether a mail goes out lives in these
tables, never in process memory, so any number of web and worker processes
can take events and close windows at the same time.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from sealmail.contacts.models import Contact, ContactKey, Customer


class Line(models.Model):
    """A customer's line (connection) as the provider's monitoring names it."""

    line_id = models.CharField(max_length=128, unique=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="lines"
    )
    label = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["line_id"]

    def __str__(self) -> str:
        return self.line_id


class Order(models.Model):
    """A customer's order as the provider's ordering system names it."""

    order_id = models.CharField(max_length=128, unique=True)
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="orders"
    )
    label = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order_id"]

    def __str__(self) -> str:
        return self.order_id


class FlapWindow(models.Model):
    """A period after a line changed state in which further changes are collected.

    The first change of a quiet line is mailed at once and opens a window.
    Changes inside the window are only recorded, and when the window closes
    they go out as one summary mail. A window that closes with changes in it
    is followed by a ``continuation`` window, whose first change is not
    mailed at once, so a line that keeps flapping gets one mail per window.
    """

    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="windows")
    opened = models.DateTimeField()
    closes = models.DateTimeField(db_index=True)
    continuation = models.BooleanField(default=False)
    closed = models.DateTimeField(null=True, blank=True)
    summary_sent = models.BooleanField(default=False)

    class Meta:
        ordering = ["opened"]
        constraints = [
            models.UniqueConstraint(
                fields=["line"],
                condition=Q(closed__isnull=True),
                name="flapwindow_one_open_per_line",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.line_id} {self.opened:%Y-%m-%d %H:%M:%S}"


class LineEvent(models.Model):
    """One line status change as the monitoring system reported it."""

    class State(models.TextChoices):
        UP = "up", "up"
        DOWN = "down", "down"

    class Handling(models.TextChoices):
        MAILED = "mailed", "mailed at once"
        WINDOW = "window", "collected for the window's summary"
        REPEAT = "repeat", "same state as before, not mailed"
        LATE = "late", "older than the line's latest event, not mailed"
        PENDING = "pending", "stored, waiting for the worker's next batch"

    line = models.ForeignKey(Line, on_delete=models.CASCADE, related_name="events")
    state = models.CharField(max_length=4, choices=State.choices)
    occurred = models.DateTimeField(
        help_text="when the monitoring system saw the change"
    )
    received = models.DateTimeField()
    reason = models.CharField(max_length=500, blank=True)
    source_id = models.CharField(
        max_length=128, blank=True, help_text="the sender's event id, for deduplication"
    )
    window = models.ForeignKey(
        FlapWindow, null=True, on_delete=models.SET_NULL, related_name="events"
    )
    handling = models.CharField(max_length=10, choices=Handling.choices)

    class Meta:
        ordering = ["occurred", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["line", "source_id"],
                condition=~Q(source_id=""),
                name="lineevent_unique_source_id",
            ),
        ]
        indexes = [
            models.Index(
                fields=["received"],
                condition=Q(handling="pending"),
                name="lineevent_pending",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.line_id} {self.state} {self.occurred:%Y-%m-%d %H:%M:%S}"


class OrderEvent(models.Model):
    """One order progress step as the ordering system reported it."""

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    stage = models.CharField(max_length=100)
    text = models.TextField(blank=True)
    occurred = models.DateTimeField()
    received = models.DateTimeField()
    source_id = models.CharField(max_length=128, blank=True)

    class Meta:
        ordering = ["occurred", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["order", "source_id"],
                condition=~Q(source_id=""),
                name="orderevent_unique_source_id",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.stage}"


class KeyExpiryWarning(models.Model):
    """A warning sent to a contact that its key stops being usable soon.

    One row per key, expiry time and threshold, so a job that runs twice
    sends each warning once, and a refreshed key with a new expiry time gets
    its warnings again.
    """

    key = models.ForeignKey(ContactKey, on_delete=models.CASCADE, related_name="+")
    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    usable_until = models.DateTimeField()
    days_before = models.PositiveSmallIntegerField()
    sent = models.DateTimeField()

    class Meta:
        ordering = ["-sent"]
        constraints = [
            models.UniqueConstraint(
                fields=["key", "usable_until", "days_before"],
                name="keyexpirywarning_once",
            ),
        ]


class KeyEvent(models.Model):
    """A change in a contact key's lifecycle, kept for staff and for tests.

    ``kind`` is one of the ``Kind`` values; ``detail`` contains the reason code
    or the fingerprint that a WKD lookup returned.
    """

    class Kind(models.TextChoices):
        REFRESHED = "refreshed", "refreshed copy accepted"
        UNCHANGED = "unchanged", "refreshed copy brought nothing new"
        UNUSABLE = "unusable", "key became unusable"
        OTHER_FINGERPRINT = "other_fingerprint", "WKD returned another key"
        WKD_FAILED = "wkd_failed", "WKD lookup failed"

    contact = models.ForeignKey(Contact, on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey(
        ContactKey, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=20, help_text="upload, wkd or daily check")
    detail = models.CharField(max_length=200, blank=True)
    created = models.DateTimeField()

    class Meta:
        ordering = ["-created", "-id"]
