"""Huey tasks of the notifications: line event batches, flap windows, key check.

Every task works from the database, so it does not matter which worker runs
it or whether several run it at once: closing a window locks it, and each
expiry warning is recorded once per key, expiry time and threshold.
"""

from __future__ import annotations

import logging

from django.conf import settings
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task, lock_task

from sealmail.notifications import events
from sealmail.notifications import keys as key_lifecycle

logger = logging.getLogger(__name__)


@db_task(retries=3, retry_delay=30)
def process_events() -> int:
    """Mail the pending line events in batches; scheduled just after they arrive."""
    return events.process_pending_events().recorded


@db_task(retries=3, retry_delay=30)
def close_windows() -> int:
    """Close the flap windows that are due; scheduled for the time a window ends."""
    # Pending events first, because one of them may belong in a due window.
    events.process_pending_events()
    return events.close_due_windows()


@db_periodic_task(crontab(minute="*"))
def sweep_windows() -> int:
    """Process pending events and close due windows whose scheduled task was lost.

    Tasks are lost, for example, when the queue is flushed or a process
    stops between storing an event and scheduling its task.
    """
    events.process_pending_events()
    return events.close_due_windows()


@db_periodic_task(crontab(hour=str(settings.SEALMAIL_KEY_CHECK_HOUR), minute="15"))
def daily_key_check() -> None:
    """Refresh opted-in keys by WKD, re-validate every key and send expiry warnings."""
    # The lock lives in the queue storage, so with several consumers on a
    # shared Redis only one of them runs the check.
    with lock_task("sealmail-daily-key-check"):
        key_lifecycle.run_daily_check()
