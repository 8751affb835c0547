"""ValueConverter gives the values Field.get_db_prep_save gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection

from sealmail.outbox.dbvalues import ValueConverter
from sealmail.outbox.models import OutboxMessage

pytestmark = [pytest.mark.django_db, pytest.mark.db_backends]

CASES = [
    ("subject", "Invoice"),
    ("subject", 42),  # a CharField turns an int into text
    ("text", None),
    ("attempts", 3),
    ("contact", 7),
    ("sent_at", datetime(2026, 12, 4, 12, 0, tzinfo=UTC)),
    ("sent_at", datetime(2026, 12, 4, 13, 0, 5, 123456, tzinfo=timezone(timedelta(hours=1)))),
    ("sent_at", None),
    ("references", ["<a@b>"]),
    ("composed", b"bytes"),
    ("explicit_address", True),
]


def unwrapped(value):
    """psycopg's Jsonb and Binary wrappers do not compare by content; their obj does."""
    return getattr(value, "obj", value)


@pytest.mark.parametrize(("name", "value"), CASES)
def test_converter_matches_django(name, value):
    field = OutboxMessage._meta.get_field(name)
    expected = field.get_db_prep_save(value, connection)
    converted = ValueConverter(field)(value)
    assert type(converted) is type(expected)
    assert unwrapped(converted) == unwrapped(expected)


def test_converter_converts_shared_object_once(monkeypatch):
    field = OutboxMessage._meta.get_field("references")
    convert = ValueConverter(field)
    calls = []
    original = field.get_db_prep_save

    def counting(value, connection):
        calls.append(value)
        return original(value, connection)

    monkeypatch.setattr(field, "get_db_prep_save", counting)
    shared = ["<a@provider.test>"]
    first = convert(shared)
    second = convert(shared)
    assert unwrapped(first) == unwrapped(second)
    assert len(calls) == 1
