"""Delivery through relays that break the SMTP rules or reply slowly.

Each test states the outcome a message must get. The relay is
:class:`HostileRelay`, a raw socket on loopback.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sealmail.outbox import delivery
from sealmail.outbox import transport as transport_module
from sealmail.outbox.models import OutboxMessage
from sealmail.outbox.transport import (
    Delivered,
    Envelope,
    PermanentFailure,
    Session,
    SmtpTransport,
    TemporaryFailure,
    Transport,
    transport_from_url,
)
from tests.outbox.helpers import enqueue_messages
from tests.outbox.hostile_relay import Action, HostileRelay
from tests.outbox.smtp_server import LoopbackRelay

Status = OutboxMessage.Status
NO_PIPELINING = "250-hostile.test\r\n250 8BITMIME"


def message(n: int) -> bytes:
    return (
        f"From: billing@provider.test\r\nTo: c{n}@customer.test\r\n"
        f"Subject: test {n}\r\nMessage-ID: <h{n}@provider.test>\r\n\r\nbody {n}\r\n"
    ).encode()


def envelopes(count: int) -> list[Envelope]:
    return [
        Envelope("billing@provider.test", f"c{n}@customer.test", message(n))
        for n in range(count)
    ]


def send(respond, count: int, **relay_options) -> tuple[HostileRelay, list]:
    relay = HostileRelay(respond, **relay_options)
    try:
        transport = transport_from_url(relay.url(), Path("/nonexistent"), "provider.test")
        assert isinstance(transport, SmtpTransport)
        with transport.open() as session:
            outcomes = list(session.send_all(envelopes(count)))
    finally:
        relay.stop()
    return relay, outcomes


def verb(command: str) -> str:
    return command if command == "<content>" else command.split(" ", 1)[0].upper()


@pytest.mark.parametrize("ehlo", [None, NO_PIPELINING], ids=["pipelining", "plain"])
def test_354_to_mail_not_permanent(ehlo):
    """A reply code that no command expects means the relay is out of step.

    Nothing was refused, so the message must be retried, not failed for good.
    """

    def respond(command: str, number: int):
        if number == 1 and verb(command) == "MAIL":
            return "354 out of step"
        return None

    options = {} if ehlo is None else {"ehlo": ehlo}
    _relay, outcomes = send(respond, 2, **options)
    assert not isinstance(outcomes[0], PermanentFailure), outcomes[0].reply
    assert isinstance(outcomes[0], TemporaryFailure)


def test_extra_ehlo_reply_not_permanent():
    """A relay that sends one reply too many shifts every later reply by one."""
    _relay, outcomes = send(
        lambda command, number: None,
        2,
        ehlo="250-hostile.test\r\n250 PIPELINING\r\n250 one reply too many",
    )
    permanent = [o.reply for o in outcomes if isinstance(o, PermanentFailure)]
    assert permanent == []


def test_long_mail_reply_not_permanent():
    """smtplib raises its own "500 Line too long." for a reply line over 8 KiB.

    Without PIPELINING, the session takes that for the relay's reply.

    The relay accepted MAIL with 250, so the message was never refused and
    must be retried, not failed with a 500 that the relay never sent.
    """

    def respond(command: str, number: int):
        if number == 1 and verb(command) == "MAIL":
            return Action([b"250 " + b"x" * 9000 + b"\r\n"])
        return None

    _relay, outcomes = send(respond, 2, ehlo=NO_PIPELINING)
    assert not isinstance(outcomes[0], PermanentFailure), outcomes[0].reply


def test_long_content_reply_is_delivered():
    """The relay accepted the content with 250, so a retry would send it twice."""

    def respond(command: str, number: int):
        if number == 1 and command == "<content>":
            return Action([b"250 " + b"x" * 9000 + b"\r\n"])
        return None

    relay, outcomes = send(respond, 2)
    assert len(relay.contents) >= 1
    assert isinstance(outcomes[0], Delivered), outcomes[0].reply


# --- a batch that takes longer than its lease --------------------------------


def test_exchange_limit_below_half_lease():
    """A worker renews its lease between messages, when half of it is left."""
    assert timedelta(seconds=transport_module.EXCHANGE_LIMIT) < delivery.LEASE / 2


class SlowRelayTransport(Transport):
    """The real relay, with a pause after each message that uses most of the lease.

    The pause stands for a relay that sends every reply within the timeout
    but slowly, for example content scanning at the end of DATA: 100
    messages at 13 s each keep one batch open for longer than the 10-minute
    lease. Instead of sleeping, each pause moves the clock on by the lease
    less a minute and runs the periodic sweep, which queues rows whose
    lease has expired for another worker (Huey runs it inline). With
    ``steal``, another worker claims the rows during the first pause.
    """

    def __init__(self, url: str, monkeypatch: pytest.MonkeyPatch, steal: bool) -> None:
        self.inner = transport_from_url(url, Path("/nonexistent"), "provider.test")
        self.monkeypatch = monkeypatch
        self.steal = steal

    def describe(self) -> str:
        return "slow relay"

    def open(self) -> Session:
        return SlowSession(self.inner.open(), self.monkeypatch, self.steal)


class SlowSession(Session):
    def __init__(
        self, inner: Session, monkeypatch: pytest.MonkeyPatch, steal: bool
    ) -> None:
        self.inner = inner
        self.monkeypatch = monkeypatch
        self.steal = steal
        self.offset = timedelta(0)

    def send_all(self, envelopes):
        real_now = timezone.now
        for index, outcome in enumerate(self.inner.send_all(envelopes)):
            # The pause belongs to this message's exchange, before its reply.
            self.offset += delivery.LEASE - timedelta(minutes=1)
            later = real_now() + self.offset
            self.monkeypatch.setattr(timezone, "now", lambda: later)
            if self.steal and index == 0:
                OutboxMessage.objects.update(lease_token="another-worker")
            delivery.sweep()
            yield outcome

    def close(self) -> None:
        self.inner.close()


def deliver_slowly(make_contact, tmp_path, settings, monkeypatch, *, steal: bool):
    relay = LoopbackRelay(tmp_path)
    relay.start()
    settings.SEALMAIL_SMTP_URL = relay.url()
    try:
        ids = enqueue_messages(make_contact, 4)
        delivery.deliver_batch(
            ids, transport=SlowRelayTransport(relay.url(), monkeypatch, steal)
        )
    finally:
        relay.stop()
    return ids, relay.received


@pytest.mark.django_db
def test_batch_past_lease_sends_once(make_contact, tmp_path, settings, monkeypatch):
    ids, received = deliver_slowly(
        make_contact, tmp_path, settings, monkeypatch, steal=False
    )
    message_ids = [item.message_id for item in received]
    assert len(message_ids) == 4
    assert sorted(set(message_ids)) == sorted(message_ids)
    statuses = set(
        OutboxMessage.objects.filter(pk__in=ids).values_list("status", flat=True)
    )
    assert statuses == {Status.SENT}


@pytest.mark.django_db
def test_batch_that_lost_lease_stops(make_contact, tmp_path, settings, monkeypatch):
    ids, received = deliver_slowly(
        make_contact, tmp_path, settings, monkeypatch, steal=True
    )
    # Only the first message went out before the lease was found taken.
    assert len(received) == 1
    rows = OutboxMessage.objects.filter(pk__in=ids)
    # The results belong to the worker that holds the lease now: this
    # worker wrote none of them.
    assert set(rows.values_list("status", flat=True)) == {Status.QUEUED}
    assert set(rows.values_list("lease_token", flat=True)) == {"another-worker"}
