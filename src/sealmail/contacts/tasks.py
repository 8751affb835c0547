"""Periodic work of the portal, run by the Huey worker."""

from __future__ import annotations

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from sealmail.contacts.changes import expire_due_changes


@db_periodic_task(crontab(minute="*/15"))
def expire_pending_changes() -> int:
    """Mark pending contact changes past their expiry as expired, with an audit event."""
    return expire_due_changes()
