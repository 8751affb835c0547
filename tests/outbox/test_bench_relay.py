"""The benchmark's buffered relay receives exactly what stock aiosmtpd receives."""

from __future__ import annotations

import importlib.util
import smtplib
import sys
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from sealmail.outbox.transport import Delivered, Envelope, transport_from_url
from tests.outbox.smtp_server import RecordingHandler, free_port

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "outbox_bench.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("outbox_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("outbox_bench", module)
    spec.loader.exec_module(module)
    return module


CONTENTS = [
    b"Subject: dots\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nx\r\n",
    b".first line is a dot line\r\nend\r\n",
    b"Subject: plain\r\n\r\n" + b"line of text\r\n" * 2000,
    b"Subject: no final newline\r\n\r\nlast",
]


@pytest.mark.parametrize("buffered", [False, True], ids=["stock", "buffered"])
def test_relay_receives_exact_content(buffered):
    handler = RecordingHandler()
    port = free_port()
    kwargs = {"hostname": "127.0.0.1", "port": port}
    controller = (
        bench_module().buffered_controller(handler, **kwargs)
        if buffered
        else Controller(handler, **kwargs)
    )
    controller.start()
    try:
        transport = transport_from_url(
            f"smtp://127.0.0.1:{port}?tls=none&keepalive=0",
            Path("/nonexistent"),
            "provider.test",
        )
        envelopes = [
            Envelope("billing@provider.test", f"c{n}@customer.test", content)
            for n, content in enumerate(CONTENTS)
        ]
        with transport.open() as session:
            assert session.pipelining
            outcomes = list(session.send_all(envelopes))
    finally:
        controller.stop()
    assert all(isinstance(outcome, Delivered) for outcome in outcomes)
    expected = [c if c.endswith(b"\r\n") else c + b"\r\n" for c in CONTENTS]
    assert [r.data for r in handler.received] == expected


def test_buffered_relay_answers_an_unpipelined_client():
    handler = RecordingHandler()
    port = free_port()
    controller = bench_module().buffered_controller(
        handler, hostname="127.0.0.1", port=port
    )
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            client.ehlo()
            assert client.docmd("DATA")[0] == 503  # no recipient yet
            client.sendmail(
                "a@provider.test", ["b@customer.test"], b"Subject: x\r\n\r\n.hi\r\n"
            )
            assert client.noop()[0] == 250
    finally:
        controller.stop()
    assert [r.data for r in handler.received] == [b"Subject: x\r\n\r\n.hi\r\n"]
