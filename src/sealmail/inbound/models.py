from __future__ import annotations

from django.db import models


class InboundMessage(models.Model):
    """A message as received over SMTP or LMTP, stored before it is parsed."""

    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    protocol = models.CharField(max_length=8)  # "smtp" or "lmtp"
    peer = models.CharField(max_length=100)
    mail_from = models.CharField(max_length=998, blank=True)
    rcpt_to = models.JSONField(default=list)
    raw = models.BinaryField()
    size = models.PositiveIntegerField()

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"inbound #{self.pk} from {self.mail_from or '<>'}"
