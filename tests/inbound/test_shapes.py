"""Mail from five real OpenPGP implementations, in every shape, over SMTP and LMTP."""

from __future__ import annotations

import smtplib

import pytest

from sealmail.inbound.models import InboundMessage
from tests.inbound import shapes
from tests.inbound.peers import PEERS

pytestmark = pytest.mark.db_backends

TEXT = "Gr\u00fc\u00dfe aus K\u00f6ln: my line is down since 9:00.\n"
ATTACHMENT = bytes(range(256)) * 40


def _messages(peer, provider_cert: bytes) -> dict[str, bytes]:
    messages = {
        "combined": shapes.combined(
            peer,
            provider_cert,
            "...",
            TEXT,
            protected_subject=f"Line down ({peer.name})",
        ),
        "nested": shapes.nested(peer, provider_cert, "nested", TEXT),
        "inline": shapes.inline(peer, provider_cert, "inline", TEXT),
        "attachment": shapes.attachment(
            peer, provider_cert, "attachment", TEXT, ATTACHMENT, "report.pdf"
        ),
        "mixed_up": shapes.mixed_up(peer, provider_cert, "mixed up", TEXT),
        "signed": shapes.signed_only(peer, "signed only", TEXT),
    }
    if peer.can_clearsign:
        messages["clearsigned"] = shapes.clearsigned(peer, "clearsigned", TEXT)
    return messages


def _send(controller, protocol: str, sender: str, messages: dict[str, bytes]) -> None:
    client_class = smtplib.LMTP if protocol == "lmtp" else smtplib.SMTP
    with client_class(controller.hostname, controller.port, timeout=60) as client:
        for raw in messages.values():
            assert client.sendmail(sender, ["support@provider.test"], raw) == {}


def _texts(message: InboundMessage) -> list[str]:
    return [part.text for part in message.parts.all() if part.text.strip()]


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
@pytest.mark.parametrize("peer_name", [peer.name for peer in PEERS])
def test_every_shape_decrypted_and_verified(
    transactional_db,
    peers,
    provider_keys,
    immediate_queue,
    no_acknowledgement,
    protocol,
    peer_name,
):
    from tests.inbound.conftest import _server, register

    peer = peers[peer_name]
    contact = register(peer)
    messages = _messages(peer, provider_keys.current)
    controller = _server(protocol)
    controller.start()
    try:
        _send(controller, protocol, peer.address, messages)
    finally:
        controller.stop()

    assert InboundMessage.objects.count() == len(messages)
    by_shape = {}
    for message in InboundMessage.objects.all():
        assert message.state == InboundMessage.State.PARSED, message.parse_error
        assert message.protocol == protocol
        shape = next(
            name for name, raw in messages.items() if bytes(message.raw) == raw
        )
        by_shape[shape] = message

    combined = by_shape["combined"]
    assert combined.subject == f"Line down ({peer.name})"
    assert combined.protected_headers is True
    assert combined.encryption == "full"
    assert [s["status"] for s in combined.parts.get().signatures] == ["good"]
    assert combined.signed_by_customer is True
    assert _texts(combined) == [TEXT.replace("\n", "\r\n")]
    assert combined.ticket.customer_id == contact.customer_id

    nested = by_shape["nested"]
    assert nested.encryption == "full"
    assert nested.signed_by_customer is True
    assert [s["kind"] for s in nested.parts.get().signatures] == ["pgp-mime"]

    inline = by_shape["inline"]
    assert inline.encryption == "full"
    assert inline.signed_by_customer is True
    assert _texts(inline) == [TEXT]
    assert inline.parts.get().charset == "iso-8859-1"

    attachment = by_shape["attachment"]
    assert attachment.encryption == "full"
    files = [part for part in attachment.parts.all() if part.filename]
    assert [part.filename for part in files] == ["report.pdf"]
    assert files[0].original_filename == "report.pdf.pgp"
    assert files[0].content_type == "application/pdf"
    assert bytes(files[0].content) == ATTACHMENT
    # Two separately signed parts: neither signature covers the whole message.
    assert attachment.signed_by_customer is False
    assert {s["scope"] for part in attachment.parts.all() for s in part.signatures} == {
        "part"
    }

    mixed_up = by_shape["mixed_up"]
    assert mixed_up.repaired_mixed_up is True
    assert mixed_up.encryption == "full"
    assert mixed_up.signed_by_customer is True

    signed = by_shape["signed"]
    assert signed.encryption == "none"
    assert signed.signed_by_customer is True

    if "clearsigned" in by_shape:
        clearsigned = by_shape["clearsigned"]
        assert clearsigned.encryption == "none"
        assert clearsigned.signed_by_customer is True
        assert TEXT.strip() in _texts(clearsigned)[0]
