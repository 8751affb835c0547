"""Acknowledgements and staff replies go out through the outbox, encrypted when possible."""

from __future__ import annotations

import pytest

from sealmail.inbound.models import Ticket, TicketReply
from sealmail.outbox.models import OutboxMessage
from tests.inbound import shapes
from tests.inbound.conftest import register
from tests.inbound.test_hostile import deliver

pytestmark = pytest.mark.db_backends

SECRET_SUBJECT = "Our alarm code is 4711"


@pytest.fixture
def maildir(settings, tmp_path, immediate_queue):
    settings.MAILDIR = tmp_path / "maildir"
    settings.SEALMAIL_SMTP_URL = ""
    settings.SEALMAIL_INBOUND_ACKNOWLEDGE = True
    return settings.MAILDIR


def _delivered(maildir) -> list[bytes]:
    """Deliver what the outbox queued, as its worker does, and return the Maildir files."""
    from sealmail.outbox.delivery import deliver_batch

    deliver_batch(list(OutboxMessage.objects.values_list("pk", flat=True)))
    return [path.read_bytes() for path in sorted(maildir.rglob("*")) if path.is_file()]


def _decrypted(peer, raw: bytes) -> str:
    start = raw.index(b"-----BEGIN PGP MESSAGE-----")
    end = raw.index(b"-----END PGP MESSAGE-----") + len(b"-----END PGP MESSAGE-----")
    return peer.gpg.decrypt(raw[start:end].replace(b"\r\n", b"\n")).stdout.decode()


def test_acknowledgement_to_verified_customer(peers, provider_keys, db, maildir):
    peer = peers["gnupg"]
    register(peer)
    message = deliver(
        shapes.combined(
            peer,
            provider_keys.current,
            "...",
            "Help\n",
            protected_subject=SECRET_SUBJECT,
        )
    )
    assert message.signed_by_customer is True
    ack = TicketReply.objects.get(kind=TicketReply.Kind.ACKNOWLEDGEMENT)
    outgoing = OutboxMessage.objects.get(pk=ack.outbox_id)
    assert outgoing.contact.address == peer.address
    assert SECRET_SUBJECT in outgoing.subject
    [mail] = _delivered(maildir)
    assert b"multipart/encrypted" in mail
    assert SECRET_SUBJECT.encode() not in mail
    assert message.ticket.reference in _decrypted(peer, mail)


def test_acknowledgement_never_quotes_unverified(peers, provider_keys, db, maildir):
    peer = peers["gnupg"]
    register(peer)
    inner = shapes.text_entity(
        "Help\n", extra=f"Subject: {SECRET_SUBJECT}\r\n".encode()
    )
    ciphertext = peer.encrypt(inner, provider_keys.current, sign=False)
    message = deliver(
        shapes.headers(peer.address, "...") + shapes.encrypted_entity(ciphertext)
    )
    assert message.signed_by_customer is False
    assert message.subject == SECRET_SUBJECT
    ack = TicketReply.objects.get(kind=TicketReply.Kind.ACKNOWLEDGEMENT)
    outgoing = OutboxMessage.objects.get(pk=ack.outbox_id)
    assert SECRET_SUBJECT not in outgoing.subject
    assert "4711" not in (outgoing.text or "")


def test_staff_reply_hides_unverified_subject(peers, provider_keys, db, maildir):
    """A subject from inside unsigned encryption stays out of the reply's subject."""
    from sealmail.inbound.replies import send_reply

    peer = peers["gnupg"]
    register(peer)
    inner = shapes.text_entity(
        "Help\n", extra=f"Subject: {SECRET_SUBJECT}\r\n".encode()
    )
    ciphertext = peer.encrypt(inner, provider_keys.current, sign=False)
    message = deliver(
        shapes.headers(peer.address, "...") + shapes.encrypted_entity(ciphertext)
    )
    assert message.ticket.subject == SECRET_SUBJECT
    reply = send_reply(message.ticket, "We are on it.", None)
    outgoing = OutboxMessage.objects.get(pk=reply.outbox_id)
    assert outgoing.subject == f"[{message.ticket.reference}] Re: your message"


def test_no_acknowledgement_for_unknown_sender(db, maildir):
    deliver(shapes.plain("stranger@elsewhere.test", "Hello", "hi\n"))
    assert TicketReply.objects.count() == 0
    assert OutboxMessage.objects.count() == 0


def test_staff_reply_encrypted_and_threaded(
    peers, provider_keys, db, maildir, client, django_user_model
):
    peer = peers["gnupg"]
    register(peer)
    message = deliver(shapes.plain(peer.address, "Router broken", "It blinks red.\n"))
    staff = django_user_model.objects.create_user("agent", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.post(
        f"/staff/tickets/{message.ticket_id}/reply/", {"text": "Please restart it."}
    )
    assert response.status_code == 302
    reply = TicketReply.objects.get(kind=TicketReply.Kind.REPLY)
    outgoing = OutboxMessage.objects.get(pk=reply.outbox_id)
    assert outgoing.in_reply_to == message.message_id
    assert outgoing.subject == f"[{message.ticket.reference}] Re: Router broken"
    assert Ticket.objects.get(pk=message.ticket_id).status == Ticket.Status.WAITING
    mails = _delivered(maildir)
    assert any(b"multipart/encrypted" in mail for mail in mails)
    reply_mail = next(mail for mail in mails if "restart" in _decrypted(peer, mail))
    assert reply_mail

    # The customer's response to the staff reply lands in the same ticket.
    response_mail = deliver(
        shapes.plain(
            peer.address, "Re: your reply", "Done.\n", ("In-Reply-To", reply.message_id)
        )
    )
    assert response_mail.ticket_id == message.ticket_id


def test_reply_subject_one_line():
    from sealmail.inbound.replies import reply_subject

    subject = reply_subject("SM-7", "probe\r\nBcc: victim@example.net\x1b[2J")
    assert subject == "[SM-7] Re: probe Bcc: victim@example.net [2J"
    assert "\n" not in subject
    assert "\r" not in subject
