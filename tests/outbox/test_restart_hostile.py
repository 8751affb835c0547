"""Starting a batch over on a new connection after a kept connection failed first.

A batch whose reused connection fails before any message content went
out moves to a new connection at once. These tests try to make that
restart send a message twice, lose one, weaken TLS, take longer than one
exchange may take, or leave a socket or a watchdog entry behind.
"""

from __future__ import annotations

import socket
import time

import pytest

from sealmail.outbox import delivery
from sealmail.outbox import transport as transport_module
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.transport import (
    Delivered,
    DeliveryFailure,
    Envelope,
    PermanentFailure,
    SmtpSession,
    TemporaryFailure,
    close_idle_sessions,
)
from tests.outbox.helpers import enqueue_messages
from tests.outbox.hostile_relay import EHLO, Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay
from tests.outbox.relay_client import batch, message, second_batch, send, smtp

NO_PIPELINING = "250-hostile.test\r\n250 8BITMIME"
WITH_AUTH = "250-hostile.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 AUTH PLAIN"


def close_after_rset(command: str, number: int):
    """Reply 250 to RSET, then close the connection."""
    if command.upper() == "RSET":
        return Action([b"250 OK\r\n"], then="close")
    return None


def watched(session: SmtpSession) -> bool:
    with transport_module._watchdog._lock:
        return session in transport_module._watchdog._sessions


def timed_first_outcome(
    relay: HostileRelay, timeout: float
) -> tuple[Delivered | DeliveryFailure, float, SmtpSession]:
    """Send one message, then time the first outcome of a second one.

    Returns that outcome, the seconds it took and the session, and stops
    the relay.
    """
    try:
        transport = smtp(relay.url(keepalive=10, timeout=timeout))
        send(transport, batch(0, 1))
        with transport.open() as session:
            started = time.monotonic()
            first = next(session.send_all(batch(1, 1)))
            waited = time.monotonic() - started
    finally:
        close_idle_sessions()
        relay.stop()
    return first, waited, session


@pytest.mark.parametrize("ehlo", [EHLO, NO_PIPELINING], ids=["pipelining", "plain"])
def test_restart_sends_each_message_once(ehlo):
    relay = HostileRelay(close_after_rset, ehlo=ehlo, connections=2)
    outcomes = second_batch(relay, 1, 3)
    assert all(isinstance(outcome, Delivered) for outcome in outcomes), outcomes
    assert relay.accepted == 2
    assert relay.contents == [message(n) for n in range(4)]


@pytest.mark.parametrize("ehlo", [EHLO, NO_PIPELINING], ids=["pipelining", "plain"])
@pytest.mark.parametrize("count", [1, 3])
def test_content_taken_then_dropped_is_not_resent(ehlo, count):
    """The relay read the first content and closed before its reply: no restart."""

    def respond(command: str, number: int):
        if command == "<content>" and relay.accepted == 1 and number == 2:
            return Action([], then="close")
        return None

    relay = HostileRelay(respond, ehlo=ehlo, connections=2, concurrent=True)
    try:
        transport = smtp(relay.url(keepalive=10))
        send(transport, batch(0, 1))
        outcomes = send(transport, batch(1, count))
    finally:
        close_idle_sessions()
        relay.stop()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert relay.accepted == 1
    assert relay.contents == [message(0), message(1)]


def test_restart_happens_once():
    """A new connection that also fails first ends the batch: no third one."""

    def respond(command: str, number: int):
        if command.upper().startswith("MAIL") and (relay.accepted > 1 or number > 1):
            return Action([b"421 4.7.0 try later\r\n"], then="close")
        return None

    relay = HostileRelay(respond, connections=3, concurrent=True)
    outcomes = second_batch(relay, 1, 2)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert relay.accepted == 2
    assert relay.contents == [message(0)]


def test_invalid_first_address_prevents_restart():
    """A first address that _path() rejects, then a lost kept connection."""
    relay = HostileRelay(close_after_rset, connections=2, concurrent=True)
    envelopes = [Envelope("billing@provider.test", "jörg@customer.test", message(1))]
    envelopes += batch(2, 2)
    try:
        transport = smtp(relay.url(keepalive=10))
        send(transport, batch(0, 1))
        outcomes = send(transport, envelopes)
    finally:
        close_idle_sessions()
        relay.stop()
    assert isinstance(outcomes[0], PermanentFailure)
    assert not outcomes[0].connection_lost
    # The batch's first outcome was no lost connection, so it is not started over.
    assert len(outcomes) == 2
    assert isinstance(outcomes[1], TemporaryFailure)
    assert outcomes[1].connection_lost
    assert relay.contents == [message(0)]


def test_auth_rejected_on_restart_is_temporary():
    """535 to AUTH on the new connection is no verdict on the first message."""

    def respond(command: str, number: int):
        if command.upper().startswith("AUTH"):
            if relay.accepted == 1:
                return "235 2.7.0 accepted"
            return "535 5.7.8 authentication failed"
        return close_after_rset(command, number)

    relay = HostileRelay(respond, ehlo=WITH_AUTH, connections=2)
    try:
        url = f"smtp://billing:s3cret@127.0.0.1:{relay.port}?tls=none&keepalive=10"
        transport = smtp(url)
        send(transport, batch(0, 1))
        with transport.open() as session:
            outcomes = list(session.send_all(batch(1, 2)))
    finally:
        close_idle_sessions()
        relay.stop()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert not isinstance(outcomes[0], PermanentFailure)
    assert outcomes[0].connection_lost
    assert "535" in outcomes[0].reply
    assert relay.contents == [message(0)]
    assert not watched(session)


@pytest.mark.django_db
def test_auth_rejected_on_restart_keeps_messages_queued(make_contact, settings):
    def respond(command: str, number: int):
        if command.upper().startswith("AUTH"):
            if relay.accepted == 1:
                return "235 2.7.0 accepted"
            return "535 5.7.8 authentication failed"
        return close_after_rset(command, number)

    relay = HostileRelay(respond, ehlo=WITH_AUTH, connections=2)
    settings.SEALMAIL_SMTP_URL = (
        f"smtp://billing:s3cret@127.0.0.1:{relay.port}?tls=none&keepalive=10"
    )
    try:
        first = enqueue_messages(make_contact, 1)
        second = enqueue_messages(make_contact, 2)
        results = [delivery.deliver_batch(first), delivery.deliver_batch(second)]
    finally:
        close_idle_sessions()
        relay.stop()
    assert results[0].sent == 1
    assert results[1].failed == 0
    assert results[1].retry == 2
    rows = OutboxMessage.objects.filter(pk__in=second)
    assert {row.status for row in rows} == {OutboxMessage.Status.QUEUED}
    assert len(relay.contents) == 1


@pytest.mark.django_db
def test_deliver_batch_restart_sends_each_once(make_contact, settings):
    relay = HostileRelay(close_after_rset, connections=2)
    settings.SEALMAIL_SMTP_URL = relay.url(keepalive=10)
    try:
        first = enqueue_messages(make_contact, 2)
        second = enqueue_messages(make_contact, 3)
        results = [delivery.deliver_batch(first), delivery.deliver_batch(second)]
    finally:
        close_idle_sessions()
        relay.stop()
    assert [result.sent for result in results] == [2, 3]
    assert relay.accepted == 2
    assert len(relay.contents) == 5
    assert len(set(relay.contents)) == 5
    rows = OutboxMessage.objects.filter(pk__in=first + second)
    assert {row.status for row in rows} == {OutboxMessage.Status.SENT}
    assert {row.attempts for row in rows} == {1}


def test_restart_after_hang_meets_exchange_limit(monkeypatch):
    """The caller expects each outcome within EXCHANGE_LIMIT, restart included.

    The outbox renews a batch's lease only between two outcomes, so an
    outcome that takes longer can outlast the lease, and another worker
    then sends the same messages.
    """
    limit = 4.0
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", limit)

    def respond(command: str, number: int):
        if not command.upper().startswith("MAIL"):
            return None
        if relay.accepted == 1 and number == 2:
            return Action([], then="hang")
        if relay.accepted == 2:
            return Action([b"", b"250 OK\r\n"], pause=limit - 1)
        return None

    relay = HostileRelay(respond, connections=2, concurrent=True)
    first, waited, _session = timed_first_outcome(relay, timeout=30)
    # The watchdog looks once a second.
    assert waited < limit + 1.5, f"the first outcome took {waited:.1f} s ({first!r})"
    assert isinstance(first, TemporaryFailure)
    assert first.connection_lost
    assert relay.contents == [message(0)]


def test_slow_restart_meets_exchange_limit(monkeypatch):
    """A slow 421 on the kept connection, then a slow reply on the new one.

    Each byte comes within the socket timeout, so only the watchdog ends
    the exchange.
    """
    limit = 10.0
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", limit)

    def respond(command: str, number: int):
        if not command.upper().startswith("MAIL"):
            return None
        if relay.accepted == 1 and number == 2:
            reply = b"421 4.7.0 closing\r\n"
            return Action([b"", reply], pause=3.5, then="close")
        if relay.accepted == 2:
            return Action([bytes([byte]) for byte in b"250 OK\r\n"], pause=3.0)
        return None

    relay = HostileRelay(respond, connections=2, concurrent=True)
    first, waited, session = timed_first_outcome(relay, timeout=4)
    # The watchdog looks once a second.
    assert waited < limit + 2, f"the first outcome took {waited:.1f} s ({first!r})"
    assert isinstance(first, TemporaryFailure)
    assert first.connection_lost
    assert relay.accepted == 2
    assert relay.contents == [message(0)]
    assert not watched(session)


def test_restart_with_tls_required_never_sends_in_clear(tmp_path, monkeypatch):
    """The new connection must offer STARTTLS again, or nothing is sent."""
    tls_relay = LoopbackRelay(tmp_path)
    tls_relay.start()
    plain_relay = None
    try:
        transport = smtp(tls_relay.url(tls="required", keepalive="10"))
        first = send(transport, batch(0, 1))
        # The relay comes back without STARTTLS on the same port, after the
        # kept connection passed its RSET.
        tls_relay.stop()
        plain_relay = LoopbackRelay(tmp_path, starttls=False)
        plain_relay.port = tls_relay.port
        plain_relay.start()
        monkeypatch.setattr(SmtpSession, "probe", lambda self: True)
        with transport.open() as session:
            outcomes = list(session.send_all(batch(1, 2)))
    finally:
        close_idle_sessions()
        tls_relay.stop()
        if plain_relay is not None:
            plain_relay.stop()
    assert isinstance(first[0], Delivered)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert "does not offer STARTTLS" in outcomes[0].reply
    assert plain_relay.received == []
    assert not watched(session)


def test_restart_reports_the_new_connections_tls_state(tmp_path, monkeypatch):
    tls_relay = LoopbackRelay(tmp_path)
    tls_relay.start()
    plain_relay = None
    try:
        transport = smtp(tls_relay.url(keepalive="10"))
        first = send(transport, batch(0, 1))
        tls_relay.stop()
        plain_relay = LoopbackRelay(tmp_path, starttls=False)
        plain_relay.port = tls_relay.port
        plain_relay.start()
        monkeypatch.setattr(SmtpSession, "probe", lambda self: True)
        outcomes = send(transport, batch(1, 2))
    finally:
        close_idle_sessions()
        tls_relay.stop()
        if plain_relay is not None:
            plain_relay.stop()
    assert first[0].tls_protocol.startswith("TLSv1.")
    assert all(isinstance(outcome, Delivered) for outcome in outcomes), outcomes
    assert [outcome.tls_protocol for outcome in outcomes] == ["", ""]
    assert [outcome.tls_cipher for outcome in outcomes] == ["", ""]
    assert [r.tls for r in plain_relay.received] == [False, False]


def test_restart_skipped_when_connect_may_overrun(monkeypatch):
    """A relay whose listen queue is full drops the SYN, and connect() waits.

    The watchdog cannot cut a TCP connect short, so a restart whose
    connect could take the socket timeout past the limit is not tried.
    """
    limit = 4.0
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", limit)
    relay = HostileRelay(close_after_rset)
    fillers = []
    try:
        transport = smtp(relay.url(keepalive=10, timeout=8))
        send(transport, batch(0, 1))
        # No more accept() calls: one queued connection fills a queue of 0.
        relay.server.listen(0)
        fillers.append(socket.create_connection(("127.0.0.1", relay.port), timeout=1))
        with transport.open() as session:
            started = time.monotonic()
            outcomes = list(session.send_all(batch(1, 2)))
            waited = time.monotonic() - started
    finally:
        for filler in fillers:
            filler.close()
        close_idle_sessions()
        relay.stop()
    assert waited < limit + 1.5, f"the first outcome took {waited:.1f} s ({outcomes!r})"
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert relay.contents == [message(0)]


def test_watchdog_cuts_off_restart_login(monkeypatch):
    """A new connection that drips its reply to AUTH is closed at the cutoff.

    Each byte comes within the socket timeout, so only the watchdog ends
    the login.
    """
    limit = 3.0
    monkeypatch.setattr(transport_module, "EXCHANGE_LIMIT", limit)

    def respond(command: str, number: int):
        if command.upper().startswith("AUTH"):
            reply = b"235 2.7.0 accepted\r\n"
            if relay.accepted == 1:
                return Action([reply])
            return Action([bytes([byte]) for byte in reply], pause=0.5)
        return close_after_rset(command, number)

    relay = HostileRelay(respond, ehlo=WITH_AUTH, connections=2, concurrent=True)
    try:
        url = f"smtp://billing:s3cret@127.0.0.1:{relay.port}?tls=none&keepalive=10"
        transport = smtp(url + "&timeout=1")
        send(transport, batch(0, 1))
        with transport.open() as session:
            started = time.monotonic()
            outcomes = list(session.send_all(batch(1, 2)))
            waited = time.monotonic() - started
    finally:
        close_idle_sessions()
        relay.stop()
    assert waited < limit + 2, f"the first outcome took {waited:.1f} s ({outcomes!r})"
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert "a new connection included" in outcomes[0].reply
    assert relay.accepted == 2
    assert relay.contents == [message(0)]
    assert not watched(session)
    assert session.client.sock is None
