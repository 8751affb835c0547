"""Time limits of an SMTP session against a relay that sends its replies slowly.

Each relay here sends one reply a byte at a time, each byte well within the
socket timeout, so only an overall limit ends the exchange. The outbox
renews a batch's lease between two outcomes of ``send_all`` and writes the
results after ``close()``, so every phase of a session needs such a limit.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sealmail.outbox import delivery
from sealmail.outbox import transport as transport_module
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.transport import (
    Delivered,
    DeliveryFailure,
    Envelope,
    Session,
    SmtpTransport,
    Transport,
    transport_from_url,
)
from tests.outbox.helpers import enqueue_messages
from tests.outbox.hostile_relay import EHLO, Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay

# The watchdog checks its sessions once a second.
WATCHDOG_PERIOD = 1.0


def envelope(n: int) -> Envelope:
    return Envelope(
        "billing@provider.test",
        f"c{n}@customer.test",
        f"Subject: test {n}\r\n\r\nbody {n}\r\n".encode(),
    )


def smtp(url: str) -> SmtpTransport:
    transport = transport_from_url(url, Path("/nonexistent"), "provider.test")
    assert isinstance(transport, SmtpTransport)
    return transport


def dripped(line: bytes, pause: float) -> Action:
    """Send ``line`` one byte at a time, ``pause`` seconds apart."""
    return Action([bytes([byte]) for byte in line], pause=pause)


def run_bounded(function, limit: float) -> tuple[float, bool]:
    """Run ``function`` in a thread for up to ``limit`` seconds.

    Returns the seconds waited and whether ``function`` returned in that time.
    """
    started = time.monotonic()
    thread = threading.Thread(target=function, daemon=True)
    thread.start()
    thread.join(limit)
    return time.monotonic() - started, not thread.is_alive()


def test_quit_reply_dripped_is_cut_off(monkeypatch):
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", 1.0)
    quit_reply = b"221 " + b"b" * 40 + b"\r\n"

    def respond(command: str, number: int):
        if command.upper() == "QUIT":
            return dripped(quit_reply, 0.2)
        return None

    relay = HostileRelay(respond)
    try:
        session = smtp(relay.url(timeout=0.5)).open()
        outcomes = list(session.send_all([envelope(1)]))
        assert isinstance(outcomes[0], Delivered)
        seconds, ended = run_bounded(session.close, 6.0)
    finally:
        relay.stop()
    # The socket timeout is 0.5 s and the exchange limit 1 s, but the relay
    # takes about 9 s for its reply to QUIT.
    assert ended, f"close() was still waiting for QUIT's reply after {seconds:.1f} s"
    assert seconds < 1.0 + 2 * WATCHDOG_PERIOD


def test_ehlo_reply_dripped_is_cut_off(monkeypatch):
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", 1.0)
    relay = HostileRelay(lambda command, number: None)
    relay.ehlo = dripped((EHLO + "\r\n").encode(), 0.15)  # type: ignore[assignment]
    sessions = []

    def open_session() -> None:
        try:
            sessions.append(smtp(relay.url(timeout=0.5)).open())
        except DeliveryFailure:
            pass

    try:
        seconds, ended = run_bounded(open_session, 6.0)
    finally:
        relay.stop()
        for session in sessions:
            session.close()
    # The relay takes about 7 s for its reply to EHLO.
    assert ended, f"open() was still reading the EHLO reply after {seconds:.1f} s"
    assert seconds < 1.0 + 2 * WATCHDOG_PERIOD


def test_pipelined_outcome_within_exchange_limit(monkeypatch):
    limit = 3.0
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", limit)

    def respond(command: str, number: int):
        # Each reply alone stays below the limit.
        if command == "DATA":
            return Action([b"", b"354 go ahead\r\n"], pause=2.8)
        if command == "<content>":
            return Action([b"", b"250 queued\r\n"], pause=2.8)
        return None

    relay = HostileRelay(respond)
    durations = []
    try:
        session = smtp(relay.url(timeout=5)).open()
        assert session.pipelining
        outcomes = session.send_all([envelope(1), envelope(2)])
        started = time.monotonic()
        first = next(outcomes)
        durations.append(time.monotonic() - started)
        outcomes.close()
        session.close()
    finally:
        relay.stop()
    # delivery._send renews the lease only between two outcomes and relies
    # on one outcome taking at most EXCHANGE_LIMIT seconds.
    assert durations[0] <= limit + WATCHDOG_PERIOD, (
        f"one outcome took {durations[0]:.1f} s, more than EXCHANGE_LIMIT "
        f"({limit:.0f} s); it was {first!r}"
    )


def test_rset_out_of_step_stops_batch():
    def respond(command: str, number: int):
        if command.upper().startswith("MAIL") and number == 1:
            return "451 try again later"
        if command.upper() == "RSET":
            return Action([b"354 out of step\r\n"], data_mode=False)
        return None

    relay = HostileRelay(respond, ehlo="250-hostile.test\r\n250 8BITMIME")
    try:
        session = smtp(relay.url(timeout=2)).open()
        assert not session.pipelining
        outcomes = list(session.send_all([envelope(1), envelope(2)]))
        session.close()
    finally:
        relay.stop()
    commands = [command.upper() for command in relay.commands]
    after_rset = commands[commands.index("RSET") + 1 :]
    assert not any(command.startswith("MAIL") for command in after_rset), commands
    assert "<CONTENT>" not in commands
    assert not any(isinstance(outcome, Delivered) for outcome in outcomes)
    assert "QUIT" not in commands


class SlowCloseTransport(Transport):
    """The real relay, with a close() that outlasts the batch's lease.

    The slow close stands for a relay that drips its reply to QUIT. Instead
    of sleeping, close() moves the clock past the lease and lets another
    worker claim the batch's rows, as it may once their lease has expired.
    """

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, ids: list[int]):
        self.inner = transport_from_url(url, Path("/nonexistent"), "provider.test")
        self.monkeypatch = monkeypatch
        self.ids = ids
        self.claimed_by_other: list[OutboxMessage] = []

    def describe(self) -> str:
        return "relay with a slow QUIT"

    def open(self) -> Session:
        return SlowCloseSession(self.inner.open(), self)


class SlowCloseSession(Session):
    def __init__(self, inner: Session, owner: SlowCloseTransport) -> None:
        self.inner = inner
        self.owner = owner

    def send_all(self, envelopes):
        yield from self.inner.send_all(envelopes)

    def close(self) -> None:
        self.inner.close()
        later = timezone.now() + delivery.LEASE + timedelta(minutes=1)
        self.owner.monkeypatch.setattr(timezone, "now", lambda: later)
        self.owner.claimed_by_other = delivery.claim(self.owner.ids, later)


@pytest.mark.django_db
def test_slow_close_keeps_sent_results(make_contact, tmp_path, settings, monkeypatch):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    settings.SEALMAIL_SMTP_URL = relay.url()
    try:
        ids = enqueue_messages(make_contact, 3)
        transport = SlowCloseTransport(relay.url(), monkeypatch, ids)
        result = delivery.deliver_batch(ids, transport=transport)
    finally:
        relay.stop()
    assert len(relay.received) == 3
    assert result.sent == 3
    # Rows the relay accepted must not be left for another worker to send.
    assert transport.claimed_by_other == []
    statuses = set(
        OutboxMessage.objects.filter(pk__in=ids).values_list("status", flat=True)
    )
    assert statuses == {OutboxMessage.Status.SENT}
