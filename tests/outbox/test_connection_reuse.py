"""Keeping a relay connection open for the next batch.

A worker sends a burst as many batches. The connection of one batch
stays open for ``keepalive`` seconds, replies to RSET before the next batch
uses it, and is closed with QUIT when it stays idle. Only a connection
whose last exchange ended cleanly is kept.
"""

from __future__ import annotations


import pytest

from sealmail.outbox import transport as transport_module
from sealmail.outbox.transport import (
    Delivered,
    TemporaryFailure,
    TransportConfigError,
    close_idle_sessions,
    parse_smtp_url,
)
from tests.outbox.hostile_relay import Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay
from tests.outbox.relay_client import (
    batch,
    ended_with_quit,
    idle_count,
    message,
    second_batch,
    send,
    smtp,
    wait_for,
)


@pytest.fixture
def relay(tmp_path):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    yield relay
    relay.stop()


def test_next_batch_uses_the_same_tls_connection(relay):
    transport = smtp(relay.url())
    first = send(transport, batch(0, 3))
    second = send(transport, batch(3, 3))
    assert all(isinstance(outcome, Delivered) for outcome in first + second)
    # Both batches went over TLS, and the TLS state is reported for each.
    assert all(outcome.tls_protocol for outcome in first + second)
    assert [r.data for r in relay.received] == [message(n) for n in range(6)]
    assert all(r.tls for r in relay.received)
    assert relay.connections == 1
    assert relay.quits == 0
    close_idle_sessions()
    assert wait_for(lambda: relay.quits == 1)


def test_reuse_sends_rset_then_quit():
    relay = HostileRelay(lambda command, number: None)
    try:
        transport = smtp(relay.url(keepalive=10))
        send(transport, batch(0, 1))
        send(transport, batch(1, 1))
        close_idle_sessions()
        assert wait_for(lambda: ended_with_quit(relay))
    finally:
        relay.stop()
    assert relay.commands[1:] == [
        "MAIL FROM:<billing@provider.test>",
        "RCPT TO:<c0@customer.test>",
        "DATA",
        "<content>",
        "rset",
        "MAIL FROM:<billing@provider.test>",
        "RCPT TO:<c1@customer.test>",
        "DATA",
        "<content>",
        "QUIT",
    ]
    assert relay.accepted == 1


def test_closed_idle_connection_is_replaced(relay):
    transport = smtp(relay.url())
    send(transport, batch(0, 2))
    # The relay restarts, which drops the idle connection.
    relay.stop()
    relay.start()
    outcomes = send(transport, batch(2, 2))
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert [r.data for r in relay.received] == [message(n) for n in range(4)]


@pytest.mark.parametrize(
    "rset_reply",
    [
        "421 4.4.2 idle too long, closing",
        Action([], then="reset"),
        Action([b"354 go ahead\r\n"]),  # out of step
    ],
    ids=["421", "reset", "out-of-step"],
)
def test_idle_connection_that_fails_rset_is_replaced(rset_reply):
    def respond(command: str, number: int):
        return rset_reply if command.upper() == "RSET" else None

    relay = HostileRelay(respond, connections=2)
    outcomes = second_batch(relay, 1, 2)
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert relay.accepted == 2
    assert relay.contents == [message(0), message(1), message(2)]


def test_close_after_rset_restarts_batch():
    """A relay that replies to RSET and then hangs up fails the batch's first MAIL.

    Nothing of the batch reached the relay, so it starts over on a new
    connection instead of waiting for a retry.
    """

    def respond(command: str, number: int):
        if command.upper() == "RSET":
            return Action([b"250 OK\r\n"], then="close")
        return None

    relay = HostileRelay(respond, connections=2)
    outcomes = second_batch(relay, 1, 2)
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert relay.accepted == 2
    assert relay.contents == [message(0), message(1), message(2)]


def test_per_connection_limit_restarts_batch():
    """421 to the first MAIL on a kept connection: the batch moves to a new one."""

    def respond(command: str, number: int):
        if command.upper().startswith("MAIL") and number == 3:
            return Action([b"421 4.7.0 too many messages in this connection\r\n"], then="close")
        return None

    relay = HostileRelay(respond, connections=2)
    try:
        transport = smtp(relay.url(keepalive=10))
        assert all(isinstance(o, Delivered) for o in send(transport, batch(0, 2)))
        outcomes = send(transport, batch(2, 2))
    finally:
        close_idle_sessions()
        relay.stop()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert relay.accepted == 2
    assert relay.contents == [message(n) for n in range(4)]


def test_loss_after_content_not_resent():
    """The relay may have taken a message whose reply was lost: no second copy."""

    def respond(command: str, number: int):
        if command == "<content>" and number == 2:
            return Action([], then="close")
        return None

    relay = HostileRelay(respond, connections=2)
    outcomes = second_batch(relay, 1, 1)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert relay.accepted == 1
    assert relay.contents == [message(0), message(1)]


def test_refused_restart_means_retry():
    relay: HostileRelay

    def respond(command: str, number: int):
        if command.upper() == "RSET":
            relay.server.close()  # no new connection after this one
            return Action([b"250 OK\r\n"], then="close")
        return None

    relay = HostileRelay(respond)
    try:
        transport = smtp(relay.url(keepalive=10))
        send(transport, batch(0, 1))
        outcomes = send(transport, batch(1, 2))
    finally:
        relay.stop()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert "connecting to" in outcomes[0].reply
    assert relay.contents == [message(0)]
    assert idle_count() == 0


def test_watchdog_closes_expired_idle_connection():
    relay = HostileRelay(lambda command, number: None)
    try:
        transport = smtp(relay.url(keepalive=1))
        send(transport, batch(0, 1))
        assert idle_count() == 1
        # The watchdog looks once a second.
        assert wait_for(lambda: ended_with_quit(relay), seconds=5)
        assert idle_count() == 0
    finally:
        relay.stop()


def test_lost_connection_is_not_kept():
    def respond(command: str, number: int):
        if command == "<content>" and number == 1:
            return "421 4.3.2 shutting down"
        return None

    relay = HostileRelay(respond)
    try:
        transport = smtp(relay.url(keepalive=10))
        outcomes = send(transport, batch(0, 2))
        assert isinstance(outcomes[0], TemporaryFailure)
        assert outcomes[0].connection_lost
        assert idle_count() == 0
    finally:
        relay.stop()


def test_exception_closes_session():
    relay = HostileRelay(lambda command, number: None)
    try:
        transport = smtp(relay.url(keepalive=10))
        with pytest.raises(RuntimeError):
            with transport.open() as session:
                list(session.send_all(batch(0, 1)))
                raise RuntimeError("the caller failed")
        assert idle_count() == 0
        assert wait_for(lambda: ended_with_quit(relay))
    finally:
        relay.stop()


def test_abandoned_transaction_closes_session():
    relay = HostileRelay(lambda command, number: None)
    try:
        transport = smtp(relay.url(keepalive=10))
        with transport.open() as session:
            outcomes = session.send_all(batch(0, 3))
            next(outcomes)  # the second message's content is still pending
            outcomes.close()
        assert idle_count() == 0
    finally:
        relay.stop()
    # Closing the socket ends the open transaction: nothing more arrived.
    assert relay.contents == [message(0)]
    assert "QUIT" not in [command.upper() for command in relay.commands]


def test_message_limit_ends_connection(relay, monkeypatch):
    monkeypatch.setattr(transport_module, "MAX_MESSAGES_PER_CONNECTION", 3)
    transport = smtp(relay.url())
    for first in (0, 2, 4):
        outcomes = send(transport, batch(first, 2))
        assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    # The first connection carried 4 messages and was closed; the third
    # batch opened the second one.
    assert relay.connections == 2
    assert wait_for(lambda: relay.quits == 1)


def test_keepalive_zero_closes_after_each_batch(relay):
    transport = smtp(relay.url(keepalive="0"))
    send(transport, batch(0, 1))
    send(transport, batch(1, 1))
    assert relay.connections == 2
    assert wait_for(lambda: relay.quits == 2)
    assert idle_count() == 0


def test_other_relay_setting_not_reused(relay):
    send(smtp(relay.url()), batch(0, 1))
    send(smtp(relay.url(timeout="6")), batch(1, 1))
    assert relay.connections == 2


def test_child_process_opens_own_connection(relay, monkeypatch):
    transport = smtp(relay.url())
    send(transport, batch(0, 1))
    parent = transport_module.os.getpid()
    monkeypatch.setattr(transport_module.os, "getpid", lambda: parent + 1)
    send(transport, batch(1, 1))
    assert relay.connections == 2


@pytest.mark.parametrize("value", ["-1", "soon", "241", "nan"])
def test_keepalive_out_of_range_is_refused(value):
    with pytest.raises(TransportConfigError) as raised:
        parse_smtp_url(f"smtp://127.0.0.1?keepalive={value}", "provider.test")
    assert f"keepalive={value!r}" in str(raised.value)
    assert "0 (close after each batch) to 240" in str(raised.value)


def test_keepalive_default_and_value():
    assert parse_smtp_url("smtp://127.0.0.1", "p.test").keepalive == 10
    assert parse_smtp_url("smtp://127.0.0.1?keepalive=2.5", "p.test").keepalive == 2.5
