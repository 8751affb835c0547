"""Measure how fast a mass outage fans out into outbox messages.

Creates a throwaway instance with N customers, each with one contact, its
own Cv25519 key and one line, then times:

- baseline: the outbox's own bulk enqueue of N messages with one text;
- one line-status event that names all N lines (each customer gets its
  own text): storing it, then the worker's batch that mails it;
- the same lines coming back up inside the flap window, then closing the
  N windows with one summary each;
- a burst of N single-line events, one Python call each, and again as one
  HTTP request each through Django's test client (routing, token auth and
  validation included, no network): storing them, then the worker's batch.

Every event step ends when the outbox has stored one message per customer,
so its total compares with the baseline.

Usage: .venv/bin/python benchmarks/notifications_outage.py [N [WORKERS]]
Set DATABASE_URL to run on PostgreSQL instead of SQLite, and
SEALMAIL_QUEUE_URL=redis://... for a Redis task queue.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial

LINES = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
# Processes that send the bursts in parallel, like several monitoring
# clients against several web processes.
WORKERS = int(sys.argv[2]) if len(sys.argv) > 2 else 1

os.environ["SEALMAIL_DATA_DIR"] = tempfile.mkdtemp(prefix="sealmail-bench-")
os.environ.setdefault("SEALMAIL_FROM", "noc@provider.test")
os.environ.setdefault("SEALMAIL_LOG_LEVEL", "WARNING")
os.environ["DJANGO_SETTINGS_MODULE"] = "sealmail.project.settings"

import django  # noqa: E402

django.setup()

import pysequoia  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402

from sealmail.api.models import ApiToken  # noqa: E402
from sealmail.contacts.models import Contact, ContactKey, Customer  # noqa: E402
from sealmail.notifications.events import (  # noqa: E402
    close_due_windows,
    process_pending_events,
    record_line_events,
)
from sealmail.notifications.models import FlapWindow, Line, LineEvent  # noqa: E402
from sealmail.outbox.models import OutboxMessage, SendRequest  # noqa: E402
from sealmail.outbox.service import enqueue_bulk  # noqa: E402


def populate(count: int, prefix: str) -> list[str]:
    customers = Customer.objects.bulk_create(
        (
            Customer(account_number=f"{prefix}{i:06d}", name=f"Customer {i}")
            for i in range(count)
        ),
        batch_size=1000,
    )
    contacts = Contact.objects.bulk_create(
        (
            Contact(
                customer=c, address=f"noc{i}@{prefix.lower()}{i}.test", role="technical"
            )
            for i, c in enumerate(customers)
        ),
        batch_size=1000,
    )
    keys = []
    now = timezone.now()
    for contact in contacts:
        cert = pysequoia.Tsk.generate(
            user_ids=[contact.address],
            profile=pysequoia.Profile.RFC4880,
            cipher_suite=pysequoia.CipherSuite.Cv25519,
        ).extract_certificate()
        keys.append(
            ContactKey(
                contact=contact,
                fingerprint=cert.fingerprint,
                certificate=bytes(cert),
                version=4,
                algorithm="EdDSA/ECDH Cv25519",
                user_ids=[contact.address],
                key_created=now,
                usable_until=cert.expiration,
            )
        )
    keys = ContactKey.objects.bulk_create(keys, batch_size=1000)
    for contact, key in zip(contacts, keys, strict=True):
        contact.active_key = key
        contact.encryption = Contact.Encryption.ACTIVE
    Contact.objects.bulk_update(contacts, ["active_key", "encryption"], batch_size=1000)
    Line.objects.bulk_create(
        (
            Line(line_id=f"{prefix}L{i:06d}", customer=c)
            for i, c in enumerate(customers)
        ),
        batch_size=1000,
    )
    return [f"{prefix}L{i:06d}" for i in range(count)]


def report(label: str, elapsed: float) -> None:
    rate = LINES / elapsed if elapsed else float("inf")
    print(f"| {label} | {elapsed:.2f} | {rate:,.0f} |")


def timed(label: str, function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    elapsed = time.perf_counter() - start
    report(label, elapsed)
    return result, elapsed


def stored_then_batch(label: str, function, *args, **kwargs):
    """Time storing events with ``function``, then the worker's batch, and the sum."""
    _, stored = timed(f"{label}: store", function, *args, **kwargs)
    result, batch = timed(f"{label}: worker batch", process_pending_events)
    report(f"**{label}: total**", stored + batch)
    return result


def main() -> None:
    call_command("migrate", verbosity=0)
    print(f"# {LINES} lines, database {connection.vendor}\n")
    print("| step | seconds | lines per second |")
    print("|---|---:|---:|")
    start = time.perf_counter()
    line_ids = populate(LINES, "A")
    print(
        f"| setup: customers, contacts, keys, lines | {time.perf_counter() - start:.2f} | |"
    )

    contacts = list(Contact.objects.filter(customer__account_number__startswith="A"))
    timed(
        "baseline: outbox enqueue_bulk, one text for all",
        enqueue_bulk,
        contacts,
        category="line_status",
        subject="Outage",
        text="Your line is down.",
    )
    OutboxMessage.objects.all().delete()
    SendRequest.objects.all().delete()

    now = timezone.now()
    result = stored_then_batch(
        "one event naming every line (down)",
        record_line_events,
        line_ids,
        "down",
        reason="PoP power failure",
        now=now,
    )
    assert result.messages == LINES, result
    result = stored_then_batch(
        "one event, lines back up in the window",
        record_line_events,
        line_ids,
        "up",
        now=now + timedelta(seconds=60),
    )
    assert result.collected == LINES, result
    closed, _ = timed(
        "closing the windows, one summary each",
        close_due_windows,
        now=now + timedelta(seconds=301),
    )
    assert closed >= LINES, closed
    assert OutboxMessage.objects.count() == 2 * LINES

    burst_ids = populate(LINES, "B")
    before = OutboxMessage.objects.count()
    result = stored_then_batch(
        f"burst: one Python call per line, {WORKERS} process(es)",
        parallel,
        _call,
        burst_ids,
    )
    assert result.mailed == LINES, result
    assert OutboxMessage.objects.count() == before + LINES
    assert LineEvent.objects.filter(line__line_id__startswith="B").count() == LINES
    assert FlapWindow.objects.count() >= LINES

    http_ids = populate(LINES, "C")
    _, token = ApiToken.issue("benchmark")
    before = OutboxMessage.objects.count()
    result = stored_then_batch(
        f"burst: one HTTP request per line (test client, token auth), "
        f"{WORKERS} process(es)",
        parallel,
        partial(_post, token),
        http_ids,
    )
    assert result.mailed == LINES, result
    assert OutboxMessage.objects.count() == before + LINES
    assert LineEvent.objects.filter(line__line_id__startswith="C").count() == LINES


def _call(line_ids: list[str]) -> None:
    for line_id in line_ids:
        record_line_events([line_id], "down", reason="burst")
    connection.close()


def _post(token: str, line_ids: list[str]) -> None:
    client = Client(HTTP_HOST="127.0.0.1")
    for line_id in line_ids:
        response = client.post(
            "/api/v1/events/line-status",
            {"line_id": line_id, "state": "down", "reason": "burst"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token}",
        )
        assert response.status_code == 202, response.content
    connection.close()


def parallel(function, line_ids: list[str]) -> None:
    """Run ``function`` on WORKERS slices of ``line_ids`` in forked processes."""
    if WORKERS == 1:
        function(line_ids)
        return
    connection.close()  # forked children must open their own connections
    slices = [line_ids[i::WORKERS] for i in range(WORKERS)]
    with multiprocessing.get_context("fork").Pool(WORKERS) as pool:
        pool.map(function, slices)


if __name__ == "__main__":
    main()
