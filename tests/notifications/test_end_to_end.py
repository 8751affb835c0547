"""Events to delivered mail: the API, the outbox worker, a Maildir and GnuPG."""

from __future__ import annotations

import email
import email.policy
import mailbox

import pytest
from django.utils import timezone

from sealmail.contacts.models import Contact
from sealmail.notifications.events import close_due_windows, process_pending_events
from sealmail.notifications.models import FlapWindow
from sealmail.notifications.registry import Entry, sync
from tests.notifications.conftest import add_key, make_customer
from tests.peers.gnupg import GnuPG

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def instance(settings, tmp_path):
    """A provider key in its own key directory and a Maildir as the transport."""
    from sealmail.keys.store import get_keystore

    settings.KEYS_DIR = tmp_path / "keys"
    settings.KEYS_DIR.mkdir(mode=0o700)
    settings.MAILDIR = tmp_path / "maildir"
    settings.SEALMAIL_SMTP_URL = ""
    settings.SEALMAIL_FLAP_WINDOW_SECONDS = 300
    return get_keystore().generate(["Provider NOC <noc@provider.test>"])


@pytest.fixture
def customer_gpg(tmp_path, instance):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.generate("Ops <ops@acme.test>", "ed25519", "1y")
    gpg.run(
        "--quick-add-key", gpg.fingerprint("ops@acme.test"), "cv25519", "encr", "1y"
    )
    gpg.import_key(str(instance).encode())
    return gpg


@pytest.fixture
def contact(customer_gpg):
    customer = make_customer("K-7", "Acme GmbH")
    contact = Contact.objects.create(
        customer=customer, address="ops@acme.test", role="technical"
    )
    add_key(contact, customer_gpg.export("ops@acme.test"))
    sync("lines", [Entry("L-7", "K-7", "Head office")])
    sync("orders", [Entry("O-7", "K-7", "Fibre upgrade")])
    return contact


def deliver() -> None:
    from sealmail.outbox.models import OutboxMessage

    from sealmail.outbox import delivery

    ids = list(
        OutboxMessage.objects.filter(
            status="queued", next_attempt__lte=timezone.now()
        ).values_list("id", flat=True)
    )
    delivery.deliver_batch(ids)


def delivered(settings) -> list[bytes]:
    box = mailbox.Maildir(settings.MAILDIR, create=False)
    return sorted((bytes(box.get_bytes(key)) for key in box.keys()), key=len)


def decrypt(gpg: GnuPG, raw: bytes) -> tuple[email.message.EmailMessage, list[str]]:
    outer = email.message_from_bytes(raw, policy=email.policy.default)
    assert outer.get_content_type() == "multipart/encrypted"
    _, payload = outer.get_payload()
    result = gpg.decrypt(payload.get_payload(decode=True))
    assert "DECRYPTION_OKAY" in result.status
    inner = email.message_from_bytes(result.stdout, policy=email.policy.default)
    return inner, result.status


def body_text(message: email.message.EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content()


def test_line_event_delivered_encrypted(api, contact, customer_gpg, settings, instance):
    response = api.post(
        "/api/v1/events/line-status",
        {"line_id": "L-7", "state": "down", "reason": "fibre cut at cabinet 12"},
    )
    assert response.status_code == 202, response.content
    process_pending_events()
    deliver()
    messages = delivered(settings)
    assert len(messages) == 1
    assert b"fibre cut" not in messages[0]
    inner, status = decrypt(customer_gpg, messages[0])
    assert any(
        line.startswith("GOODSIG") or line.startswith("VALIDSIG") for line in status
    )
    assert inner["Subject"] == "Line L-7 is down"
    text = body_text(inner)
    assert "your line L-7 (Head office) is down since" in text
    assert "Reason: fibre cut at cabinet 12" in text


def test_flap_summary_delivered_encrypted(api, contact, customer_gpg, settings):
    for state in ("down", "up", "down"):
        response = api.post(
            "/api/v1/events/line-status", {"line_id": "L-7", "state": state}
        )
        assert response.status_code == 202
        process_pending_events()
    closes_at = FlapWindow.objects.get(closed__isnull=True).closes
    assert close_due_windows(now=closes_at) == 1
    deliver()
    messages = delivered(settings)
    assert len(messages) == 2
    subjects = sorted(decrypt(customer_gpg, raw)[0]["Subject"] for raw in messages)
    assert subjects == ["Line L-7 is down", "Line L-7: 3 changes, now down"]


def test_order_progress_delivered_encrypted(api, contact, customer_gpg, settings):
    response = api.post(
        "/api/v1/events/order-progress",
        {
            "order_id": "O-7",
            "stage": "technician booked",
            "text": "Tuesday 8-12",
            "event_id": "o-1",
        },
    )
    again = api.post(
        "/api/v1/events/order-progress",
        {
            "order_id": "O-7",
            "stage": "technician booked",
            "text": "Tuesday 8-12",
            "event_id": "o-1",
        },
    )
    assert response.status_code == 200, response.content
    assert again.json()["duplicate"] is True
    deliver()
    messages = delivered(settings)
    assert len(messages) == 1
    inner, _ = decrypt(customer_gpg, messages[0])
    assert inner["Subject"] == "Order O-7: technician booked"
    assert "Tuesday 8-12" in body_text(inner)


def test_unknown_order_rejected(api, contact):
    response = api.post(
        "/api/v1/events/order-progress", {"order_id": "O-404", "stage": "x"}
    )
    assert response.status_code == 404
    assert "'O-404'" in response.json()["detail"]
