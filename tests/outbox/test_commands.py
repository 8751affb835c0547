"""The send and outbox management commands, and the admin list."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from sealmail.outbox import service
from sealmail.outbox.models import OutboxMessage

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_delivery(monkeypatch):
    monkeypatch.setattr(service, "schedule_delivery", lambda ids: None)


def test_send_to_customer_with_attachment(make_contact, customer, tmp_path):
    make_contact("a@customer.test")
    make_contact("b@customer.test", role="billing")
    pdf = tmp_path / "R-9.pdf"
    pdf.write_bytes(b"%PDF-1.4\n%%EOF\n")
    out = StringIO()
    call_command(
        "send",
        "--customer",
        customer.account_number,
        "--role",
        "billing",
        "--category",
        "invoice",
        "--context",
        '{"invoice_number": "R-9", "amount": "5.00", "due_date": "2026-12-31"}',
        "--attach",
        str(pdf),
        "--idempotency-key",
        "cli-1",
        stdout=out,
    )
    [line] = out.getvalue().splitlines()
    pk, address, message_id = line.split("\t")
    message = OutboxMessage.objects.get(pk=int(pk))
    assert address == "b@customer.test"
    assert message.message_id == message_id
    assert message.attachments[0]["content_type"] == "application/pdf"
    assert message.request.source == "cli"


def test_send_reports_field_errors(make_contact):
    contact = make_contact()
    with pytest.raises(CommandError, match="subject"):
        call_command(
            "send", "--contact", str(contact.pk), "--category", "custom", "--text", "x"
        )
    with pytest.raises(CommandError, match="contact 999999 not found"):
        call_command(
            "send", "--contact", "999999", "--category", "custom", "--text", "x"
        )
    with pytest.raises(CommandError, match="--context is not valid JSON"):
        call_command(
            "send",
            "--contact",
            str(contact.pk),
            "--category",
            "invoice",
            "--context",
            "{bad",
        )


def test_outbox_status_and_retry(make_contact):
    [message] = service.enqueue(
        make_contact(), category="custom", subject="x", text="x"
    )
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.FAILED, attempts=3
    )
    out = StringIO()
    call_command("outbox", "status", stdout=out)
    assert "failed\t1" in out.getvalue()
    call_command("outbox", "retry", str(message.pk), stdout=StringIO())
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.QUEUED
    assert message.attempts == 0
    with pytest.raises(CommandError, match="not a failed message"):
        call_command("outbox", "retry", str(message.pk))


def test_admin_lists_messages(client, make_contact):
    service.enqueue(
        make_contact("listed@customer.test"), category="custom", subject="x", text="x"
    )
    staff = get_user_model().objects.create_superuser(
        "staff", "staff@provider.test", "pw-123456"
    )
    client.force_login(staff)
    response = client.get("/admin/outbox/outboxmessage/")
    assert response.status_code == 200
    assert b"listed@customer.test" in response.content
    message = OutboxMessage.objects.get()
    detail = client.get(f"/admin/outbox/outboxmessage/{message.pk}/change/")
    assert detail.status_code == 200
