"""Periodic work of the portal, run by the Huey worker."""

from __future__ import annotations

from datetime import timedelta

from huey import crontab
from huey.contrib.djhuey import db_periodic_task

from sealmail.contacts import ratelimit
from sealmail.contacts.changes import expire_due_changes


@db_periodic_task(crontab(minute="*/15"))
def expire_pending_changes() -> int:
    """Mark pending contact changes past their expiry as expired, with an audit event."""
    return expire_due_changes()


@db_periodic_task(crontab(minute="7"))
def purge_rate_limit_hits() -> int:
    """Delete rate-limit hits older than a day; every window is shorter than that."""
    return ratelimit.purge(timedelta(days=1))
