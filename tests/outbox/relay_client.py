"""Client-side helpers for the tests that send batches straight over a transport."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from sealmail.outbox import transport as transport_module
from sealmail.outbox.transport import (
    Delivered,
    Envelope,
    SmtpTransport,
    close_idle_sessions,
    transport_from_url,
)
from tests.outbox.hostile_relay import HostileRelay


def message(n: int) -> bytes:
    return (
        f"From: billing@provider.test\r\nTo: c{n}@customer.test\r\n"
        f"Subject: batch test {n}\r\nMessage-ID: <r{n}@provider.test>\r\n\r\n"
        "body\r\n"
    ).encode()


def batch(first: int, count: int) -> list[Envelope]:
    """Envelopes for messages ``first`` to ``first + count - 1``."""
    return [
        Envelope("billing@provider.test", f"c{n}@customer.test", message(n))
        for n in range(first, first + count)
    ]


def smtp(url: str) -> SmtpTransport:
    transport = transport_from_url(url, Path("/nonexistent"), "provider.test")
    assert isinstance(transport, SmtpTransport)
    return transport


def send(transport: SmtpTransport, envelopes: list[Envelope]) -> list:
    """Send ``envelopes`` over one session of ``transport``; return the outcomes."""
    with transport.open() as session:
        return list(session.send_all(envelopes))


def idle_count() -> int:
    """How many sessions wait for a batch now (puts them back unchanged)."""
    sessions = transport_module._idle_sessions.drain()
    for session in sessions:
        assert session.config is not None
        transport_module._idle_sessions.put(session.config, session)
    return len(sessions)


def ended_with_quit(relay: HostileRelay) -> bool:
    return [command.upper() for command in relay.commands[-1:]] == ["QUIT"]


def wait_for(condition: Callable[[], bool], seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def second_batch(relay: HostileRelay, first: int, second: int) -> list:
    """Send ``first`` messages, then ``second`` more over the kept connection.

    The first batch must be delivered. Returns the second batch's outcomes
    and stops the relay.
    """
    try:
        transport = smtp(relay.url(keepalive=10))
        outcomes = send(transport, batch(0, first))
        assert all(isinstance(outcome, Delivered) for outcome in outcomes), outcomes
        return send(transport, batch(first, second))
    finally:
        close_idle_sessions()
        relay.stop()
