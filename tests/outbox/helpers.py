"""Helpers shared by the outbox tests: failing a request midway, queueing a batch."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sealmail.outbox import service
from sealmail.outbox.service import enqueue


def fail_on_second_chunk(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Make the second chunk of the next request fail after the first committed.

    Returns a function that restores the real insert.
    """
    original = service._RequestWriter.insert
    calls = []

    def insert(self, request, chunk):
        calls.append(len(chunk))
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return original(self, request, chunk)

    monkeypatch.setattr(service._RequestWriter, "insert", insert)
    return lambda: monkeypatch.setattr(service._RequestWriter, "insert", original)


def enqueue_messages(make_contact, count: int) -> list[int]:
    """Store one message to each of ``count`` new contacts; return their ids."""
    return [
        enqueue(make_contact(), category="custom", subject=f"m{n}", text="x")[0].pk
        for n in range(count)
    ]
