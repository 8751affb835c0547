"""Line status and order progress events, and the flap windows that debounce lines.

A line that changes state while no window is open gets a mail at once and
opens a window of ``SEALMAIL_FLAP_WINDOW_SECONDS``. Further changes inside
the window are recorded, and when the window closes they go out as one
summary per customer that lists every change with its time. A window that
closed with changes is followed by a continuation window, so a line that
keeps flapping gets one summary per window and no other mail.

All of this state is in the database. Events for one line are serialised by
a row lock on PostgreSQL and by SQLite's write lock. Closing a window marks
it closed in the same transaction that stores its summary, so several web
and worker processes never send a change twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
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


class EventError(ValueError):
    """An event cannot be accepted; ``status`` is the HTTP status to respond with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class LineEventResult:
    """Outcome of one line-status event, counted per handling of its lines."""

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


def record_line_events(
    line_ids: Sequence[str],
    state: str,
    *,
    occurred: datetime | None = None,
    reason: str = "",
    source_id: str = "",
    now: datetime | None = None,
) -> LineEventResult:
    """Record that the lines ``line_ids`` went ``state`` and send the mails due now.

    NOTE: each call is one transaction with one outbox request, so a burst of
    thousands of single-line calls takes minutes, while one call naming the
    same lines takes seconds (docs/benchmarks/notifications.md).

    Raises :class:`EventError` when no line id is known, so a sender learns
    that its registry is out of sync. Known lines are recorded even when
    some ids are unknown; the result lists those.
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

    result = LineEventResult()
    with transaction.atomic():
        lines = []
        for chunk in chunks(wanted):
            lines.extend(_lines_with_state(chunk))
        lines.sort(key=lambda line: line.pk)
        known = {line.line_id for line in lines}
        result.unknown_line_ids = [
            line_id for line_id in wanted if line_id not in known
        ]
        if not lines:
            shown = ", ".join(result.unknown_line_ids[:10])
            raise EventError(
                f"line {shown} is not in the registry; add it with "
                "PUT /api/v1/registry/lines or `sealmail importregistry lines FILE`",
                status=404,
            )
        if source_id:
            seen = set()
            for chunk in chunks([line.pk for line in lines]):
                seen.update(
                    LineEvent.objects.filter(
                        line_id__in=chunk, source_id=source_id
                    ).values_list("line_id", flat=True)
                )
            result.duplicates = len(seen)
            lines = [line for line in lines if line.pk not in seen]

        open_windows = _open_windows(lines, now)
        new_windows: list[FlapWindow] = []
        events: list[LineEvent] = []
        for line in lines:
            handling, window = _handle(line, state, occurred, open_windows.get(line.pk))
            if handling == LineEvent.Handling.MAILED:
                window = FlapWindow(
                    line=line,
                    opened=now,
                    closes=now + flap_window(),
                    continuation=False,
                )
                new_windows.append(window)
            events.append(
                LineEvent(
                    line=line,
                    state=state,
                    occurred=occurred,
                    received=now,
                    reason=reason,
                    source_id=source_id,
                    window=window,
                    handling=handling,
                )
            )
        FlapWindow.objects.bulk_create(new_windows, batch_size=500)
        for event in events:
            # bulk_create set the primary keys; re-assign so the ids are copied.
            event.window = event.window
        LineEvent.objects.bulk_create(events, batch_size=500)

        counts = defaultdict(int)
        for event in events:
            counts[event.handling] += 1
        result.recorded = len(events)
        result.mailed = counts[LineEvent.Handling.MAILED]
        result.collected = counts[LineEvent.Handling.WINDOW]
        result.repeated = counts[LineEvent.Handling.REPEAT]
        result.late = counts[LineEvent.Handling.LATE]
        mailed = [
            event for event in events if event.handling == LineEvent.Handling.MAILED
        ]
        result.messages = _send_changes(mailed)
        closes = [window.closes for window in open_windows.values()] + [
            window.closes for window in new_windows
        ]
        if closes:
            result.closes = max(closes)
        if new_windows:
            _schedule_close_of(new_windows)
    logger.info(
        "line event %s for %d line(s): %d mailed, %d collected, %d repeated, "
        "%d late, %d duplicate, %d unknown",
        state,
        result.recorded,
        result.mailed,
        result.collected,
        result.repeated,
        result.late,
        result.duplicates,
        len(result.unknown_line_ids),
    )
    return result


def _lines_with_state(line_ids: Sequence[str]) -> list[Line]:
    """Lock the lines and return them with their latest state and event time."""
    # Lock first, then read the latest events in a second statement: on
    # PostgreSQL a statement that waited for the lock still reads the data as
    # of its start, which would miss the event that held it. SQLite has no
    # row locks, and its write transaction serialises events instead.
    selected = Line.objects.filter(line_id__in=line_ids)
    if connection.features.has_select_for_update:
        locked = list(_lock(selected).order_by("id").values_list("id", flat=True))
        selected = Line.objects.filter(pk__in=locked)
    latest = LineEvent.objects.filter(line=OuterRef("pk")).order_by("-occurred", "-id")
    return list(
        selected.select_related("customer").annotate(
            last_state=Subquery(latest.values("state")[:1]),
            last_occurred=Subquery(latest.values("occurred")[:1]),
        )
    )


def _open_windows(lines: Sequence[Line], now: datetime) -> dict[int, FlapWindow]:
    """Return each line's open window, first closing windows that are already due."""
    windows = {}
    for chunk in chunks([line.pk for line in lines]):
        for window in FlapWindow.objects.filter(line_id__in=chunk, closed__isnull=True):
            windows[window.line_id] = window
    due = [window for window in windows.values() if window.closes <= now]
    while due:
        for window in due:
            del windows[window.line_id]
        for continuation in _close_windows(due, now):
            windows[continuation.line_id] = continuation
        due = [window for window in windows.values() if window.closes <= now]
    return windows


def _handle(
    line: Line, state: str, occurred: datetime, window: FlapWindow | None
) -> tuple[str, FlapWindow | None]:
    last_state = getattr(line, "last_state", None)
    last_occurred = getattr(line, "last_occurred", None)
    if last_occurred is not None and occurred < last_occurred:
        return LineEvent.Handling.LATE, None
    if last_state == state:
        return LineEvent.Handling.REPEAT, None
    if window is not None:
        return LineEvent.Handling.WINDOW, window
    return LineEvent.Handling.MAILED, None


def _send_changes(events: Sequence[LineEvent]) -> int:
    """Send one mail per customer about the lines that changed state at once."""
    by_customer: dict[int, list[LineEvent]] = defaultdict(list)
    for event in events:
        by_customer[event.line.customer_id].append(event)
    items = []
    for customer_id, customer_events in by_customer.items():
        first = customer_events[0]
        state = first.state
        if len(customer_events) == 1:
            subject = f"Line {first.line.line_id} is {state}"
        else:
            subject = f"{len(customer_events)} of your lines are {state}"
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
                    for event in customer_events
                ],
                "window_minutes": _window_text(),
            },
        )
        items.append((customer_id, subject, text))
    return mail.send_to_customers(items, category="line_status")


def _window_text() -> str:
    seconds = settings.SEALMAIL_FLAP_WINDOW_SECONDS
    if seconds % 60 == 0:
        minutes = seconds // 60
        return f"{minutes} minute" + ("s" if minutes != 1 else "")
    return f"{seconds} seconds"


def _schedule_close_of(windows: Sequence[FlapWindow]) -> None:
    """Schedule a close task for new windows, once per slot of CLOSE_SLOT_SECONDS.

    A burst of single-line events would otherwise add one queue write per
    event. Windows already open in the same slot had a task scheduled by the
    transaction that opened them; if that failed, the minutely sweep closes
    them. Concurrent transactions may both schedule, which is harmless.
    """
    slot = timedelta(seconds=CLOSE_SLOT_SECONDS)
    latest = max(window.closes for window in windows)
    epoch = datetime(2000, 1, 1, tzinfo=latest.tzinfo)
    when = latest + (-(latest - epoch) % slot)
    if len(windows) == 1:
        taken = (
            FlapWindow.objects.filter(
                closed__isnull=True, closes__gt=when - slot, closes__lte=when
            )
            .exclude(pk=windows[0].pk)
            .exists()
        )
        if taken:
            return
    transaction.on_commit(lambda: _schedule_close(when))


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
    """Close every window whose time is up, send the summaries and return how many closed."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            windows = list(
                _lock_skip_locked(
                    FlapWindow.objects.filter(closed__isnull=True, closes__lte=now)
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
    transaction that holds the windows' rows.
    """
    events_by_window: dict[int, list[LineEvent]] = defaultdict(list)
    for event in (
        LineEvent.objects.filter(window__in=windows)
        .select_related("line__customer")
        .order_by("occurred", "id")
    ):
        events_by_window[event.window_id].append(event)
    with_changes = [
        window
        for window in windows
        if any(
            event.handling == LineEvent.Handling.WINDOW
            for event in events_by_window[window.pk]
        )
    ]
    changed_ids = {window.pk for window in with_changes}
    FlapWindow.objects.filter(
        pk__in=[w.pk for w in windows if w.pk not in changed_ids]
    ).update(closed=now)
    FlapWindow.objects.filter(pk__in=changed_ids).update(closed=now, summary_sent=True)
    continuations = [
        FlapWindow(
            line_id=window.line_id,
            opened=window.closes,
            closes=window.closes + flap_window(),
            continuation=True,
        )
        for window in with_changes
    ]
    FlapWindow.objects.bulk_create(continuations, batch_size=500)
    _send_summaries(with_changes, events_by_window)
    if continuations:
        latest = max(window.closes for window in continuations)
        transaction.on_commit(lambda: _schedule_close(latest))
    return continuations


def _send_summaries(
    windows: Sequence[FlapWindow], events_by_window: dict[int, list[LineEvent]]
) -> int:
    by_customer: dict[int, list[FlapWindow]] = defaultdict(list)
    for window in windows:
        customer_id = events_by_window[window.pk][0].line.customer_id
        by_customer[customer_id].append(window)
    items = []
    for customer_id, customer_windows in by_customer.items():
        summaries = []
        for window in customer_windows:
            events = events_by_window[window.pk]
            summaries.append(
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
        if len(summaries) == 1:
            only = summaries[0]
            subject = f"Line {only['line'].line_id}: {only['count']} changes, now {only['state']}"
        else:
            subject = f"Status changes on {len(summaries)} of your lines"
        text = mail.render_text(
            "line_summary.txt",
            {
                "customer": events_by_window[customer_windows[0].pk][0].line.customer,
                "summaries": summaries,
                "window_minutes": _window_text(),
            },
        )
        items.append((customer_id, subject, text))
    return mail.send_to_customers(items, category="line_status")


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
