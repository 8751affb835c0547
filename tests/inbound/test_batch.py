"""Parsing in batches: worker tasks that file many stored messages per transaction."""

from __future__ import annotations

import pytest
from django.db import DatabaseError

from sealmail.inbound import processing
from sealmail.inbound.models import InboundMessage, MessagePart, Ticket
from sealmail.inbound.smtp import store_raw
from tests.inbound import shapes
from tests.inbound.conftest import register

pytestmark = pytest.mark.db_backends

SECRET = "The router password is hunter2.\n"


def store(raw: bytes) -> int:
    """Store ``raw`` as the SMTP server does, without parsing it."""
    return store_raw(
        "smtp", "('127.0.0.1', 1)", "x@customer.test", ["support@provider.test"], raw
    )


@pytest.fixture
def gnupg(peers, db, no_acknowledgement):
    peer = peers["gnupg"]
    register(peer)
    return peer


def test_batch_files_each_message(gnupg, provider_keys):
    encrypted = store(shapes.combined(gnupg, provider_keys.current, "batch", SECRET))
    first = store(
        shapes.headers("someone@customer.test", "First", message_id="<a@x.test>")
        + shapes.text_entity("Hello.\n")
    )
    reply = store(
        shapes.headers(
            "someone@customer.test",
            "Re: First",
            ("In-Reply-To", "<a@x.test>"),
            message_id="<b@x.test>",
        )
        + shapes.text_entity("Again.\n")
    )

    handled = processing.process_batch([encrypted, first, reply])

    assert handled == 3
    messages = InboundMessage.objects.in_bulk([encrypted, first, reply])
    assert {message.state for message in messages.values()} == {"parsed"}
    assert messages[encrypted].encryption == "full"
    assert messages[encrypted].signed_by_customer is True
    assert messages[encrypted].ticket.customer is not None
    assert "hunter2" in messages[encrypted].parts.get().text
    assert messages[first].encryption == "none"
    assert messages[first].signed_by_customer is False
    assert messages[reply].ticket_id == messages[first].ticket_id
    assert Ticket.objects.count() == 2
    assert MessagePart.objects.count() == 3


def test_batch_skips_message_parsed_meanwhile(gnupg, monkeypatch):
    taken = store(shapes.plain("someone@customer.test", "Taken", "One.\n"))
    other = store(shapes.plain("someone@customer.test", "Other", "Two.\n"))
    real_parse = processing.parse_message
    raced = []

    def parse_after_other_worker(raw, openpgp, *args):
        # Another worker files ``taken`` between the batch's load and its commit.
        if not raced:
            raced.append(True)
            processing.process(taken)
        return real_parse(raw, openpgp, *args)

    monkeypatch.setattr(processing, "parse_message", parse_after_other_worker)

    handled = processing.process_batch([taken, other])

    assert handled == 1
    assert MessagePart.objects.filter(message_id=taken).count() == 1
    assert MessagePart.objects.filter(message_id=other).count() == 1
    assert Ticket.objects.count() == 2
    assert InboundMessage.objects.get(pk=other).state == "parsed"


def test_batch_failure_falls_back_per_message(gnupg, monkeypatch):
    ids = [
        store(shapes.plain("someone@customer.test", f"Fallback {n}", "Text.\n"))
        for n in range(3)
    ]
    real_file = processing._file
    calls = []

    def fail_once(*args):
        calls.append(True)
        if len(calls) == 2:
            raise DatabaseError("simulated failure while filing")
        return real_file(*args)

    monkeypatch.setattr(processing, "_file", fail_once)

    handled = processing.process_batch(ids)

    assert handled == 3
    states = set(
        InboundMessage.objects.filter(pk__in=ids).values_list("state", flat=True)
    )
    assert states == {"parsed"}
    assert MessagePart.objects.filter(message_id__in=ids).count() == 3
    assert Ticket.objects.count() == 3


def test_batch_marks_unparseable_message_failed(gnupg, monkeypatch):
    broken = store(shapes.plain("someone@customer.test", "Broken", "Bad.\n"))
    fine = store(shapes.plain("someone@customer.test", "Fine", "Good.\n"))
    real_parse = processing.parse_message

    def parse_or_fail(raw, openpgp, *args):
        if b"Broken" in raw:
            raise ValueError("simulated parser bug")
        return real_parse(raw, openpgp, *args)

    monkeypatch.setattr(processing, "parse_message", parse_or_fail)

    processing.process_batch([broken, fine])

    failed = InboundMessage.objects.get(pk=broken)
    assert failed.state == "failed"
    assert "simulated parser bug" in failed.parse_error
    assert bytes(failed.raw).startswith(b"From:")
    assert InboundMessage.objects.get(pk=fine).state == "parsed"


def test_pending_parses_one_slot(gnupg):
    ids = [
        store(shapes.plain("someone@customer.test", f"Slot {n}", "Text.\n"))
        for n in range(processing.BATCH_SLOTS * 2)
    ]

    processing.process_pending(ids[0])

    parsed = set(
        InboundMessage.objects.filter(pk__in=ids, state="parsed").values_list(
            "pk", flat=True
        )
    )
    slot = ids[0] % processing.BATCH_SLOTS
    assert parsed == {pk for pk in ids if pk % processing.BATCH_SLOTS == slot}
    assert len(parsed) == 2


def test_pending_respects_batch_size(gnupg):
    ids = [
        store(shapes.plain("someone@customer.test", f"Size {n}", "Text.\n"))
        for n in range(processing.BATCH_SLOTS * 3)
    ]

    processing.process_pending(ids[0], batch_size=2)

    parsed = InboundMessage.objects.filter(pk__in=ids, state="parsed")
    assert parsed.count() == 2
    assert parsed.filter(pk=ids[0]).exists()


def test_pending_respects_batch_bytes(gnupg):
    ids = [
        store(shapes.plain("someone@customer.test", f"Bytes {n}", "Text.\n"))
        for n in range(processing.BATCH_SLOTS * 3)
    ]
    size = InboundMessage.objects.get(pk=ids[0]).size

    processing.process_pending(ids[0], batch_bytes=size * 2 + size // 2)

    parsed = InboundMessage.objects.filter(pk__in=ids, state="parsed")
    assert parsed.count() == 2
    assert parsed.filter(pk=ids[0]).exists()


def test_pending_parses_first_message_over_budget(gnupg):
    message_id = store(shapes.plain("someone@customer.test", "Big", "Text.\n"))

    handled = processing.process_pending(message_id, batch_bytes=1)

    assert handled == 1
    assert InboundMessage.objects.get(pk=message_id).state == "parsed"


def test_task_for_filed_message_does_nothing(gnupg):
    message_id = store(shapes.plain("someone@customer.test", "Done", "Text.\n"))
    processing.process(message_id)

    handled = processing.process_pending(message_id)

    assert handled == 0
    assert MessagePart.objects.filter(message_id=message_id).count() == 1
