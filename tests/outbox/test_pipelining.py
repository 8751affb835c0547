"""Sending a batch over one SMTP connection, with and without PIPELINING.

The aiosmtpd relay checks what arrives. A scripted relay on a plain socket
sends replies that aiosmtpd never sends, such as 354 to DATA without a valid
recipient or a connection closed after the message content, and records
every command in order.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sealmail.outbox.transport import (
    Delivered,
    Envelope,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    transport_from_url,
)
from tests.outbox.hostile_relay import Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay


def message(n: int) -> bytes:
    return (
        f"From: billing@provider.test\r\nTo: c{n}@customer.test\r\n"
        f"Subject: test {n}\r\nMessage-ID: <t{n}@provider.test>\r\n\r\n"
        ".a line that starts with a dot\r\nend\r\n"
    ).encode()


def envelopes(count: int) -> list[Envelope]:
    return [
        Envelope("billing@provider.test", f"c{n}@customer.test", message(n))
        for n in range(count)
    ]


def smtp(url: str) -> SmtpTransport:
    transport = transport_from_url(url, Path("/nonexistent"), "provider.test")
    assert isinstance(transport, SmtpTransport)
    return transport


@pytest.mark.parametrize("pipelining", [True, False])
def test_batch_outcomes_in_order(tmp_path, pipelining):
    relay = LoopbackRelay(tmp_path, pipelining=pipelining)
    relay.start()
    try:
        relay.reply_next_rcpt("550 5.1.1 No such user")  # message 0
        with smtp(relay.url()).open() as session:
            assert session.pipelining is pipelining
            outcomes = []
            for outcome in session.send_all(envelopes(5)):
                if len(outcomes) == 1:
                    # Message 2's content gets this reply.
                    relay.reply_next_data("451 4.3.0 Try again later")
                outcomes.append(outcome)
    finally:
        relay.stop()

    kinds = [type(outcome) for outcome in outcomes]
    assert kinds == [PermanentFailure, Delivered, TemporaryFailure, Delivered, Delivered]
    assert outcomes[0].reply == "550 5.1.1 No such user"
    assert outcomes[2].reply == "451 4.3.0 Try again later"
    assert not any(
        getattr(outcome, "connection_lost", False) for outcome in outcomes
    )
    assert all(o.tls_protocol for o in outcomes if isinstance(o, Delivered))

    received = relay.received
    assert [r.rcpt_tos for r in received] == [
        ("c1@customer.test",),
        ("c3@customer.test",),
        ("c4@customer.test",),
    ]
    # The relay undoes the dot-stuffing: the bytes are the composed bytes.
    assert [r.data for r in received] == [message(1), message(3), message(4)]


def test_international_domain_and_refused_local_part(tmp_path):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    try:
        batch = [
            Envelope("billing@provider.test", "anna@bücher.test", message(0)),
            Envelope("billing@provider.test", "jürgen@customer.test", message(1)),
            Envelope("billing@provider.test", "c2@customer.test", message(2)),
        ]
        with smtp(relay.url()).open() as session:
            outcomes = list(session.send_all(batch))
    finally:
        relay.stop()
    assert isinstance(outcomes[0], Delivered)
    assert isinstance(outcomes[1], PermanentFailure)
    assert "SMTPUTF8" in outcomes[1].reply
    assert "jürgen@customer.test" in outcomes[1].reply
    assert isinstance(outcomes[2], Delivered)
    assert [r.rcpt_tos for r in relay.received] == [
        ("anna@xn--bcher-kva.test",),
        ("c2@customer.test",),
    ]


# --- a scripted relay --------------------------------------------------------


def run_scripted(respond, count: int):
    """Send ``count`` messages over one pipelined session to a HostileRelay."""
    relay = HostileRelay(respond)
    try:
        with smtp(relay.url(timeout=5)).open() as session:
            assert session.pipelining
            outcomes = list(session.send_all(envelopes(count)))
    finally:
        relay.stop()
    return relay, outcomes


def test_data_accepted_after_rejection_closes_connection():
    def respond(command: str, transaction: int) -> str | None:
        if transaction == 1 and command.startswith("RCPT"):
            return "550 5.1.1 no such user"
        return None  # DATA gets 354 even so: the relay is out of step

    relay, outcomes = run_scripted(respond, 2)
    # The rejection cannot be trusted when DATA was accepted, so the first
    # message is retried later, and nothing more goes over this connection.
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].connection_lost
    assert "out of step" in outcomes[0].reply
    # The connection was closed without any content or QUIT.
    assert relay.contents == []
    assert relay.commands[1:] == [
        "MAIL FROM:<billing@provider.test>",
        "RCPT TO:<c0@customer.test>",
        "DATA",
    ]


def test_mail_refused_then_next_transaction_is_reset():
    def respond(command: str, transaction: int) -> str | None:
        if transaction == 1 and command.startswith("MAIL"):
            return "452 4.3.1 insufficient storage"
        if transaction == 1 and command != "RSET":
            return "503 5.5.1 bad sequence"
        return None

    relay, outcomes = run_scripted(respond, 2)
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].reply == "452 4.3.1 insufficient storage"
    assert not outcomes[0].connection_lost
    assert isinstance(outcomes[1], Delivered)
    assert relay.contents == [message(1)]
    assert relay.commands[4] == "RSET"


def test_connection_closed_after_content_loses_only_that_outcome():
    def respond(command: str, transaction: int) -> str | None:
        if transaction == 2 and command == "<content>":
            return Action(then="close")
        return None

    relay, outcomes = run_scripted(respond, 4)
    assert isinstance(outcomes[0], Delivered)
    # The second message's reply never came: it counts as not sent, and
    # nothing more is tried on this connection.
    assert len(outcomes) == 2
    assert isinstance(outcomes[1], TemporaryFailure)
    assert outcomes[1].connection_lost
    assert len(relay.contents) == 2


def test_421_after_content_stops_the_batch():
    def respond(command: str, transaction: int) -> str | None:
        if transaction == 1 and command == "<content>":
            return "421 4.3.2 shutting down"
        return None

    relay, outcomes = run_scripted(respond, 3)
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], TemporaryFailure)
    assert outcomes[0].reply == "421 4.3.2 shutting down"
    assert outcomes[0].connection_lost


def test_pipelined_commands_share_a_packet():
    """One write carries a message's content and the next MAIL, RCPT and DATA."""
    relay, outcomes = run_scripted(lambda command, transaction: None, 3)
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    assert relay.contents == [message(0), message(1), message(2)]
    per_message = [
        "MAIL FROM:<billing@provider.test>",
        "RCPT TO:<c{n}@customer.test>",
        "DATA",
        "<content>",
    ]
    transactions = relay.commands[1:-1]
    assert transactions == [
        command.format(n=n) for n in range(3) for command in per_message
    ]
    packets = relay.packets[1:-1]
    # MAIL, RCPT and DATA of a message arrive in one read. The content of
    # message n arrives in the same read as the envelope of message n + 1.
    groups = [packets[0:3], packets[3:7], packets[7:11]]
    assert [len(set(group)) for group in groups] == [1, 1, 1]
    assert len(set(packets)) == 4
