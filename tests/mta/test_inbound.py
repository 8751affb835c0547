"""Inbound mail through a real Postfix: LMTP handover, a ticket, an encrypted reply.

A customer's GnuPG writes signed and encrypted PGP/MIME to support@. The
private Postfix takes it over SMTP with STARTTLS and hands it to sealmail's
LMTP server, which stores, decrypts and files it as a ticket. The automatic
acknowledgement then goes back out through the same Postfix into the
customer's Maildir, where notmuch decrypts it.
"""

from __future__ import annotations

import smtplib
import ssl
import time
import uuid
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller
from django.conf import LazySettings

from sealmail.inbound.management.commands.smtpd import LMTPController
from sealmail.inbound.models import InboundMessage, Ticket
from sealmail.inbound.smtp import RoleAddressHandler, store_raw
from sealmail.keys.store import get_keystore
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.inbound.peers import GnuPGPeer
from tests.mta.postfix import PostfixInstance, parse
from tests.peers.notmuch import Notmuch

pytestmark = pytest.mark.django_db(transaction=True)

TEXT = "Grüße aus Köln: my line DSL-4711 has been down since 9:00.\n"


@pytest.fixture
def huey_immediate(settings: LazySettings) -> Iterator[None]:
    huey = settings.HUEY
    previous = huey.immediate
    huey.immediate = True
    yield
    huey.immediate = previous


@pytest.fixture
def lmtp_server(
    postfix: PostfixInstance, settings: LazySettings
) -> Iterator[Controller]:
    """sealmail's LMTP server on the port Postfix's transport map points at."""
    handler = RoleAddressHandler(
        settings.SEALMAIL_ROLE_ADDRESSES, store_raw, settings.SEALMAIL_SMTPD_MAX_BYTES
    )
    controller = LMTPController(
        handler, hostname="127.0.0.1", port=postfix.lmtp_port, decode_data=False
    )
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture
def support_certificate() -> bytes:
    """The armored certificate customers encrypt mail to the role addresses with."""
    store = get_keystore()
    if store.is_empty():
        store.generate(["<billing@provider.test>", "<support@provider.test>"])
    return str(store.certificates()[0]).encode()


def wait_for_ticket(timeout: float = 30.0) -> Ticket:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ticket = Ticket.objects.first()
        if ticket is not None:
            return ticket
        time.sleep(0.1)
    raise AssertionError(f"no ticket within {timeout:.0f} s")


def test_support_mail_becomes_ticket(
    postfix: PostfixInstance,
    lmtp_server: Controller,
    settings: LazySettings,
    huey_immediate: None,
    support_certificate: bytes,
    tmp_path,
) -> None:
    settings.SEALMAIL_SMTP_URL = postfix.smtp_url(tls="required")
    settings.SEALMAIL_INBOUND_ACKNOWLEDGE = True
    address = f"bob-{uuid.uuid4().hex[:10]}@customer.test"
    customer = GnuPGPeer(tmp_path / "customer", address)
    contact = register(customer)
    customer.gpg.import_key(support_certificate)
    raw = shapes.combined(
        customer,
        support_certificate,
        "...",
        TEXT,
        protected_subject="Line DSL-4711 down",
    )

    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.starttls(context=context)
        refused = client.sendmail(address, ["support@provider.test"], raw)
    assert refused == {}

    ticket = wait_for_ticket()
    assert ticket.queue == "support@provider.test"
    assert ticket.subject == "Line DSL-4711 down"
    assert ticket.customer_id == contact.customer_id
    message = InboundMessage.objects.get()
    assert message.protocol == "lmtp"
    assert message.rcpt_to == ["support@provider.test"]
    assert message.state == InboundMessage.State.PARSED, message.parse_error
    assert message.encryption == "full"
    assert message.signed_by_customer is True
    assert message.protected_headers is True
    texts = [
        part.text.replace("\r\n", "\n")
        for part in message.parts.all()
        if part.text.strip()
    ]
    assert texts == [TEXT]
    # Postfix adds its Received header in front of the customer's bytes.
    assert bytes(message.raw).endswith(raw)
    assert b"by mta.sealmail.test (Postfix) with ESMTPS" in bytes(message.raw)

    [acknowledgement] = postfix.wait_for_mail(address)
    assert parse(acknowledgement).get_content_type() == "multipart/encrypted"
    notmuch = Notmuch(tmp_path / "notmuch", customer.gpg.home)
    notmuch.deliver(acknowledgement)
    shown = notmuch.show(str(parse(acknowledgement)["Message-ID"]))
    assert shown["crypto"]["decrypted"]["status"] == "full", shown["crypto"]
    assert [status["status"] for status in shown["crypto"]["signed"]["status"]] == [
        "good"
    ]


def test_unknown_role_address_rejected_by_postfix(postfix: PostfixInstance) -> None:
    context = ssl.create_default_context(cafile=str(postfix.ca_file))
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as client:
        client.starttls(context=context)
        client.ehlo()
        client.mail("bob@customer.test")
        code, _ = client.rcpt("billing-robot@provider.test")
    assert code == 550
    assert InboundMessage.objects.count() == 0
