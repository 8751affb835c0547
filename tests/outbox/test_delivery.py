"""Delivery through a real STARTTLS relay on loopback, read back with GnuPG.

Each error path checks that a contact with encryption on never receives
plaintext: composer errors, key store errors, relay errors, a worker that
dies between composing and sending, and keys that become unusable.
"""

from __future__ import annotations

import dataclasses
import email
import email.policy
import hashlib
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from sealmail.contacts.models import Contact, ContactKey
from sealmail.core.errors import CompositionError, KeyStoreError
from sealmail.core.mime import compose as compose_module
from sealmail.core.mime.message import Attachment, ComposedMessage, Format
from sealmail.core.pgp.ops import RecipientCheck
from sealmail.outbox import delivery
from sealmail.outbox.models import NoticeState, OutboxMessage
from sealmail.outbox.service import enqueue, release_held
from sealmail.outbox.transport import Session, Transport
from tests.outbox.conftest import make_contact_key
from tests.outbox.smtp_server import LoopbackRelay, Received
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

Status = OutboxMessage.Status


def minimal_pdf(text: str) -> bytes:
    """Build a one-page PDF with ``text``, with a correct cross-reference table."""
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
        ),
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


@pytest.fixture
def relay(tmp_path: Path, settings):
    server = LoopbackRelay(tmp_path)
    server.start()
    settings.SEALMAIL_SMTP_URL = server.url()
    yield server
    server.stop()


@pytest.fixture
def gpg(customer_gpg: GnuPG, provider_cert) -> GnuPG:
    customer_gpg.import_key(str(provider_cert).encode())
    return customer_gpg


def run_worker() -> None:
    """Deliver every due, queued message, including notices queued on the way."""
    for _ in range(20):
        ids = list(
            OutboxMessage.objects.filter(
                status=Status.QUEUED, next_attempt__lte=timezone.now()
            ).values_list("id", flat=True)
        )
        if not ids or not delivery.deliver_batch(ids).claimed:
            return
    raise AssertionError("the worker did not settle after 20 batches")


def make_due() -> None:
    OutboxMessage.objects.filter(status=Status.QUEUED).update(
        next_attempt=timezone.now()
    )


def decrypt_pgpmime(
    gpg: GnuPG, received: Received
) -> tuple[email.message.EmailMessage, list[str]]:
    outer = received.message
    assert outer.get_content_type() == "multipart/encrypted"
    assert outer.get_param("protocol") == "application/pgp-encrypted"
    control, payload = outer.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    result = gpg.decrypt(payload.get_payload(decode=True))
    assert "DECRYPTION_OKAY" in result.status
    inner = email.message_from_bytes(result.stdout, policy=email.policy.default)
    return inner, result.status  # type: ignore[return-value]


def text_of(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def assert_no_plaintext(relay: LoopbackRelay, *secrets: str) -> None:
    for received in relay.received:
        for secret in secrets:
            assert secret.encode() not in received.data


def test_plain_contact_gets_plain_mail_over_starttls(make_contact, relay):
    contact = make_contact("bob@customer.test")
    [message] = enqueue(
        contact, category="custom", subject="Hello Bob", text="Plain text"
    )
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.format == "plain"
    assert not message.encrypted
    assert message.attempts == 1
    assert message.relay_reply.startswith("250 2.0.0 Ok: queued as T")
    assert message.tls_protocol in {"TLSv1.2", "TLSv1.3"}
    assert message.tls_cipher
    [received] = relay.received
    assert received.data == bytes(message.composed)
    assert received.message_id == message.message_id
    assert received.rcpt_tos == ("bob@customer.test",)
    assert received.mail_from == "billing@provider.test"
    assert "Plain text" in text_of(received.message)


def test_sign_plain_sends_signed_mail(make_contact, relay, settings, gpg, tmp_path):
    settings.SEALMAIL_SIGN_PLAIN = True
    [message] = enqueue(make_contact(), category="custom", subject="Signed", text="Hi")
    run_worker()
    message.refresh_from_db()
    assert message.format == "signed"
    assert message.signed_by
    received = relay.received[0].message
    assert received.get_content_type() == "multipart/signed"
    _signed_part, signature = received.get_payload()
    # Verify over the exact bytes of the first part, as a client does.
    raw = relay.received[0].data
    boundary = received.get_boundary().encode()
    first = raw.split(b"--" + boundary + b"\r\n", 1)[1].split(b"\r\n--" + boundary, 1)[
        0
    ]
    result = gpg.verify_detached(first, signature.get_payload(decode=True), tmp_path)
    assert "GOODSIG" in " ".join(result.status)


def test_encrypted_invoice_decrypts_with_gpg(alice, relay, gpg, provider_cert):
    pdf = minimal_pdf("Invoice R-2026-77")
    [message] = enqueue(
        alice,
        category="invoice",
        context={
            "invoice_number": "R-2026-77",
            "invoice_date": "2026-12-01",
            "amount": "89.00",
            "due_date": "2026-12-15",
        },
        attachments=[Attachment("R-2026-77.pdf", "application/pdf", pdf)],
    )
    run_worker()

    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.format == "pgpmime"
    assert message.encrypted_to == alice.active_key.fingerprint
    assert message.signed_by.lower() == provider_cert.fingerprint.lower()

    [received] = relay.received
    assert received.data == bytes(message.composed)
    assert b"R-2026-77" not in received.data
    assert b"89.00" not in received.data
    assert received.message["Subject"] == "..."

    inner, status = decrypt_pgpmime(gpg, received)
    assert any(line.startswith("GOODSIG") for line in status)
    assert any(
        provider_cert.fingerprint.upper() in line
        for line in status
        if line.startswith("VALIDSIG")
    )
    assert inner["Subject"] == "Your invoice R-2026-77"
    assert "Amount due:      89.00 EUR" in text_of(inner)

    [pdf_part] = list(inner.iter_attachments())
    assert pdf_part.get_filename() == "R-2026-77.pdf"
    assert pdf_part.get_content_type() == "application/pdf"
    assert pdf_part.get_content() == pdf


def test_inline_contact_gets_inline_pgp(make_contact, customer_gpg, relay, gpg):
    contact = make_contact(
        "alice-inline@customer.test",
        armored_key=customer_gpg.export("alice@customer.test"),
        mode=Contact.Mode.INLINE,
    )
    [message] = enqueue(
        contact, category="custom", subject="Inline", text="Secret line"
    )
    run_worker()
    message.refresh_from_db()
    assert message.format == "inline"
    [received] = relay.received
    assert b"Secret line" not in received.data
    armored = re.search(
        rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----",
        received.data,
        re.DOTALL,
    )
    assert armored is not None
    result = gpg.decrypt(armored.group(0))
    assert b"Secret line" in result.stdout


def test_relay_down_then_back(alice, make_contact, relay, gpg):
    bob = make_contact("bob@customer.test")
    relay.stop()
    sent = enqueue(alice, category="custom", subject="One", text="first secret")
    sent += enqueue(bob, category="custom", subject="Two", text="second")
    run_worker()
    for message in sent:
        message.refresh_from_db()
        assert message.status == Status.QUEUED
        assert message.attempts == 1
        assert "connecting to 127.0.0.1" in message.error
        assert message.next_attempt > timezone.now() + timedelta(seconds=50)
    composed_before = {m.pk: bytes(m.composed) for m in sent}
    relay.start()
    make_due()
    run_worker()
    received = {r.message_id: r for r in relay.received}
    assert len(relay.received) == 2
    for message in sent:
        message.refresh_from_db()
        assert message.status == Status.SENT
        assert message.attempts == 2
        assert received[message.message_id].data == composed_before[message.pk]
    assert_no_plaintext(relay, "first secret")


def test_temporary_reply_backs_off_exponentially(make_contact, relay, settings):
    settings.SEALMAIL_SEND_RETRY_SECONDS = 30
    [message] = enqueue(make_contact(), category="custom", subject="x", text="x")
    relay.reply_next_data("451 4.3.0 Mailbox busy", "452 4.3.1 Out of memory")
    delays = []
    for _ in range(2):
        started = timezone.now()
        run_worker()
        message.refresh_from_db()
        assert message.status == Status.QUEUED
        delays.append((message.next_attempt - started).total_seconds())
        make_due()
    assert 29 <= delays[0] <= 31
    assert 59 <= delays[1] <= 61
    assert message.relay_reply == "452 4.3.1 Out of memory"
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.attempts == 3
    assert [r.message_id for r in relay.received] == [message.message_id]


def test_permanent_reply_is_not_retried(make_contact, relay, caplog):
    contact = make_contact("gone@customer.test")
    [message] = enqueue(contact, category="custom", subject="x", text="x")
    relay.reply_next_rcpt("550 5.1.1 <gone@customer.test>: Mailbox unavailable")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.FAILED
    assert message.attempts == 1
    assert message.relay_reply == "550 5.1.1 <gone@customer.test>: Mailbox unavailable"
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("sealmail")]
    assert any("Mailbox unavailable" in line for line in ours)
    assert not any("gone@customer.test" in line for line in ours)
    make_due()
    run_worker()
    assert relay.received == []


def test_gives_up_after_max_attempts(make_contact, relay, settings):
    settings.SEALMAIL_SEND_MAX_ATTEMPTS = 2
    relay.stop()
    [message] = enqueue(make_contact(), category="custom", subject="x", text="x")
    run_worker()
    make_due()
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.FAILED
    assert message.attempts == 2


def test_tls_required_but_not_offered(make_contact, tmp_path, settings):
    server = LoopbackRelay(tmp_path, starttls=False)
    server.start()
    settings.SEALMAIL_SMTP_URL = server.url(tls="required")
    try:
        [message] = enqueue(make_contact(), category="custom", subject="x", text="x")
        run_worker()
    finally:
        server.stop()
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert "does not offer STARTTLS" in message.error
    assert server.received == []


def expire_soon(gpg: GnuPG, uid: str) -> bytes:
    gpg.generate(uid, "future-default", "seconds=2")
    return gpg.export(uid)


def test_key_expired_between_enqueue_and_send(make_contact, relay, tmp_path, gpg):
    short = GnuPG(tmp_path / "short")
    contact = make_contact(
        "carol@customer.test",
        armored_key=expire_soon(short, "Carol <carol@customer.test>"),
    )
    first = enqueue(contact, category="custom", subject="Secret one", text="held body")
    time.sleep(2.5)
    run_worker()
    [message] = first
    message.refresh_from_db()
    assert message.status == Status.HELD
    assert message.hold_reason == "expired"
    assert message.composed is None
    contact.refresh_from_db()
    assert contact.encryption == Contact.Encryption.KEY_PROBLEM
    assert contact.active_key.problem == "expired"

    [notice] = relay.received
    assert notice.rcpt_tos == ("carol@customer.test",)
    assert "update your OpenPGP key" in notice.message["Subject"]
    body = text_of(notice.message)
    assert f"/contacts/{contact.pk}/" in body or "http://testserver/" in body
    assert_no_plaintext(relay, "Secret one", "held body")

    # A second message the same day is held without a second notice.
    second = enqueue(contact, category="custom", subject="Secret two", text="also held")
    run_worker()
    assert len(relay.received) == 1
    assert OutboxMessage.objects.filter(status=Status.HELD).count() == 2

    # The customer confirms a new key in the portal: held mail goes out to it.
    new_key = make_contact_key(contact, gpg.export("alice@customer.test"))
    contact.active_key = new_key
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    assert release_held(contact) == 2
    run_worker()
    delivered = {r.message_id: r for r in relay.received[1:]}
    assert len(delivered) == 2
    for message in first + second:
        message.refresh_from_db()
        assert message.status == Status.SENT
        assert message.encrypted_to == new_key.fingerprint
        inner, _status = decrypt_pgpmime(gpg, delivered[message.message_id])
        assert inner["Subject"] in {"Secret one", "Secret two"}
    assert NoticeState.objects.get(contact=contact).last_notice is None


def test_notice_at_most_once_a_day(make_contact, relay, customer_gpg):
    contact = make_contact(armored_key=customer_gpg.export("alice@customer.test"))
    contact.encryption = Contact.Encryption.KEY_PROBLEM
    contact.save()
    enqueue(contact, category="custom", subject="a", text="a")
    run_worker()
    assert len(relay.received) == 1
    NoticeState.objects.filter(contact=contact).update(
        last_notice=timezone.now() - timedelta(hours=23)
    )
    enqueue(contact, category="custom", subject="b", text="b")
    run_worker()
    assert len(relay.received) == 1
    NoticeState.objects.filter(contact=contact).update(
        last_notice=timezone.now() - timedelta(hours=25)
    )
    enqueue(contact, category="custom", subject="c", text="c")
    run_worker()
    assert len(relay.received) == 2


def test_revoked_key_is_held(make_contact, relay, tmp_path):
    revoking = GnuPG(tmp_path / "revoking")
    fingerprint = revoking.generate("Dave <dave@customer.test>")
    contact = make_contact(
        "dave@customer.test", armored_key=revoking.export(fingerprint)
    )
    [message] = enqueue(contact, category="custom", subject="x", text="revoked secret")
    # GnuPG keeps a revocation certificate with its armor lines disabled by ':'.
    certificate = (
        revoking.home / "openpgp-revocs.d" / f"{fingerprint}.rev"
    ).read_text()
    revoking.import_key(certificate.replace(":-----BEGIN", "-----BEGIN").encode())
    contact.active_key.certificate = make_contact_key(
        contact, revoking.export(fingerprint)
    ).certificate
    contact.active_key.save()
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.HELD
    assert message.hold_reason == "revoked"
    assert_no_plaintext(relay, "revoked secret")


def test_composer_error_sends_nothing(alice, relay, monkeypatch):
    def broken(*args, **kwargs):
        raise CompositionError("boom")

    monkeypatch.setattr(compose_module, "compose", broken)
    [message] = enqueue(alice, category="custom", subject="x", text="composer secret")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert "composing failed: boom" in message.error
    assert relay.received == []


def test_composer_returning_plaintext_is_caught(alice, relay, monkeypatch):
    real = compose_module.compose

    def downgrading(message, format, **kwargs):
        plain = real(message, Format.PLAIN)
        return ComposedMessage(
            plain.data,
            plain.message_id,
            format,
            encrypted_to=(alice.active_key.fingerprint,),
        )

    monkeypatch.setattr(compose_module, "compose", downgrading)
    [message] = enqueue(alice, category="custom", subject="x", text="downgrade secret")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert "nothing was sent" in message.error
    assert relay.received == []


def test_key_store_error_sends_nothing(alice, relay, monkeypatch):
    class BrokenStore:
        def signer(self):
            raise KeyStoreError("no provider key in '/nowhere'")

        def certificates(self):
            raise KeyStoreError("no provider key in '/nowhere'")

    monkeypatch.setattr(delivery, "get_keystore", BrokenStore)
    [message] = enqueue(alice, category="custom", subject="x", text="keystore secret")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert "no provider key" in message.error
    assert relay.received == []


class CrashingTransport(Transport):
    """Stands for a worker process killed after composing, before sending."""

    def open(self) -> Session:
        raise SystemExit("worker killed")

    def describe(self) -> str:
        return "crash"


def crash_after_compose(ids: list[int]) -> None:
    with pytest.raises(SystemExit):
        delivery.deliver_batch(ids, transport=CrashingTransport())


def recover_after_crash() -> None:
    """Let the lease expire and run the sweep, as the periodic task does later."""
    past = timezone.now() - delivery.LEASE - delivery.SWEEP_GRACE
    OutboxMessage.objects.filter(status=Status.QUEUED).update(
        lease_until=past, next_attempt=past
    )
    queued, _released = delivery.sweep()
    assert queued >= 1
    run_worker()


def test_worker_crash_resends_stored_bytes(alice, relay, gpg):
    [message] = enqueue(alice, category="custom", subject="x", text="crash secret")
    crash_after_compose([message.pk])
    message.refresh_from_db()
    stored = bytes(message.composed)
    assert message.lease_until is not None
    run_worker()  # the lease is still valid, so no other worker takes the row
    assert relay.received == []
    recover_after_crash()
    [received] = relay.received
    assert received.data == stored
    assert received.message_id == message.message_id
    decrypt_pgpmime(gpg, received)
    assert_no_plaintext(relay, "crash secret")


def test_crash_then_encryption_on_recomposes(make_contact, relay, customer_gpg, gpg):
    contact = make_contact("erin@customer.test")
    [message] = enqueue(
        contact, category="custom", subject="x", text="turned on secret"
    )
    crash_after_compose([message.pk])
    message.refresh_from_db()
    assert message.format == "plain"
    # The customer turns encryption on before the retry.
    key = make_contact_key(contact, customer_gpg.export("alice@customer.test"))
    contact.active_key = key
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    recover_after_crash()
    message.refresh_from_db()
    assert message.format == "pgpmime"
    [received] = relay.received
    assert received.message_id == message.message_id
    decrypt_pgpmime(gpg, received)
    assert_no_plaintext(relay, "turned on secret")


def test_relay_error_on_encrypted_never_leaks(alice, relay, gpg):
    relay.reply_next_data("421 4.4.2 Connection dropped")
    [message] = enqueue(alice, category="custom", subject="x", text="relay secret")
    run_worker()
    make_due()
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    [received] = relay.received
    decrypt_pgpmime(gpg, received)
    assert_no_plaintext(relay, "relay secret")


def test_confirmation_to_pending_key(make_contact, relay, tmp_path, gpg):
    contact = make_contact("frank@customer.test")
    pending = make_contact_key(contact, gpg.export("alice@customer.test"))
    contact.encryption = Contact.Encryption.PENDING
    contact.save()
    [message] = enqueue(
        contact,
        category="confirmation",
        to_address="frank.new@customer.test",
        recipient_key=pending,
        context={
            "fingerprint": pending.fingerprint,
            "confirm_url": "http://testserver/confirm/1/abc/",
        },
    )
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.encrypted_to == pending.fingerprint
    [received] = relay.received
    assert received.rcpt_tos == ("frank.new@customer.test",)
    inner, _ = decrypt_pgpmime(gpg, received)
    assert "http://testserver/confirm/1/abc/" in text_of(inner)


def test_recipient_key_unusable_fails(make_contact, relay, customer_gpg):
    contact = make_contact()
    pending = make_contact_key(contact, customer_gpg.export("alice@customer.test"))
    pending.usable_until = timezone.now() - timedelta(seconds=1)
    pending.save()
    [message] = enqueue(
        contact,
        category="confirmation",
        subject="Confirm",
        text="link",
        recipient_key=pending,
    )
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.FAILED
    assert message.error == "not sent: key_expired"
    assert relay.received == []


def test_previous_address_without_key_gets_plain(alice, relay, gpg):
    """The old address had no key, so the contact's current key must not apply."""
    [notice] = enqueue(
        alice,
        category="account_notice",
        subject="Your contact settings changed",
        text="Your address changed.",
        to_address="alice.old@customer.test",
    )
    [current] = enqueue(
        alice,
        category="account_notice",
        subject="Hello again",
        text="Still encrypted.",
        to_address=alice.address.upper(),
    )
    run_worker()
    notice.refresh_from_db()
    current.refresh_from_db()
    assert notice.status == Status.SENT
    assert notice.format == "plain"
    assert current.format == "pgpmime"
    assert current.encrypted_to == alice.active_key.fingerprint
    by_address = {received.rcpt_tos[0]: received for received in relay.received}
    assert "Your address changed." in text_of(by_address["alice.old@customer.test"].message)
    assert b"Still encrypted." not in by_address[alice.address.upper()].data


def test_sensitive_content_erased_after_sending(make_contact, relay):
    contact = make_contact("link@customer.test")
    [message] = enqueue(
        contact,
        category="account_notice",
        subject="Confirm your new contact address",
        text="Open http://testserver/confirm/7/secret-token/ to confirm.",
        to_address="link.new@customer.test",
        sensitive=True,
    )
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    assert message.text is None
    assert message.html is None
    assert message.composed is None
    [received] = relay.received
    assert b"secret-token" in received.data


def test_address_change_before_send(make_contact, relay):
    contact = make_contact("old@customer.test")
    enqueue(contact, category="custom", subject="x", text="x")
    contact.address = "new@customer.test"
    contact.save()
    run_worker()
    assert relay.received[0].rcpt_tos == ("new@customer.test",)


def test_maildir_sink_by_default(make_contact, settings):
    settings.SEALMAIL_SMTP_URL = ""
    [message] = enqueue(make_contact(), category="custom", subject="x", text="x")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.SENT
    [stored] = list((settings.MAILDIR / "new").iterdir())
    assert stored.read_bytes() == bytes(message.composed)


@pytest.mark.django_db(transaction=True)
def test_enqueue_runs_tasks_after_commit(customer, make_contact, relay):
    """Huey (immediate here) gets the ids only after the rows are committed."""
    for number in range(120):
        make_contact(f"c{number}@customer.test")
    messages = enqueue(customer=customer, category="custom", subject="Outage", text="x")
    assert len(messages) == 120
    assert OutboxMessage.objects.filter(status=Status.SENT).count() == 120
    assert len({r.message_id for r in relay.received}) == 120


def test_worker_keeps_the_key_check(make_contact, customer_gpg, relay, gpg):
    """A key stored without its check gets one from the first send, which later sends use."""
    contact = make_contact("erin@customer.test")
    key = make_contact_key(contact, customer_gpg.export("alice@customer.test"), check=False)
    contact.active_key = key
    contact.encryption = Contact.Encryption.ACTIVE
    contact.save()
    assert key.send_check is None
    enqueue(contact, category="custom", subject="first", text="first body")
    run_worker()
    key.refresh_from_db()
    stored = RecipientCheck.from_json(key.send_check)
    assert stored is not None and stored.live_key_ids
    assert stored.digest == hashlib.sha256(bytes(key.certificate)).hexdigest()

    # The stored check is what the worker goes by: one that lists no live
    # subkey stops encryption, and nothing leaves.
    key.send_check = dataclasses.replace(stored, live_key_ids=frozenset()).to_json()
    key.save(update_fields=["send_check"])
    [message] = enqueue(contact, category="custom", subject="second", text="second body")
    run_worker()
    message.refresh_from_db()
    assert message.status == Status.QUEUED
    assert message.attempts == 1
    assert "no live encryption subkey" in message.error
    assert len(relay.received) == 1
    assert_no_plaintext(relay, "second body")


@pytest.mark.parametrize(
    ("encryption", "problem", "expires_in"),
    [
        (Contact.Encryption.KEY_PROBLEM, "revoked", None),
        (Contact.Encryption.ACTIVE, "revoked", None),
        (Contact.Encryption.ACTIVE, "", timedelta(seconds=-1)),
    ],
)
def test_retry_recomposes_for_unusable_key(encryption, problem, expires_in):
    """Ciphertext stored before the key became unusable is never sent on a retry."""
    key = ContactKey(
        fingerprint="ab" * 20,
        problem=problem,
        usable_until=timezone.now() + expires_in if expires_in else None,
    )
    contact = Contact(address="alice@example.org", encryption=encryption, active_key=key)
    message = OutboxMessage(
        category="invoice",
        to_address="alice@example.org",
        explicit_address=False,
        composed=b"-----BEGIN PGP MESSAGE-----",
        format="pgpmime",
        encrypted_to="ab" * 20,
    )
    assert delivery.is_stale(message, contact)
    key.problem, key.usable_until = "", None
    contact.encryption = Contact.Encryption.ACTIVE
    assert not delivery.is_stale(message, contact)
