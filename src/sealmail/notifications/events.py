"""Line status and order progress events, and the flap windows that debounce lines.

A line-status event is stored as pending and the request returns at once.
A worker task takes all pending events in one batch, applies the rules
below to each line in the order its events arrived, and sends the
resulting mails in one outbox call, so a burst of single-line events fans
out like one event that names every line. A customer with two mails in one
batch, such as a summary and a new change, gets the second in a second call.

A line that changes state while no window is open gets a mail at once and
opens a window of ``SEALMAIL_FLAP_WINDOW_SECONDS``. Further changes inside
the window are recorded, and when the window closes they go out as one
summary per customer that lists every change with its time. A window that
closed with changes is followed by a continuation window, so a line that
keeps flapping gets one summary per window and no other mail.

All of this state is in the database. Batches take pending events with
``SKIP LOCKED`` and lock their lines on PostgreSQL, and SQLite's write lock
serialises them. Closing a window marks it closed in the same transaction
that stores its summary, so several web and worker processes never send a
change twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Subquery
from django.utils import timezone

from sealmail.notifications import mail
from sealmail.notifications.mail import chunks
from sealmail.notifications.models import FlapWindow, Line, LineEvent, Order, OrderEvent

logger = logging.getLogger(__name__)

# Windows closed per transaction by the sweep; bounds the transaction size.
CLOSE_BATCH = 2000
# Close tasks run on slots of this many seconds, so a summary may go out up
# to this much later than its window ends.
CLOSE_SLOT_SECONDS = 10
# Pending line events per batch transaction and outbox call.
PROCESS_BATCH = 5000
# Events received in the same slot of this many seconds share one batch
# task, which runs PROCESS_DELAY_SECONDS after the slot ends.
PROCESS_SLOT_SECONDS = 1
PROCESS_DELAY_SECONDS = 1


class EventError(ValueError):
    """An event cannot be accepted; ``status`` is the HTTP status to respond with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class LineEventResult:
    """Outcome of applying pending line events, counted per handling."""

    recorded: int = 0
    mailed: int = 0
    collected: int = 0
    repeated: int = 0
    late: int = 0
    duplicates: int = 0
    messages: int = 0
    unknown_line_ids: list[str] = field(default_factory=list)
    closes: datetime | None = None


def check_text(field: str, value: str, *, one_line: bool = True) -> str:
    """Return ``value`` if it can be stored and mailed, else raise EventError.

    NUL never is (PostgreSQL rejects it in text), and one-line fields take
    no line breaks or other control characters.
    """
    if "\x00" in value:
        raise EventError(f"{field} contains a NUL character; remove it")
    if one_line and not value.isprintable():
        raise EventError(
            f"{field} {value[:40]!r} contains a line break or control character; "
            "give one line of text"
        )
    return value


def flap_window() -> timedelta:
    """Return the configured flap window length."""
    return timedelta(seconds=settings.SEALMAIL_FLAP_WINDOW_SECONDS)


def _lock(queryset):
    """Lock the rows on backends that support it; SQLite serialises writers anyway."""
    if connection.features.has_select_for_update_of:
        return queryset.select_for_update(of=("self",))
    if connection.features.has_select_for_update:
        return queryset.select_for_update()
    return queryset


def _lock_skip_locked(queryset):
    if connection.features.has_select_for_update_skip_locked:
        return queryset.select_for_update(skip_locked=True)
    return queryset


@dataclass
class LineEventIntake:
    """Outcome of storing one line-status event for the worker's next batch."""

    recorded: int = 0
    duplicates: int = 0
    unknown_line_ids: list[str] = field(default_factory=list)


def record_line_events(
    line_ids: Sequence[str],
    state: str,
    *,
    occurred: datetime | None = None,
    reason: str = "",
    source_id: str = "",
    now: datetime | None = None,
) -> LineEventIntake:
    """Store that the lines ``line_ids`` went ``state``, for the worker to mail.

    The event is stored as pending and a worker task runs
    :func:`process_pending_events` about ``PROCESS_DELAY_SECONDS`` later, so a
    burst of single-line events costs one small insert each and goes to the
    outbox in a few batches.

    Raises :class:`EventError` when no line id is known, so a sender learns
    that its registry is out of sync. Known lines are recorded even when
    some ids are unknown; the result lists those. A line that already has an
    event with ``source_id`` is counted as a duplicate and not stored again.
    """
    now = now or timezone.now()
    occurred = occurred or now
    if state not in LineEvent.State.values:
        raise EventError(f"state {state!r} is invalid; use 'up' or 'down'")
    wanted = list(dict.fromkeys(line_id.strip() for line_id in line_ids))
    if not wanted or not all(wanted):
        raise EventError("give at least one non-empty line id")
    for line_id in wanted:
        check_text("line id", line_id)
    check_text("reason", reason)
    check_text("event_id", source_id)

    result = LineEventIntake()
    with transaction.atomic():
        known: dict[str, int] = {}
        for chunk in chunks(wanted):
            known.update(
                Line.objects.filter(line_id__in=chunk).values_list("line_id", "pk")
            )
        result.unknown_line_ids = [
            line_id for line_id in wanted if line_id not in known
        ]
        if not known:
            shown = ", ".join(result.unknown_line_ids[:10])
            raise EventError(
                f"line {shown} is not in the registry; add it with "
                "PUT /api/v1/registry/lines or `sealmail importregistry lines FILE`",
                status=404,
            )
        line_pks = sorted(known.values())
        if source_id:
            seen = set()
            for chunk in chunks(line_pks):
                seen.update(
                    LineEvent.objects.filter(
                        line_id__in=chunk, source_id=source_id
                    ).values_list("line_id", flat=True)
                )
            result.duplicates = len(seen)
            line_pks = [pk for pk in line_pks if pk not in seen]
        if line_pks:
            _schedule_processing_of(now)
        # A concurrent request with the same source_id may insert between the
        # check above and this insert; the unique constraint then drops ours.
        LineEvent.objects.bulk_create(
            (
                LineEvent(
                    line_id=pk,
                    state=state,
                    occurred=occurred,
                    received=now,
                    reason=reason,
                    source_id=source_id,
                    handling=LineEvent.Handling.PENDING,
                )
                for pk in line_pks
            ),
            batch_size=500,
            ignore_conflicts=bool(source_id),
        )
        result.recorded = len(line_pks)
    logger.info(
        "line event %s stored for %d line(s): %d duplicate, %d unknown",
        state,
        result.recorded,
        result.duplicates,
        len(result.unknown_line_ids),
    )
    return result


def _schedule_processing_of(received: datetime) -> None:
    """Schedule a batch task for events received in this slot, once per slot.

    Must run before the new events are inserted. Another pending event in
    the same slot means that its transaction scheduled the task already. If
    that scheduling failed, or the task ran between that check and this
    commit, the minutely sweep processes the event.
    """
    slot = timedelta(seconds=PROCESS_SLOT_SECONDS)
    epoch = datetime(2000, 1, 1, tzinfo=received.tzinfo)
    slot_end = received + (slot - (received - epoch) % slot)
    taken = LineEvent.objects.filter(
        handling=LineEvent.Handling.PENDING,
        received__gte=slot_end - slot,
        received__lt=slot_end,
    ).exists()
    if taken:
        return
    when = slot_end + timedelta(seconds=PROCESS_DELAY_SECONDS)
    transaction.on_commit(lambda: _schedule_process(when))


def _schedule_process(when: datetime) -> None:
    """Ask the worker to process pending events at ``when``; the sweep is the fallback."""
    from sealmail.notifications import tasks

    try:
        tasks.process_events.schedule(eta=when)
    except Exception:
        logger.exception(
            "scheduling the line event batch failed; the sweep processes the events"
        )


def process_pending_events(*, batch_size: int = PROCESS_BATCH) -> LineEventResult:
    """Apply the flap window rules to every pending line event and send the mails.

    Events are taken in batches of ``batch_size``, each in one transaction
    that sends its mails with as few outbox calls as possible. Rows another
    process is working on are skipped on PostgreSQL, and that process handles
    them. Returns the counts summed over all batches.
    """
    total = LineEventResult()
    while True:
        with transaction.atomic():
            batch = list(
                _lock_skip_locked(
                    LineEvent.objects.filter(handling=LineEvent.Handling.PENDING)
                ).order_by("id")[:batch_size]
            )
            if not batch:
                break
            result = _process_batch(batch)
        for name in ("recorded", "mailed", "collected", "repeated", "late", "messages"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
        if result.closes is not None:
            total.closes = max(filter(None, (total.closes, result.closes)))
        # Deferred events wait for the task that _without_overtaking scheduled,
        # because taking them again now would only find them blocked again.
        if len(batch) < batch_size or result.recorded < len(batch):
            break
    if total.recorded:
        logger.info(
            "processed %d line event(s): %d mailed, %d collected, %d repeated, "
            "%d late, %d message(s)",
            total.recorded,
            total.mailed,
            total.collected,
            total.repeated,
            total.late,
            total.messages,
        )
    return total


@dataclass
class _LineState:
    """One line's state while a batch is applied: latest event and open window."""

    line: Line
    last_state: str | None
    last_occurred: datetime | None
    window: FlapWindow | None
    window_events: list[LineEvent]
    mailed_rounds: int = 0


def _process_batch(batch: Sequence[LineEvent]) -> LineEventResult:
    """Apply the batch's events per line in the order they were received.

    Each event is handled as if it had been applied on its own when it was
    received: windows due by then are closed first, and the event is mailed,
    collected, or recorded as a repeat or late report. Must run inside a
    transaction that has locked the events' rows.
    """
    line_pks = sorted({event.line_id for event in batch})
    states: dict[int, _LineState] = {}
    for chunk in chunks(line_pks):
        for line in _lines_with_state(Line.objects.filter(pk__in=chunk)):
            states[line.pk] = _LineState(
                line=line,
                last_state=line.last_state,
                last_occurred=line.last_occurred,
                window=None,
                window_events=[],
            )
        open_windows = FlapWindow.objects.filter(
            line_id__in=chunk, closed__isnull=True
        )
        # Lock, then read again: a sweep that held a window may have closed it
        # and opened a continuation, which only a new statement reads.
        list(_lock(open_windows).values_list("id", flat=True))
        windows = list(open_windows.all())
        for window in windows:
            states[window.line_id].window = window
        for event in (
            LineEvent.objects.filter(window__in=windows)
            .exclude(handling=LineEvent.Handling.PENDING)
            .order_by("occurred", "id")
        ):
            event.line = states[event.line_id].line
            states[event.line_id].window_events.append(event)

    batch = _without_overtaking(batch, line_pks)

    result = LineEventResult()
    closed_windows: list[FlapWindow] = []
    new_windows: list[FlapWindow] = []
    changes: dict[tuple[int, str, int], list[LineEvent]] = defaultdict(list)
    summaries: list[tuple[datetime, FlapWindow, list[LineEvent]]] = []
    for event in sorted(batch, key=lambda event: event.pk):
        line_state = states[event.line_id]
        event.line = line_state.line
        now = event.received
        while line_state.window is not None and line_state.window.closes <= now:
            window = line_state.window
            closed_windows.append(window)
            continuation = _close_in_memory(window, line_state.window_events, now)
            if continuation is not None:
                summaries.append((now, window, line_state.window_events))
                new_windows.append(continuation)
            line_state.window = continuation
            line_state.window_events = []
        handling, window = _handle(
            line_state.last_state,
            line_state.last_occurred,
            event.state,
            event.occurred,
            line_state.window,
        )
        if handling == LineEvent.Handling.MAILED:
            window = FlapWindow(
                line=line_state.line,
                opened=now,
                closes=now + flap_window(),
                continuation=False,
            )
            new_windows.append(window)
            line_state.window = window
            line_state.window_events = []
            # A line mailed twice in one batch gets a second mail, not one
            # mail that lists it twice.
            key = (line_state.line.customer_id, event.state, line_state.mailed_rounds)
            changes[key].append(event)
            line_state.mailed_rounds += 1
        if handling != LineEvent.Handling.LATE:
            line_state.last_state = event.state
            line_state.last_occurred = event.occurred
        event.handling = handling
        event.window = window
        if window is not None:
            line_state.window_events.append(event)

    _save_windows(closed_windows, new_windows)
    for event in batch:
        # The windows' primary keys are set now; re-assign so the ids are copied.
        event.window = event.window
    by_handling: dict[str, list[int]] = defaultdict(list)
    for event in batch:
        by_handling[event.handling].append(event.pk)
    for handling, pks in by_handling.items():
        for chunk in chunks(pks):
            LineEvent.objects.filter(pk__in=chunk).update(handling=handling)
    with_window = [event for event in batch if event.window_id is not None]
    LineEvent.objects.bulk_update(with_window, ["window"], batch_size=1000)

    # Mails go out in the order of their cause. A summary of a window closed
    # by an event comes before the mail about that event.
    items = [
        (time, 0, customer_id, content)
        for time, customer_id, content in _summary_items(summaries)
    ]
    items.extend(
        (min(event.received for event in group), 1, key[0], _change_mail(group))
        for key, group in changes.items()
    )
    items.sort(key=lambda item: item[:2])
    result.messages = _send_in_order(
        [(customer_id, *content) for _, _, customer_id, content in items]
    )

    counts: dict[str, int] = defaultdict(int)
    for event in batch:
        counts[event.handling] += 1
    result.recorded = len(batch)
    result.mailed = counts[LineEvent.Handling.MAILED]
    result.collected = counts[LineEvent.Handling.WINDOW]
    result.repeated = counts[LineEvent.Handling.REPEAT]
    result.late = counts[LineEvent.Handling.LATE]
    still_open = [
        state.window for state in states.values() if state.window is not None
    ]
    if still_open:
        result.closes = max(window.closes for window in still_open)
    _schedule_close_of([window for window in new_windows if window.closed is None])
    return result


def _without_overtaking(
    batch: Sequence[LineEvent], line_pks: Sequence[int]
) -> list[LineEvent]:
    """Return the events of ``batch`` that no earlier pending event of their line precedes.

    On PostgreSQL another worker may hold an earlier event of the same line
    in its batch and not have locked the line yet. The later events of that
    line stay pending for a task scheduled a second from now, so every line's
    events are applied in the order they arrived.
    """
    first_in_batch: dict[int, int] = {}
    batch_ids = set()
    for event in batch:
        batch_ids.add(event.pk)
        first_in_batch.setdefault(event.line_id, event.pk)
        first_in_batch[event.line_id] = min(first_in_batch[event.line_id], event.pk)
    last_id = max(batch_ids)
    held_elsewhere = set()
    for chunk in chunks(line_pks):
        for line_id, pk in LineEvent.objects.filter(
            line_id__in=chunk, handling=LineEvent.Handling.PENDING, pk__lt=last_id
        ).values_list("line_id", "pk"):
            if pk not in batch_ids and pk < first_in_batch[line_id]:
                held_elsewhere.add(line_id)
    if not held_elsewhere:
        return list(batch)
    logger.info(
        "%d line(s) have earlier events in another batch; their later events wait",
        len(held_elsewhere),
    )
    retry = timezone.now() + timedelta(seconds=PROCESS_DELAY_SECONDS)
    transaction.on_commit(lambda: _schedule_process(retry))
    return [event for event in batch if event.line_id not in held_elsewhere]


def _send_in_order(items: Sequence[tuple[int, str, str]]) -> int:
    """Send ``(customer id, subject, text)`` items with as few outbox calls as possible.

    The outbox takes each contact once per call, so a customer's second mail
    in the same batch goes in a second call, after the first.
    """
    waves: list[list[tuple[int, str, str]]] = []
    sent_to: dict[int, int] = defaultdict(int)
    for item in items:
        wave = sent_to[item[0]]
        sent_to[item[0]] += 1
        if wave == len(waves):
            waves.append([])
        waves[wave].append(item)
    return sum(
        mail.send_to_customers(wave, category="line_status") for wave in waves
    )


def _close_in_memory(
    window: FlapWindow, events: Sequence[LineEvent], now: datetime
) -> FlapWindow | None:
    """Mark ``window`` closed at ``now`` and return its continuation, if it needs one."""
    window.closed = now
    window.summary_sent = any(
        event.handling == LineEvent.Handling.WINDOW for event in events
    )
    if not window.summary_sent:
        return None
    return FlapWindow(
        line_id=window.line_id,
        opened=window.closes,
        closes=window.closes + flap_window(),
        continuation=True,
    )


def _save_windows(closed: Sequence[FlapWindow], new: Sequence[FlapWindow]) -> None:
    """Store closed and new windows; closing first keeps one open window per line."""
    # One UPDATE per close time and outcome, because a sweep closes thousands
    # of windows at the same time and bulk_update's CASE per row is slow.
    groups: dict[tuple[datetime, bool], list[int]] = defaultdict(list)
    for window in closed:
        if window.pk is not None:
            groups[(window.closed, window.summary_sent)].append(window.pk)
    for (closed_at, summary_sent), pks in groups.items():
        for chunk in chunks(pks):
            FlapWindow.objects.filter(pk__in=chunk).update(
                closed=closed_at, summary_sent=summary_sent
            )
    FlapWindow.objects.bulk_create(new, batch_size=500)


def _lines_with_state(selected) -> list[Line]:
    """Lock the lines and return them with their latest state and event time."""
    # Lock first, then read the latest events in a second statement: on
    # PostgreSQL a statement that waited for the lock still reads the data as
    # of its start, which would miss the event that held it. SQLite has no
    # row locks, and its write transaction serialises events instead.
    if connection.features.has_select_for_update:
        locked = list(_lock(selected).order_by("id").values_list("id", flat=True))
        selected = Line.objects.filter(pk__in=locked)
    latest = (
        LineEvent.objects.filter(line=OuterRef("pk"))
        .exclude(handling=LineEvent.Handling.PENDING)
        .order_by("-occurred", "-id")
    )
    return list(
        selected.select_related("customer").annotate(
            last_state=Subquery(latest.values("state")[:1]),
            last_occurred=Subquery(latest.values("occurred")[:1]),
        )
    )


def _handle(
    last_state: str | None,
    last_occurred: datetime | None,
    state: str,
    occurred: datetime,
    window: FlapWindow | None,
) -> tuple[str, FlapWindow | None]:
    if last_occurred is not None and occurred < last_occurred:
        return LineEvent.Handling.LATE, None
    if last_state == state:
        return LineEvent.Handling.REPEAT, None
    if window is not None:
        return LineEvent.Handling.WINDOW, window
    return LineEvent.Handling.MAILED, None


def _change_mail(events: Sequence[LineEvent]) -> tuple[str, str]:
    """Return the subject and text of one customer's mail about lines that changed."""
    first = events[0]
    state = first.state
    if len(events) == 1:
        subject = f"Line {first.line.line_id} is {state}"
    else:
        subject = f"{len(events)} of your lines are {state}"
    text = mail.render_text(
        "line_status.txt",
        {
            "customer": first.line.customer,
            "state": state,
            "events": [
                {
                    "line": event.line,
                    "time": mail.format_time(event.occurred),
                    "reason": event.reason,
                }
                for event in events
            ],
            "window_minutes": _window_text(),
        },
    )
    return subject, text


def _window_text() -> str:
    seconds = settings.SEALMAIL_FLAP_WINDOW_SECONDS
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"


def _schedule_close_of(windows: Sequence[FlapWindow]) -> None:
    """Schedule close tasks for new windows, one per slot of CLOSE_SLOT_SECONDS.

    A burst of single-line events would otherwise add one queue write per
    event. A single window whose slot already has an open window is left to
    the task that the transaction opening that window scheduled; if that
    failed, the minutely sweep closes it. Concurrent transactions may both
    schedule, which is harmless.
    """
    if not windows:
        return
    slot = timedelta(seconds=CLOSE_SLOT_SECONDS)
    epoch = datetime(2000, 1, 1, tzinfo=windows[0].closes.tzinfo)
    slot_ends = sorted(
        {window.closes + (-(window.closes - epoch) % slot) for window in windows}
    )
    if len(windows) == 1:
        when = slot_ends[0]
        taken = (
            FlapWindow.objects.filter(
                closed__isnull=True, closes__gt=when - slot, closes__lte=when
            )
            .exclude(pk=windows[0].pk)
            .exists()
        )
        if taken:
            return
    for when in slot_ends:
        transaction.on_commit(partial(_schedule_close, when))


def _schedule_close(when: datetime) -> None:
    """Ask the worker to close the windows at ``when``; the minutely sweep is the fallback."""
    from sealmail.notifications import tasks

    try:
        tasks.close_windows.schedule(eta=when)
    except Exception:
        logger.exception(
            "scheduling the flap window close failed; the sweep closes them"
        )


def close_due_windows(*, now: datetime | None = None) -> int:
    """Close every window whose time is up, send the summaries and return how many closed.

    A window whose line has pending events is left to
    :func:`process_pending_events`, because one of those events may have been
    received before the window ended and belong in its summary.
    """
    now = now or timezone.now()
    pending = LineEvent.objects.filter(
        line_id=OuterRef("line_id"), handling=LineEvent.Handling.PENDING
    )
    total = 0
    while True:
        with transaction.atomic():
            windows = list(
                _lock_skip_locked(
                    FlapWindow.objects.filter(
                        closed__isnull=True, closes__lte=now
                    ).exclude(Exists(pending))
                ).order_by("closes", "id")[:CLOSE_BATCH]
            )
            if not windows:
                break
            _close_windows(windows, now)
        total += len(windows)
        if len(windows) < CLOSE_BATCH:
            break
    if total:
        logger.info("closed %d flap window(s)", total)
    return total


def _close_windows(windows: Sequence[FlapWindow], now: datetime) -> list[FlapWindow]:
    """Close ``windows``, send summaries for those with collected changes.

    Returns the continuation windows opened for them. Must run inside a
    transaction that has locked the windows' rows.
    """
    events_by_window: dict[int, list[LineEvent]] = defaultdict(list)
    for event in (
        LineEvent.objects.filter(window__in=windows)
        .select_related("line__customer")
        .order_by("occurred", "id")
    ):
        events_by_window[event.window_id].append(event)
    summaries = []
    continuations = []
    for window in windows:
        continuation = _close_in_memory(window, events_by_window[window.pk], now)
        if continuation is not None:
            summaries.append((now, window, events_by_window[window.pk]))
            continuations.append(continuation)
    _save_windows(windows, continuations)
    items = _summary_items(summaries)
    _send_in_order([(customer_id, *content) for _, customer_id, content in items])
    if continuations:
        latest = max(window.closes for window in continuations)
        transaction.on_commit(lambda: _schedule_close(latest))
    return continuations


def _summary_items(
    summaries: Sequence[tuple[datetime, FlapWindow, Sequence[LineEvent]]],
) -> list[tuple[datetime, int, tuple[str, str]]]:
    """Return ``(time, customer id, (subject, text))``, one summary mail per customer.

    ``summaries`` contains ``(closed at, window, its events)`` for windows
    that closed with changes. A line with several closed windows in the list
    gets a mail per window.
    """
    by_customer: dict[
        tuple[int, int], list[tuple[datetime, FlapWindow, Sequence[LineEvent]]]
    ]
    by_customer = defaultdict(list)
    rounds: dict[int, int] = defaultdict(int)
    for summary in summaries:
        line_id = summary[1].line_id
        key = (summary[2][0].line.customer_id, rounds[line_id])
        rounds[line_id] += 1
        by_customer[key].append(summary)
    items = []
    for (customer_id, _), customer_summaries in by_customer.items():
        entries = []
        for _, window, events in customer_summaries:
            entries.append(
                {
                    "line": events[0].line,
                    "opened": mail.format_time(window.opened),
                    "closes": mail.format_time(window.closes),
                    "count": len(events),
                    "state": events[-1].state,
                    "last_time": mail.format_time(events[-1].occurred),
                    "events": [
                        {
                            "time": mail.format_time(event.occurred),
                            "state": event.state,
                            "reason": event.reason,
                        }
                        for event in events
                    ],
                }
            )
        if len(entries) == 1:
            only = entries[0]
            subject = (
                f"Line {only['line'].line_id}: {only['count']} changes, "
                f"now {only['state']}"
            )
        else:
            subject = f"Status changes on {len(entries)} of your lines"
        text = mail.render_text(
            "line_summary.txt",
            {
                "customer": customer_summaries[0][2][0].line.customer,
                "summaries": entries,
                "window_minutes": _window_text(),
            },
        )
        closed_at = min(summary[0] for summary in customer_summaries)
        items.append((closed_at, customer_id, (subject, text)))
    return items


@dataclass
class OrderEventResult:
    event: OrderEvent
    duplicate: bool
    messages: int


def record_order_event(
    order_id: str,
    stage: str,
    *,
    text: str = "",
    occurred: datetime | None = None,
    source_id: str = "",
    now: datetime | None = None,
) -> OrderEventResult:
    """Record an order's progress and mail the customer about it.

    Raises :class:`EventError` for an unknown order. An event whose
    ``source_id`` was already recorded for the order is not mailed again.
    """
    now = now or timezone.now()
    occurred = occurred or now
    order_id = order_id.strip()
    stage = stage.strip()
    if not stage:
        raise EventError("stage is empty; give the order's new stage, like 'shipped'")
    check_text("order id", order_id)
    check_text("stage", stage)
    check_text("text", text, one_line=False)
    check_text("event_id", source_id)
    with transaction.atomic():
        order = (
            _lock(Order.objects.filter(order_id=order_id))
            .select_related("customer")
            .first()
        )
        if order is None:
            raise EventError(
                f"order {order_id!r} is not in the registry; add it with "
                "PUT /api/v1/registry/orders or `sealmail importregistry orders FILE`",
                status=404,
            )
        if source_id:
            existing = OrderEvent.objects.filter(
                order=order, source_id=source_id
            ).first()
            if existing is not None:
                return OrderEventResult(existing, duplicate=True, messages=0)
        event = OrderEvent.objects.create(
            order=order,
            stage=stage,
            text=text,
            occurred=occurred,
            received=now,
            source_id=source_id,
        )
        body = mail.render_text(
            "order_progress.txt",
            {
                "customer": order.customer,
                "order": order,
                "stage": stage,
                "text": text,
                "time": mail.format_time(occurred),
            },
        )
        messages = mail.send_to_customers(
            [
                (
                    order.customer_id,
                    f"Order {order.order_id}: {stage}",
                    body,
                )
            ],
            category="order_progress",
        )
    logger.info(
        "order event %d for order %d: %d message(s)", event.pk, order.pk, messages
    )
    return OrderEventResult(event, duplicate=False, messages=messages)
