"""enqueue(): validation, fan-out, idempotency, templates and release_held()."""

from __future__ import annotations

import pytest

from sealmail.contacts.models import Contact
from sealmail.core.mime.message import Attachment
from sealmail.outbox import rendering, service
from sealmail.outbox.models import OutboxMessage, SendRequest
from sealmail.outbox.service import EnqueueError, IdempotencyConflict, enqueue

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_delivery(monkeypatch):
    """Record scheduled ids instead of delivering, to test enqueue alone."""
    scheduled: list[int] = []
    monkeypatch.setattr(service, "schedule_delivery", lambda ids: scheduled.extend(ids))
    return scheduled


def test_enqueue_one_contact_commits_row(
    make_contact, no_delivery, django_capture_on_commit_callbacks, settings
):
    contact = make_contact("bob@customer.test")
    with django_capture_on_commit_callbacks(execute=True):
        messages = enqueue(contact, category="custom", subject="Hello", text="Hi Bob")
    assert len(messages) == 1
    row = OutboxMessage.objects.get(pk=messages[0].pk)
    assert row.status == OutboxMessage.Status.QUEUED
    assert row.to_address == "bob@customer.test"
    domain = settings.SEALMAIL_FROM.rpartition("@")[2]
    assert row.message_id.startswith("<")
    assert row.message_id.endswith(f"@{domain}>")
    assert row.composed is None
    assert no_delivery == [row.pk]


def test_enqueue_customer_fans_out_by_role(make_contact, customer):
    general = make_contact("general@customer.test")
    billing = make_contact("billing@customer.test", role=Contact.Role.BILLING)
    everyone = enqueue(customer=customer, category="custom", subject="All", text="x")
    assert sorted(m.contact_id for m in everyone) == sorted([general.pk, billing.pk])
    only_billing = enqueue(
        customer=customer, role="billing", category="custom", subject="B", text="x"
    )
    assert [m.contact_id for m in only_billing] == [billing.pk]
    assert len({m.message_id for m in everyone + only_billing}) == 3


def test_enqueue_customer_without_contacts(customer):
    with pytest.raises(EnqueueError) as info:
        enqueue(customer=customer, category="custom", subject="x", text="x")
    assert info.value.field == "customer"
    assert "K-1001" in info.value.message


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"category": "spam", "subject": "x", "text": "x"}, "category"),
        ({"category": "custom", "subject": "a\nb", "text": "x"}, "subject"),
        ({"category": "custom", "subject": "x"}, "text"),
        ({"category": "custom", "text": "x"}, "subject"),
        (
            {"category": "custom", "subject": "x", "text": "x", "template": "invoice"},
            "template",
        ),
        (
            {"category": "custom", "subject": "x", "template": "../etc/passwd"},
            "template",
        ),
        ({"category": "custom", "subject": "x", "template": "nonexistent"}, "template"),
        (
            {
                "category": "custom",
                "subject": "x",
                "text": "x",
                "to_address": "not-an-address",
            },
            "to_address",
        ),
        (
            {
                "category": "custom",
                "subject": "x",
                "text": "x",
                "in_reply_to": "no-brackets@x",
            },
            "in_reply_to",
        ),
    ],
)
def test_enqueue_rejects_invalid_input(make_contact, kwargs, field):
    contact = make_contact()
    with pytest.raises(EnqueueError) as info:
        enqueue(contact, **kwargs)
    assert info.value.field == field
    assert OutboxMessage.objects.count() == 0


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        (Attachment("a/b.pdf", "application/pdf", b"%PDF"), "attachments[0].filename"),
        (Attachment("a.pdf", "pdf", b"%PDF"), "attachments[0].content_type"),
        (
            Attachment("a.pdf", "multipart/mixed", b"%PDF"),
            "attachments[0].content_type",
        ),
        (Attachment("a.pdf", "application/pdf", b""), "attachments[0].content"),
        (
            Attachment(
                "a.bin",
                "application/octet-stream",
                b"0" * (service.MAX_ATTACHMENT_BYTES + 1),
            ),
            "attachments[0].content",
        ),
    ],
)
def test_enqueue_rejects_bad_attachment(make_contact, attachment, field):
    with pytest.raises(EnqueueError) as info:
        enqueue(
            make_contact(),
            category="custom",
            subject="x",
            text="x",
            attachments=[attachment],
        )
    assert info.value.field == field


def test_idempotency_key_returns_first_rows(make_contact):
    contact = make_contact()
    first = enqueue(
        contact, category="custom", subject="x", text="x", idempotency_key="k1"
    )
    again = enqueue(
        contact, category="custom", subject="x", text="x", idempotency_key="k1"
    )
    assert [m.pk for m in again] == [m.pk for m in first]
    assert OutboxMessage.objects.count() == 1
    with pytest.raises(IdempotencyConflict):
        enqueue(
            contact, category="custom", subject="other", text="x", idempotency_key="k1"
        )
    other_source = enqueue(
        contact,
        category="custom",
        subject="x",
        text="x",
        idempotency_key="k1",
        source="cli",
    )
    assert other_source[0].pk != first[0].pk


def test_request_with_contact_id_hash_still_repeats(customer, make_contact):
    """Requests stored while the hash covered the contact ids still match."""
    contacts = [make_contact("a@customer.test"), make_contact("b@customer.test")]
    first = enqueue(
        customer=customer, category="custom", subject="x", text="y", idempotency_key="k2"
    )
    content = {
        "category": "custom",
        "subject": "x",
        "text": "y",
        "html": None,
        "template": None,
        "context": None,
        "to_address": None,
        "recipient_key": None,
        "in_reply_to": None,
        "references": [],
    }
    legacy = service._legacy_request_hash(contacts, content, [])
    SendRequest.objects.filter(idempotency_key="k2").update(request_hash=legacy)
    again = enqueue(
        customer=customer, category="custom", subject="x", text="y", idempotency_key="k2"
    )
    assert [m.pk for m in again] == [m.pk for m in first]
    assert OutboxMessage.objects.count() == 2


def test_attachments_share_one_blob(make_contact, customer):
    make_contact()
    make_contact()
    pdf = Attachment("invoice.pdf", "application/pdf", b"%PDF-1.4 test")
    messages = enqueue(
        customer=customer, category="custom", subject="x", text="x", attachments=[pdf]
    )
    from sealmail.outbox.models import Blob

    assert Blob.objects.count() == 1
    assert messages[0].attachments == messages[1].attachments
    assert messages[0].attachments[0]["filename"] == "invoice.pdf"


def test_invoice_template_renders_per_contact(make_contact):
    contact = make_contact("bob@customer.test")
    [message] = enqueue(
        contact,
        category="invoice",
        context={
            "invoice_number": "R-2026-1234",
            "invoice_date": "2026-12-01",
            "amount": "49.90",
            "due_date": "2026-12-15",
            "period": "November 2026",
        },
    )
    assert message.subject == "Your invoice R-2026-1234 for November 2026"
    assert "Dear Alice Example GmbH," in message.text
    assert "Amount due:      49.90 EUR" in message.text
    assert "bob@customer.test" in message.text
    assert "<strong>R-2026-1234</strong>" in message.html


def test_rendered_subject_too_long(make_contact):
    with pytest.raises(EnqueueError) as info:
        enqueue(
            make_contact(),
            category="order_progress",
            context={"order_number": "A-1", "step": "x" * 500},
        )
    assert info.value.field == "subject"


def test_html_template_escapes_context(make_contact):
    [message] = enqueue(
        make_contact(),
        category="account_notice",
        context={"body": "<script>alert(1)</script> & more"},
    )
    assert "<script>" not in message.html
    assert "&lt;script&gt;" in message.html
    assert "<script>alert(1)</script> & more" in message.text


def test_provider_template_overrides_default(make_contact, data_dir):
    override = data_dir / "templates" / "outbox"
    override.mkdir(parents=True, exist_ok=True)
    (override / "line_status.txt").write_text("Provider text for {{ line_id }}")
    rendering.reset_caches()
    try:
        [message] = enqueue(
            make_contact(),
            category="line_status",
            context={"line_id": "DSL-7", "state": "down"},
        )
    finally:
        (override / "line_status.txt").unlink()
        rendering.reset_caches()
    assert message.text == "Provider text for DSL-7"
    assert message.subject == "Line DSL-7 is down"


def test_recipient_key_must_belong_to_contact(make_contact, alice):
    other = make_contact()
    with pytest.raises(EnqueueError) as info:
        enqueue(
            other,
            category="confirmation",
            subject="x",
            text="x",
            recipient_key=alice.active_key,
        )
    assert info.value.field == "recipient_key"


def test_release_held_requeues(
    make_contact, no_delivery, django_capture_on_commit_callbacks
):
    contact = make_contact()
    [message] = enqueue(contact, category="custom", subject="x", text="x")
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.HELD, hold_reason="expired"
    )
    no_delivery.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert service.release_held(contact) == 1
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.QUEUED
    assert message.hold_reason == ""
    assert no_delivery == [message.pk]
    assert service.release_held(contact) == 0
