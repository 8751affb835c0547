"""The SMTP and Maildir transports against a real aiosmtpd relay on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

from sealmail.outbox.transport import (
    MaildirTransport,
    PermanentFailure,
    SmtpTransport,
    TemporaryFailure,
    TransportConfigError,
    parse_smtp_url,
    transport_from_url,
)
from tests.outbox.smtp_server import LoopbackRelay

MESSAGE = (
    b"From: billing@provider.test\r\nTo: bob@customer.test\r\n"
    b"Subject: test\r\nMessage-ID: <t1@provider.test>\r\n\r\n"
    b"line one\r\n.line starting with a dot\r\n"
)


@pytest.fixture
def relay(tmp_path: Path):
    server = LoopbackRelay(tmp_path)
    server.start()
    yield server
    server.stop()


def smtp(url: str) -> SmtpTransport:
    transport = transport_from_url(url, Path("/nonexistent"), "provider.test")
    assert isinstance(transport, SmtpTransport)
    return transport


def test_starttls_opportunistic_records_tls(relay):
    with smtp(relay.url()).open() as session:
        delivered = session.send("billing@provider.test", "bob@customer.test", MESSAGE)
    assert delivered.reply.startswith("250 2.0.0 Ok: queued as T")
    assert delivered.tls_protocol in {"TLSv1.2", "TLSv1.3"}
    assert delivered.tls_cipher
    [received] = relay.received
    assert received.tls
    assert received.data == MESSAGE
    assert received.rcpt_tos == ("bob@customer.test",)


def test_connection_reused_for_batch(relay):
    with smtp(relay.url()).open() as session:
        for _ in range(5):
            session.send("billing@provider.test", "bob@customer.test", MESSAGE)
    assert len(relay.received) == 5


def test_tls_required_but_not_offered(tmp_path):
    server = LoopbackRelay(tmp_path, starttls=False)
    server.start()
    try:
        with pytest.raises(TemporaryFailure) as info:
            smtp(server.url(tls="required")).open()
        assert "does not offer STARTTLS" in info.value.reply
        # Opportunistic mode sends in clear to a relay without STARTTLS.
        with smtp(server.url()).open() as session:
            delivered = session.send(
                "billing@provider.test", "bob@customer.test", MESSAGE
            )
        assert delivered.tls_protocol == ""
    finally:
        server.stop()
    assert [r.tls for r in server.received] == [False]


def test_untrusted_certificate_is_not_downgraded(relay, tmp_path):
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    url = relay.url().replace(f"cafile={relay.cafile}", f"cafile={other_ca}")
    with pytest.raises(TemporaryFailure) as info:
        smtp(url).open()
    assert "certificate verify failed" in info.value.reply
    assert relay.received == []
    with smtp(url + "&verify=false").open() as session:
        delivered = session.send("billing@provider.test", "bob@customer.test", MESSAGE)
    assert delivered.tls_protocol


def test_implicit_tls_smtps(tmp_path):
    server = LoopbackRelay(tmp_path, implicit_tls=True)
    server.start()
    try:
        with smtp(server.url()).open() as session:
            delivered = session.send(
                "billing@provider.test", "bob@customer.test", MESSAGE
            )
    finally:
        server.stop()
    assert delivered.tls_protocol
    assert server.received[0].data == MESSAGE


def test_auth_after_starttls(tmp_path):
    server = LoopbackRelay(tmp_path, credentials=("relayuser", "s3cret"))
    server.start()
    try:
        with smtp(server.url()).open() as session:
            session.send("billing@provider.test", "bob@customer.test", MESSAGE)
        wrong = server.url().replace("s3cret", "wrong")
        with pytest.raises(PermanentFailure) as info:
            smtp(wrong).open()
        assert info.value.reply.startswith("535")
    finally:
        server.stop()
    assert len(server.received) == 1


def test_auth_refused_without_tls(tmp_path):
    server = LoopbackRelay(tmp_path, starttls=False)
    server.start()
    try:
        url = server.url().replace("smtp://", "smtp://user:pw@")
        with pytest.raises(TemporaryFailure) as info:
            smtp(url).open()
    finally:
        server.stop()
    assert "password would travel in clear" in info.value.reply


def test_reply_classes(relay):
    relay.reply_next_data("451 4.3.0 Try again later")
    relay.reply_next_rcpt("550 5.1.1 No such user")
    with smtp(relay.url()).open() as session:
        with pytest.raises(PermanentFailure) as permanent:
            session.send("billing@provider.test", "nobody@customer.test", MESSAGE)
        with pytest.raises(TemporaryFailure) as temporary:
            session.send("billing@provider.test", "bob@customer.test", MESSAGE)
        delivered = session.send("billing@provider.test", "bob@customer.test", MESSAGE)
    assert permanent.value.reply == "550 5.1.1 No such user"
    assert temporary.value.reply == "451 4.3.0 Try again later"
    assert not temporary.value.connection_lost
    assert delivered.reply.startswith("250")
    assert len(relay.received) == 1


def test_relay_down_is_temporary(tmp_path):
    server = LoopbackRelay(tmp_path)
    with pytest.raises(TemporaryFailure) as info:
        smtp(server.url()).open()
    assert info.value.connection_lost
    assert "connecting to 127.0.0.1" in info.value.reply


def test_maildir_stores_exact_bytes(tmp_path):
    transport = transport_from_url("", tmp_path / "maildir", "provider.test")
    assert isinstance(transport, MaildirTransport)
    with transport.open() as session:
        delivered = session.send("billing@provider.test", "bob@customer.test", MESSAGE)
    [stored] = list((tmp_path / "maildir" / "new").iterdir())
    assert stored.read_bytes() == MESSAGE
    assert stored.name in delivered.reply
    assert list((tmp_path / "maildir" / "tmp").iterdir()) == []


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("http://relay.test", "scheme"),
        ("smtp://", "no host"),
        ("smtp://127.0.0.1:99999", "invalid port"),
        ("smtp://127.0.0.1?tls=maybe", "tls='maybe'"),
        ("smtp://127.0.0.1?timeout=0", "timeout"),
        ("smtp://127.0.0.1?tsl=required", "unknown parameters tsl"),
        ("smtps://127.0.0.1?tls=none", "always uses TLS"),
        ("smtp://127.0.0.1?cafile=/nonexistent/ca.pem", "does not exist"),
        ("smtp://127.0.0.1?verify=maybe", "verify="),
    ],
)
def test_bad_smtp_url(url, fragment):
    with pytest.raises(TransportConfigError) as info:
        parse_smtp_url(url, "provider.test")
    assert fragment in str(info.value)
