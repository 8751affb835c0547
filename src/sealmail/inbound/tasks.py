"""Huey tasks: parse stored inbound mail, and pick up any that was never queued."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone
from huey import crontab
from huey.contrib.djhuey import db_periodic_task, db_task

from sealmail.inbound import processing
from sealmail.inbound.models import InboundMessage

logger = logging.getLogger(__name__)


@db_task(retries=3, retry_delay=30)
def parse_inbound(message_id: int) -> None:
    """Parse the message and others waiting in its batch slot (see process_pending)."""
    processing.process_pending(message_id)


@db_periodic_task(crontab(minute="*/5"))
def parse_forgotten() -> None:
    """Queue messages still unparsed after five minutes, e.g. when queueing failed."""
    cutoff = timezone.now() - timedelta(minutes=5)
    ids = list(
        InboundMessage.objects.filter(
            state=InboundMessage.State.RECEIVED, received_at__lt=cutoff
        ).values_list("pk", flat=True)[:1000]
    )
    for message_id in ids:
        parse_inbound(message_id)
    if ids:
        logger.info("queued %d inbound messages left unparsed", len(ids))
