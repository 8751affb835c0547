"""Line events stored as pending and mailed by the worker's batch."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from sealmail.contacts.models import Contact
from sealmail.notifications import tasks
from sealmail.notifications.events import (
    close_due_windows,
    process_pending_events,
    record_line_events,
)
from sealmail.notifications.models import FlapWindow, LineEvent
from sealmail.notifications.registry import Entry, sync
from tests.notifications.conftest import at, make_customer

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

CUSTOMERS = 40


def line_mails():
    from sealmail.outbox.models import OutboxMessage

    return list(
        OutboxMessage.objects.filter(category="line_status")
        .select_related("contact")
        .order_by("id")
    )


@pytest.fixture
def lines(db, settings) -> list[str]:
    """Customers with two lines each; every customer has two technical contacts.

    Customer 0 also has a billing contact, who gets no line mail.
    """
    settings.SEALMAIL_FLAP_WINDOW_SECONDS = 300
    entries = []
    for i in range(CUSTOMERS):
        customer = make_customer(f"K-{i:03d}")
        for who in ("noc", "oncall"):
            Contact.objects.create(
                customer=customer, address=f"{who}@c{i}.test", role="technical"
            )
        entries.append(Entry(f"L-{i:03d}-a", customer.account_number))
        entries.append(Entry(f"L-{i:03d}-b", customer.account_number))
    Contact.objects.create(
        customer=customer, address="billing@c0.test", role="billing"
    )
    sync("lines", entries)
    return [entry.item_id for entry in entries]


def test_intake_stores_pending_without_mail(lines):
    result = record_line_events([lines[0]], "down", now=at("16:00:00"))
    assert result.recorded == 1
    event = LineEvent.objects.get()
    assert event.handling == LineEvent.Handling.PENDING
    assert event.window is None
    assert line_mails() == []
    assert not FlapWindow.objects.exists()


def test_burst_one_mail_per_contact(lines):
    for second, line_id in enumerate(lines):
        record_line_events(
            [line_id], "down", reason="PoP outage", now=at(f"16:00:{second % 60:02d}")
        )
    result = process_pending_events()
    assert result.recorded == len(lines)
    assert result.mailed == len(lines)
    mails = line_mails()
    # Both lines of a customer are in one mail, sent to each technical contact.
    assert result.messages == 2 * CUSTOMERS
    assert len(mails) == 2 * CUSTOMERS
    addresses = [mail.to_address for mail in mails]
    assert len(set(addresses)) == len(addresses)
    assert "billing@c0.test" not in addresses
    first = next(mail for mail in mails if mail.to_address == "noc@c1.test")
    assert first.subject == "2 of your lines are down"
    assert "L-001-a" in first.text
    assert "L-001-b" in first.text
    assert "L-002-a" not in first.text
    assert FlapWindow.objects.filter(closed__isnull=True).count() == len(lines)
    assert not LineEvent.objects.filter(handling=LineEvent.Handling.PENDING).exists()
    assert process_pending_events().recorded == 0
    assert len(line_mails()) == 2 * CUSTOMERS


def test_burst_duplicates_ignored(lines):
    for line_id in lines[:10]:
        record_line_events([line_id], "down", source_id="mon-1", now=at("16:00:00"))
    repeated = [
        record_line_events([line_id], "down", source_id="mon-1", now=at("16:00:01"))
        for line_id in lines[:10]
    ]
    assert [result.duplicates for result in repeated] == [1] * 10
    assert [result.recorded for result in repeated] == [0] * 10
    assert process_pending_events().mailed == 10
    after = record_line_events(lines[:10], "down", source_id="mon-1")
    assert after.duplicates == 10
    assert after.recorded == 0
    assert process_pending_events().recorded == 0
    assert LineEvent.objects.count() == 10
    assert len(line_mails()) == 5 * 2


def test_batch_flapping_one_summary(lines):
    line_id = lines[0]
    record_line_events([line_id], "down", reason="fibre cut", now=at("16:00:00"))
    record_line_events([line_id], "up", now=at("16:01:00"))
    record_line_events([line_id], "down", reason="fibre cut", now=at("16:02:30"))
    result = process_pending_events()
    assert result.mailed == 1
    assert result.collected == 2
    assert result.closes == at("16:05:00")
    assert [mail.subject for mail in line_mails()] == ["Line L-000-a is down"] * 2
    assert close_due_windows(now=at("16:05:00")) == 1
    summaries = line_mails()[2:]
    assert [mail.subject for mail in summaries] == [
        "Line L-000-a: 3 changes, now down"
    ] * 2
    assert "2026-12-04 16:01:00 UTC  up" in summaries[0].text


def test_batch_matches_one_event_at_a_time(lines):
    """A batch spanning several windows mails what separate batches would."""
    steps = [
        ("down", "16:00:00"),
        ("up", "16:01:00"),
        # The first window ended at 16:05 with a change: summary, continuation.
        # This change goes into the continuation, 16:05 to 16:10.
        ("down", "16:07:00"),
        ("down", "16:08:00"),
        # The continuation closed with a change: summary, second continuation.
        # That one ends quietly at 16:15, so this change is mailed at once.
        ("up", "16:30:00"),
    ]
    for state, time in steps:
        record_line_events([lines[0]], state, now=at(time))
    batched = process_pending_events()
    batched_mails = [
        (mail.subject, mail.text)
        for mail in line_mails()
        if mail.to_address == "noc@c0.test"
    ]
    for state, time in steps:
        record_line_events([lines[2]], state, now=at(time))
        process_pending_events()
    single_mails = [
        (mail.subject.replace("L-001-a", "L-000-a"), mail.text)
        for mail in line_mails()
        if mail.to_address == "noc@c1.test"
    ]
    assert batched.mailed == 2
    assert batched.collected == 2
    assert batched.repeated == 1
    assert [subject for subject, _ in batched_mails] == [
        "Line L-000-a is down",
        "Line L-000-a: 2 changes, now up",
        "Line L-000-a: 1 changes, now down",
        "Line L-000-a is up",
    ]
    assert [subject for subject, _ in single_mails] == [
        subject for subject, _ in batched_mails
    ]
    assert "2026-12-04 16:01:00 UTC  up" in batched_mails[1][1]
    assert "2026-12-04 16:07:00 UTC  down" in batched_mails[2][1]
    assert "2026-12-04 16:08:00" not in batched_mails[2][1]


def test_sweep_waits_for_pending_events(lines):
    line_id = lines[0]
    record_line_events([line_id], "down", now=at("16:00:00"))
    process_pending_events()
    # Received before the window ended but not yet processed: it belongs in
    # the window's summary, so closing the window must wait for it.
    record_line_events([line_id], "up", now=at("16:04:00"))
    assert close_due_windows(now=at("16:05:00")) == 0
    assert tasks.sweep_windows.call_local() >= 1
    subjects = [mail.subject for mail in line_mails()]
    assert subjects == ["Line L-000-a is down"] * 2 + [
        "Line L-000-a: 2 changes, now up"
    ] * 2


def test_worker_task_processes_events(lines):
    record_line_events(lines[:4], "down", now=at("16:00:00"))
    assert tasks.process_events.call_local() == 4
    assert len(line_mails()) == 2 * 2


def test_batches_split_by_size(lines):
    for line_id in lines[:7]:
        record_line_events([line_id], "down", now=at("16:00:00"))
    result = process_pending_events(batch_size=3)
    assert result.recorded == 7
    assert result.mailed == 7
    assert not LineEvent.objects.filter(handling=LineEvent.Handling.PENDING).exists()


def test_processing_scheduled_once_per_slot(lines, monkeypatch, django_capture_on_commit_callbacks):
    from sealmail.notifications import events

    scheduled = []
    monkeypatch.setattr(events, "_schedule_process", scheduled.append)
    with django_capture_on_commit_callbacks(execute=True):
        record_line_events([lines[0]], "down", now=at("16:00:00.2"))
    with django_capture_on_commit_callbacks(execute=True):
        record_line_events([lines[1]], "down", now=at("16:00:00.7"))
    with django_capture_on_commit_callbacks(execute=True):
        record_line_events([lines[2]], "down", now=at("16:00:01.1"))
    assert scheduled == [at("16:00:02"), at("16:00:03")]


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_mail_once(lines):
    """Several workers processing one burst send every mail once."""
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite serialises every write transaction; PostgreSQL run checks this"
        )
    for second, line_id in enumerate(lines):
        record_line_events([line_id], "down", now=at(f"16:00:{second % 60:02d}"))
        record_line_events([line_id], "up", now=at(f"16:01:{second % 60:02d}"))
    errors = []
    barrier = threading.Barrier(4)

    def work() -> None:
        try:
            barrier.wait()
            process_pending_events(batch_size=7)
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A worker that found a line's earlier event in another batch left the
    # later ones for the task it scheduled; run that task here.
    process_pending_events()
    assert not LineEvent.objects.filter(handling="pending").exists()
    assert LineEvent.objects.filter(handling="mailed").count() == len(lines)
    assert LineEvent.objects.filter(handling="window").count() == len(lines)
    assert FlapWindow.objects.count() == len(lines)
    subjects = [mail.subject for mail in line_mails()]
    # Customers may get their two lines in one mail or in two, depending on
    # which worker took which event, but each line is reported once.
    down_lines = sum(
        2 if subject == "2 of your lines are down" else 1 for subject in subjects
    )
    assert down_lines == len(lines) * 2
