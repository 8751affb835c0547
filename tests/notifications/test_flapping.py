"""Line events: mails at once, flap windows and their summaries, several processes."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection

from sealmail.contacts.models import Contact
from sealmail.notifications.events import (
    EventError,
    LineEventResult,
    close_due_windows,
    process_pending_events,
    record_line_events,
)
from sealmail.notifications.models import FlapWindow, LineEvent
from sealmail.notifications.registry import Entry, sync
from tests.notifications.conftest import at, make_customer

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]


def line_mails():
    from sealmail.outbox.models import OutboxMessage

    return list(OutboxMessage.objects.filter(category="line_status").order_by("id"))


def apply(line_ids: list[str], state: str, **kwargs) -> LineEventResult:
    """Store one event and run the worker's batch, as the queue does shortly after."""
    record_line_events(line_ids, state, **kwargs)
    return process_pending_events()


@pytest.fixture
def line(db, settings):
    settings.SEALMAIL_FLAP_WINDOW_SECONDS = 300
    customer = make_customer("K-1", "Acme GmbH")
    Contact.objects.create(customer=customer, address="noc@acme.test", role="technical")
    Contact.objects.create(
        customer=customer, address="billing@acme.test", role="billing"
    )
    sync("lines", [Entry("L-1", "K-1", "Office Berlin")])
    return "L-1"


def test_first_change_mailed_at_once(line):
    result = apply([line], "down", reason="fibre cut", now=at("16:00:00"))
    assert result.mailed == 1
    mails = line_mails()
    assert len(mails) == 1
    assert mails[0].subject == "Line L-1 is down"
    assert mails[0].to_address == "noc@acme.test"
    assert "L-1 (Office Berlin) is down since 2026-12-04 16:00:00 UTC" in mails[0].text
    assert "Reason: fibre cut" in mails[0].text


def test_flapping_sends_one_summary_per_window(line):
    apply([line], "down", reason="fibre cut", now=at("16:00:00"))
    second = apply([line], "up", now=at("16:01:00"))
    third = apply([line], "down", reason="fibre cut", now=at("16:02:30"))
    assert second.collected == 1
    assert third.collected == 1
    assert len(line_mails()) == 1

    assert close_due_windows(now=at("16:04:59")) == 0
    assert close_due_windows(now=at("16:05:00")) == 1
    mails = line_mails()
    assert len(mails) == 2
    summary = mails[1]
    assert summary.subject == "Line L-1: 3 changes, now down"
    assert "changed state 3 times between 2026-12-04 16:00:00 UTC and" in summary.text
    assert "2026-12-04 16:00:00 UTC  down  fibre cut" in summary.text
    assert "2026-12-04 16:01:00 UTC  up" in summary.text
    assert "2026-12-04 16:02:30 UTC  down  fibre cut" in summary.text
    assert (
        "The line is down now (last change at 2026-12-04 16:02:30 UTC)" in summary.text
    )


def test_summary_sent_once_when_closed_twice(line):
    apply([line], "down", now=at("16:00:00"))
    apply([line], "up", now=at("16:01:00"))
    assert close_due_windows(now=at("16:05:00")) == 1
    assert close_due_windows(now=at("16:05:00")) == 0
    assert len(line_mails()) == 2


def test_quiet_window_closes_without_mail(line):
    apply([line], "down", now=at("16:00:00"))
    assert close_due_windows(now=at("16:05:00")) == 1
    assert len(line_mails()) == 1
    assert not FlapWindow.objects.filter(closed__isnull=True).exists()
    # The line is quiet again, so the next change goes out at once.
    apply([line], "up", now=at("16:20:00"))
    assert [mail.subject for mail in line_mails()] == [
        "Line L-1 is down",
        "Line L-1 is up",
    ]


def test_continued_flapping_gets_one_summary_per_window(line):
    apply([line], "down", now=at("16:00:00"))
    apply([line], "up", now=at("16:01:00"))
    close_due_windows(now=at("16:05:00"))
    # The continuation window runs 16:05 to 16:10: no mail at once.
    result = apply([line], "down", now=at("16:06:00"))
    assert result.mailed == 0
    assert result.collected == 1
    apply([line], "up", now=at("16:07:00"))
    assert len(line_mails()) == 2
    close_due_windows(now=at("16:10:00"))
    mails = line_mails()
    assert len(mails) == 3
    assert mails[2].subject == "Line L-1: 2 changes, now up"
    # A quiet continuation closes silently and the line is idle again.
    close_due_windows(now=at("16:15:00"))
    assert len(line_mails()) == 3
    assert apply([line], "down", now=at("16:30:00")).mailed == 1


def test_overdue_window_closed_by_next_event(line):
    apply([line], "down", now=at("16:00:00"))
    apply([line], "up", now=at("16:01:00"))
    # No worker closed the window at 16:05; the next event does it first.
    result = apply([line], "down", now=at("16:07:00"))
    assert result.collected == 1
    mails = line_mails()
    assert [mail.subject for mail in mails] == [
        "Line L-1 is down",
        "Line L-1: 2 changes, now up",
    ]


def test_repeat_and_late_events_not_mailed(line):
    apply([line], "down", occurred=at("16:00:00"), now=at("16:00:05"))
    repeat = apply(
        [line], "down", occurred=at("16:00:30"), now=at("16:00:35")
    )
    late = apply([line], "up", occurred=at("15:59:00"), now=at("16:00:40"))
    assert repeat.repeated == 1
    assert late.late == 1
    assert len(line_mails()) == 1
    handling = list(LineEvent.objects.values_list("handling", flat=True))
    assert handling == ["late", "mailed", "repeat"]


def test_duplicate_event_id_ignored(line):
    first = record_line_events([line], "down", source_id="evt-1", now=at("16:00:00"))
    pending = record_line_events(
        [line], "down", source_id="evt-1", now=at("16:00:05")
    )
    assert process_pending_events().mailed == 1
    again = record_line_events([line], "down", source_id="evt-1", now=at("16:00:10"))
    assert first.recorded == 1
    assert pending.recorded == 0
    assert pending.duplicates == 1
    assert again.recorded == 0
    assert again.duplicates == 1
    assert LineEvent.objects.count() == 1
    assert process_pending_events().recorded == 0
    assert len(line_mails()) == 1


def test_unknown_line_rejected(line):
    with pytest.raises(EventError) as excinfo:
        record_line_events(["L-404"], "down")
    assert excinfo.value.status == 404
    assert "L-404" in excinfo.value.message


def test_invalid_state_rejected(line):
    with pytest.raises(EventError, match="state 'sideways' is invalid"):
        record_line_events([line], "sideways")


def test_api_line_status(api, line):
    response = api.post(
        "/api/v1/events/line-status",
        {
            "line_ids": [line, "L-404"],
            "state": "down",
            "time": "2026-12-04T16:00:00+00:00",
            "reason": "power",
            "event_id": "m-17",
        },
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["recorded"] == 1
    assert body["duplicates"] == 0
    assert body["unknown_line_ids"] == ["L-404"]
    assert line_mails() == []
    result = process_pending_events()
    assert result.mailed == 1
    assert result.messages == 1
    assert result.closes == LineEvent.objects.get().received + timedelta(seconds=300)


def test_api_line_status_validation(api, line):
    both = api.post(
        "/api/v1/events/line-status",
        {"line_id": line, "line_ids": [line], "state": "up"},
    )
    naive = api.post(
        "/api/v1/events/line-status",
        {"line_id": line, "state": "up", "time": "2026-12-04T16:00:00"},
    )
    unknown = api.post(
        "/api/v1/events/line-status", {"line_id": "L-404", "state": "up"}
    )
    assert both.status_code == 422
    assert naive.status_code == 422
    assert unknown.status_code == 404
    assert "L-404" in unknown.json()["detail"]


def test_customer_lines_grouped_in_one_mail(line):
    sync("lines", [Entry("L-1", "K-1", "Office Berlin"), Entry("L-2", "K-1", "")])
    apply(["L-1", "L-2"], "down", reason="PoP outage", now=at("16:00:00"))
    mails = line_mails()
    assert len(mails) == 1
    assert mails[0].subject == "2 of your lines are down"
    assert "L-2: down since 2026-12-04 16:00:00 UTC, PoP outage" in mails[0].text


@pytest.mark.django_db(transaction=True)
def test_concurrent_events_mail_once(line):
    """Processes that take events for the same line at once send one mail."""
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite serialises every write transaction; PostgreSQL run checks this"
        )
    errors = []
    barrier = threading.Barrier(6)
    start = at("16:00:00")

    def post(index: int) -> None:
        try:
            barrier.wait()
            state = "down" if index % 2 == 0 else "up"
            apply([line], state, now=start + timedelta(seconds=index))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert LineEvent.objects.filter(handling="mailed").count() == 1
    assert FlapWindow.objects.count() == 1
    assert len(line_mails()) == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_sweeps_send_one_summary(line):
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite serialises every write transaction; PostgreSQL run checks this"
        )
    apply([line], "down", now=at("16:00:00"))
    apply([line], "up", now=at("16:01:00"))
    barrier = threading.Barrier(4)
    errors = []

    def sweep() -> None:
        try:
            barrier.wait()
            close_due_windows(now=at("16:05:00"))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(line_mails()) == 2


def test_worker_task_closes_due_windows(line):
    from sealmail.notifications import tasks

    apply([line], "down", now=at("16:00:00") - timedelta(days=1))
    apply([line], "up", now=at("16:01:00") - timedelta(days=1))
    assert tasks.close_windows.call_local() == 1
    # The continuation window that followed the summary is due as well.
    assert tasks.sweep_windows.call_local() == 1
    assert tasks.sweep_windows.call_local() == 0
    assert len(line_mails()) == 2


def test_nul_and_line_breaks_rejected(line):
    with pytest.raises(EventError, match="line id contains a NUL character"):
        record_line_events(["L-\x001"], "down")
    with pytest.raises(EventError, match="reason 'a\\\\nb' contains a line break"):
        record_line_events([line], "down", reason="a\nb")


def test_close_tasks_scheduled_once_per_slot(
    line, monkeypatch, django_capture_on_commit_callbacks
):
    from sealmail.notifications import events

    scheduled = []
    monkeypatch.setattr(events, "_schedule_close", scheduled.append)
    sync("lines", [Entry("L-1", "K-1"), Entry("L-2", "K-1"), Entry("L-3", "K-1")])
    with django_capture_on_commit_callbacks(execute=True):
        apply(["L-1"], "down", now=at("16:00:01"))
    with django_capture_on_commit_callbacks(execute=True):
        apply(["L-2"], "down", now=at("16:00:02"))
    with django_capture_on_commit_callbacks(execute=True):
        apply(["L-3"], "down", now=at("16:00:15"))
    assert scheduled == [at("16:05:10"), at("16:05:20")]
