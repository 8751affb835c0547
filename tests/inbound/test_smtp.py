"""The inbound server over real SMTP and LMTP sessions."""

from __future__ import annotations

import smtplib

import pytest

from sealmail.inbound.models import InboundMessage
from tests.inbound import shapes

pytestmark = pytest.mark.db_backends


def _client(controller, protocol: str) -> smtplib.SMTP:
    if protocol == "lmtp":
        client = smtplib.LMTP(controller.hostname, controller.port, timeout=30)
    else:
        client = smtplib.SMTP(controller.hostname, controller.port, timeout=30)
    client.ehlo_or_helo_if_needed()
    return client


@pytest.mark.parametrize("mail_server", ["smtp", "lmtp"], indirect=True)
def test_role_address_stored_raw(transactional_db, mail_server, no_acknowledgement):
    protocol = "lmtp" if type(mail_server).__name__ == "LMTPController" else "smtp"
    raw = shapes.plain("someone@customer.test", "Printer on fire", "It is burning.\n")
    with _client(mail_server, protocol) as client:
        refused = client.sendmail(
            "someone@customer.test", ["support@provider.test"], raw
        )
    assert refused == {}
    stored = InboundMessage.objects.get()
    assert bytes(stored.raw) == raw
    assert stored.protocol == protocol
    assert stored.rcpt_to == ["support@provider.test"]


@pytest.mark.parametrize("mail_server", ["smtp", "lmtp"], indirect=True)
def test_unknown_recipient_rejected(transactional_db, mail_server):
    protocol = "lmtp" if type(mail_server).__name__ == "LMTPController" else "smtp"
    with _client(mail_server, protocol) as client:
        client.mail("someone@customer.test")
        code, message = client.rcpt("alice@provider.test")
    assert code == 550
    assert InboundMessage.objects.count() == 0


def test_lmtp_answers_per_recipient(transactional_db, no_acknowledgement):
    from tests.inbound.conftest import _server

    controller = _server("lmtp")
    controller.start()
    try:
        raw = shapes.plain("someone@customer.test", "Two queues", "Hello both.\n")
        with smtplib.LMTP(controller.hostname, controller.port, timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            client.mail("someone@customer.test")
            client.rcpt("support@provider.test")
            client.rcpt("sales@provider.test")
            # LMTP sends one reply per recipient after the data (RFC 2033).
            first = client.data(raw)
            second = client.getreply()
    finally:
        controller.stop()
    assert first[0] == 250
    assert second[0] == 250
    assert InboundMessage.objects.get().rcpt_to == [
        "support@provider.test",
        "sales@provider.test",
    ]


def test_size_limit_rejects_large_message(transactional_db):
    from tests.inbound.conftest import _server

    controller = _server("smtp", max_bytes=2000)
    controller.start()
    try:
        raw = shapes.plain("someone@customer.test", "Big", "x" * 5000 + "\n")
        with smtplib.SMTP(controller.hostname, controller.port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPSenderRefused) as announced:
                client.sendmail("someone@customer.test", ["support@provider.test"], raw)
            # Without the SIZE parameter the limit applies to the data itself.
            client.rset()
            client.mail("someone@customer.test")
            client.rcpt("support@provider.test")
            code, _ = client.data(raw)
    finally:
        controller.stop()
    assert announced.value.smtp_code == 552
    assert code == 552
    assert InboundMessage.objects.count() == 0


def test_stored_message_parsed_by_task(
    transactional_db, mail_server, immediate_queue, no_acknowledgement
):
    raw = shapes.plain("someone@customer.test", "Queued parse", "Parse me.\n")
    with _client(mail_server, "smtp") as client:
        client.sendmail("someone@customer.test", ["support@provider.test"], raw)
    stored = InboundMessage.objects.get()
    assert stored.state == InboundMessage.State.PARSED
    assert stored.ticket is not None
    assert stored.ticket.subject == "Queued parse"


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_store_failure_answers_451(protocol):
    from aiosmtpd.controller import Controller

    from sealmail.inbound.management.commands.smtpd import LMTPController
    from sealmail.inbound.smtp import RoleAddressHandler
    from tests.support import free_port

    def failing_store(*args):
        raise OSError("disk full")

    handler = RoleAddressHandler(
        ["support@provider.test", "sales@provider.test"], failing_store, 10_000
    )
    controller_class = LMTPController if protocol == "lmtp" else Controller
    controller = controller_class(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        client_class = smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP
        with client_class(controller.hostname, controller.port, timeout=30) as client:
            client.ehlo_or_helo_if_needed()
            client.mail("someone@customer.test")
            client.rcpt("support@provider.test")
            client.rcpt("sales@provider.test")
            codes = [client.data(shapes.plain("someone@customer.test", "x", "x\n"))[0]]
            if protocol == "lmtp":
                codes.append(client.getreply()[0])
    finally:
        controller.stop()
    assert codes == [451] * (2 if protocol == "lmtp" else 1)
