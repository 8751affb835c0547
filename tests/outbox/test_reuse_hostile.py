"""Reusing a relay connection against relays and paths that misbehave while it is idle.

A connection waits in the pool for up to ``keepalive`` seconds. In that
time the relay may close it, send unsolicited replies, or vanish
behind a firewall that drops the connection's packets without a reset.
The next batch must then neither wait long nor send a message twice.
"""

from __future__ import annotations

import threading
import time

import pytest

from sealmail.outbox import delivery
from sealmail.outbox import transport as transport_module
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.transport import (
    Delivered,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    close_idle_sessions,
)
from tests.outbox.helpers import enqueue_messages
from tests.outbox.hostile_relay import Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay
from tests.outbox.relay_client import batch, idle_count, message, send, smtp


def rsets(relay: HostileRelay) -> int:
    return [command.upper() for command in relay.commands].count("RSET")


def fill_pool(transport: SmtpTransport, count: int) -> None:
    """Leave ``count`` idle connections in the pool, each after one delivered message."""
    sessions = [transport.open() for _ in range(count)]
    for number, session in enumerate(sessions):
        outcomes = list(session.send_all(batch(number, 1)))
        assert isinstance(outcomes[0], Delivered), outcomes
    for session in sessions:
        session.release()
    assert idle_count() == count


def test_failed_probe_closes_older_idle_sessions():
    """A firewall that forgot the idle connections drops their packets without a reset.

    Each probe then waits for the full timeout. Once the most recently
    used connection has failed its probe, the older ones are closed
    unprobed, so the batch waits for one timeout, not one per idle
    connection.
    """
    silent = threading.Event()

    def respond(command: str, number: int):
        if command.upper() == "RSET" and silent.is_set():
            return Action([], then="hang")
        return None

    timeout = 0.5
    relay = HostileRelay(respond, connections=8, concurrent=True)
    try:
        transport = smtp(relay.url(timeout=timeout, keepalive=30))
        fill_pool(transport, 6)
        silent.set()
        started = time.monotonic()
        session = transport.open()
        waited = time.monotonic() - started
        outcomes = list(session.send_all(batch(6, 1)))
        session.release()
        left_idle = idle_count()
    finally:
        close_idle_sessions()
        relay.stop()
    assert isinstance(outcomes[0], Delivered), outcomes
    assert rsets(relay) == 1
    # Probing all six would take 3 s.
    assert waited < 3 * timeout, f"open() waited {waited:.1f} s for dead connections"
    # Only the new connection waits for the next batch.
    assert left_idle == 1


def test_connection_past_max_age_not_reused(monkeypatch):
    monkeypatch.setattr(transport_module, "MAX_CONNECTION_AGE", 0.5)
    relay = HostileRelay(lambda command, number: None, connections=2)
    try:
        transport = smtp(relay.url(keepalive=10))
        first = send(transport, batch(0, 1))
        # Released while still young, the connection grows too old in the pool.
        time.sleep(0.7)
        second = send(transport, batch(1, 1))
    finally:
        close_idle_sessions()
        relay.stop()
    assert isinstance(first[0], Delivered)
    assert isinstance(second[0], Delivered)
    assert relay.accepted == 2
    assert rsets(relay) == 0
    assert relay.contents == [message(0), message(1)]


def test_idle_421_opens_new_connection():
    contents = 0

    def respond(command: str, number: int):
        nonlocal contents
        if command != "<content>":
            return None
        contents += 1
        if contents == 1:
            # The 421 arrives while the connection waits in the pool.
            return Action(
                [b"250 queued\r\n", b"421 4.4.2 idle too long\r\n"],
                pause=0.3,
                then="close",
            )
        return None

    relay = HostileRelay(respond, connections=2)
    try:
        transport = smtp(relay.url(keepalive=10))
        first = send(transport, batch(0, 1))
        time.sleep(0.5)
        second = send(transport, batch(1, 2))
    finally:
        close_idle_sessions()
        relay.stop()
    assert isinstance(first[0], Delivered)
    assert all(isinstance(outcome, Delivered) for outcome in second), second
    assert relay.accepted == 2
    assert relay.contents == [message(0), message(1), message(2)]


def test_stale_idle_reply_sends_nothing():
    """An unsolicited reply shifts every later reply by one.

    The probe's RSET reads the stale reply, so the first message of the
    next batch reads the reply to RCPT where the 354 to DATA belongs. Its
    content must not go out.
    """

    def respond(command: str, number: int):
        if command == "<content>" and number == 1:
            return Action([b"250 queued\r\n", b"250 2.0.0 stale\r\n"], pause=0.3)
        return None

    relay = HostileRelay(respond)
    try:
        transport = smtp(relay.url(keepalive=10))
        send(transport, batch(0, 1))
        time.sleep(0.5)
        second = send(transport, batch(1, 2))
    finally:
        close_idle_sessions()
        relay.stop()
    assert len(second) == 1
    assert isinstance(second[0], TemporaryFailure)
    assert second[0].connection_lost
    assert relay.contents == [message(0)]
    assert idle_count() == 0


@pytest.mark.parametrize(
    "variant", ["no-pipelining", "auth", "smtps", "tls-required"]
)
def test_reuse_after_rejected_last_message(tmp_path, variant):
    """The probe's RSET ends a transaction that the relay may still keep open."""
    relay = LoopbackRelay(
        tmp_path,
        pipelining=variant != "no-pipelining",
        credentials=("billing", "s3cret") if variant == "auth" else None,
        implicit_tls=variant == "smtps",
    )
    relay.start()
    try:
        params = {"tls": "required"} if variant == "tls-required" else {}
        transport = smtp(relay.url(**params))
        outcomes = send(transport, batch(0, 1))
        # The relay accepted MAIL, so its transaction is open without recipients.
        relay.reply_next_rcpt("550 5.1.1 No such user")
        outcomes += send(transport, batch(1, 1))
        relay.reply_next_data("451 4.3.0 Try again later")
        outcomes += send(transport, batch(2, 1))
        outcomes += send(transport, batch(3, 1))
    finally:
        close_idle_sessions()
        relay.stop()
    assert isinstance(outcomes[0], Delivered)
    assert isinstance(outcomes[1], PermanentFailure)
    assert isinstance(outcomes[2], TemporaryFailure)
    assert isinstance(outcomes[3], Delivered)
    assert relay.connections == 1
    assert [r.data for r in relay.received] == [message(0), message(3)]
    for outcome in (outcomes[0], outcomes[3]):
        assert outcome.tls_protocol.startswith("TLSv1.")
        assert outcome.tls_cipher


def test_threads_share_pool_without_duplicates(tmp_path):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    transport = smtp(relay.url())
    errors: list[object] = []

    def work(thread: int) -> None:
        try:
            for number in range(8):
                outcomes = send(transport, batch(thread * 100 + number * 5, 5))
                errors.extend(o for o in outcomes if not isinstance(o, Delivered))
        except Exception as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        close_idle_sessions()
        relay.stop()
    assert errors == []
    data = [r.data for r in relay.received]
    assert len(data) == 160
    assert len(set(data)) == 160
    # Four threads never need more than four connections at once.
    assert relay.connections <= 4


@pytest.mark.django_db
def test_two_batches_share_tls_connection(make_contact, tmp_path, settings):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    settings.SEALMAIL_SMTP_URL = relay.url(tls="required")
    try:
        first = enqueue_messages(make_contact, 3)
        second = enqueue_messages(make_contact, 3)
        results = [delivery.deliver_batch(first), delivery.deliver_batch(second)]
    finally:
        close_idle_sessions()
        relay.stop()
    assert [result.sent for result in results] == [3, 3]
    assert relay.connections == 1
    assert len(relay.received) == 6
    assert all(received.tls for received in relay.received)
    rows = OutboxMessage.objects.filter(pk__in=first + second)
    assert {row.status for row in rows} == {OutboxMessage.Status.SENT}
    assert all(row.tls_protocol.startswith("TLSv1.") for row in rows)
    assert all(row.tls_cipher for row in rows)


def test_rset_reply_dripped_is_cut_off(monkeypatch):
    """Each byte of the reply to the probe's RSET comes within the socket timeout."""
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", 1.0)
    rset_reply = b"250 " + b"o" * 30 + b"\r\n"

    def respond(command: str, number: int):
        if command.upper() == "RSET":
            return Action([bytes([byte]) for byte in rset_reply], pause=0.2)
        return None

    relay = HostileRelay(respond, connections=2, concurrent=True)
    try:
        transport = smtp(relay.url(timeout=0.5, keepalive=10))
        send(transport, batch(0, 1))
        started = time.monotonic()
        session = transport.open()
        waited = time.monotonic() - started
        outcomes = list(session.send_all(batch(1, 1)))
        session.release()
    finally:
        close_idle_sessions()
        relay.stop()
    # The relay takes about 7 s for the reply, and the watchdog looks once a second.
    assert waited < 1.0 + 2 * 1.0, f"open() waited {waited:.1f} s for RSET's reply"
    assert isinstance(outcomes[0], Delivered), outcomes
    assert relay.accepted == 2
    assert relay.contents == [message(0), message(1)]
