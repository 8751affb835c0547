"""Test messages and the checks that a peer's output matches them.

The checks parse with the ``email`` package, but split multipart bodies on
raw bytes so the signed entity is exactly what arrived on the wire.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import html as htmllib
import os
import re
from collections.abc import Callable
from email.message import EmailMessage
from typing import Protocol

from sealmail.core.mime.htmltext import html_to_text
from sealmail.core.mime.message import Attachment, OutgoingMessage
from tests.peers.results import Decryption, Verification

SENDER = "Example Provider Billing <billing@provider.test>"
RECIPIENT = "Jürgen Müller <customer@customer.test>"

HARD_TEXT = (
    "Grüße, 5 €\n"
    "From the billing team: this line starts with From.\n"
    "This line ends with spaces.   \n" + "0123456789" * 100 + "\n"
    ".\n"
    "Tab at the end\t\n"
)
LONG_NAME = ("Rechnung-März-2026-" + "x" * 120)[:116] + ".pdf"  # 120 characters


def hard_message() -> OutgoingMessage:
    """A message with every awkward case: From lines, long lines, odd names."""
    return OutgoingMessage(
        sender=SENDER,
        to=RECIPIENT,
        subject="Ihre Rechnung für Dezember: Grüße, 5 € (mit Anhängen)",
        text=HARD_TEXT,
        html=(
            "<html><body><p>Grüße, 5 &euro;</p>"
            "<p>From the billing team.</p></body></html>"
        ),
        attachments=(
            Attachment("a", "application/octet-stream", os.urandom(300)),
            Attachment(LONG_NAME, "application/pdf", b"%PDF-1.4\n" + os.urandom(5000)),
            Attachment(
                "Übersicht März €.csv", "text/csv", "Datum;Betrag\n1.12.;5 €\n".encode()
            ),
        ),
    )


def html_only_message() -> OutgoingMessage:
    return OutgoingMessage(
        sender=SENDER,
        to=RECIPIENT,
        subject="Ihre Leitung ist wieder verfügbar",
        html=(
            "<html><head><style>p {color: red}</style></head><body>"
            "<h1>Leitung DSL-4711</h1><p>Seit 15:58 wieder verfügbar.</p>"
            "<p>From now on all is well.</p></body></html>"
        ),
    )


def notification_message() -> OutgoingMessage:
    return OutgoingMessage(
        sender=SENDER,
        to="customer@customer.test",
        subject="Your line is up again",
        text="Your line DSL-4711 is up again since 15:58.\n",
    )


CASES: dict[str, Callable[[], OutgoingMessage]] = {
    "hard": hard_message,
    "html_only": html_only_message,
    "notification": notification_message,
}


class Peer(Protocol):
    def decrypt(self, ciphertext: bytes) -> Decryption: ...

    def verify_detached(self, data: bytes, signature: bytes) -> Verification: ...


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_raw(raw: bytes) -> tuple[bytes, list[bytes]]:
    """Split a multipart message into its header and its raw body parts.

    Each part is the exact bytes between ``--boundary CRLF`` and the CRLF
    that starts the next delimiter (RFC 2046 section 5.1.1).
    """
    header, _, body = raw.partition(b"\r\n\r\n")
    match = re.search(rb'boundary="?([^";\r\n]+)"?', header)
    assert match, f"no boundary in the header:\n{header.decode()}"
    delimiter = b"--" + match.group(1)
    assert body.count(delimiter + b"--") == 1, "missing or repeated closing delimiter"
    chunks = body.split(b"\r\n" + delimiter)
    first = chunks[0]
    # The first delimiter may open the body, without a CRLF in front.
    if first.startswith(delimiter):
        chunks[0:1] = [b"", first[len(delimiter) :]]
    parts = []
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            break
        assert chunk.startswith(b"\r\n"), (
            f"delimiter not followed by CRLF: {chunk[:40]!r}"
        )
        parts.append(chunk[2:])
    return header + b"\r\n", parts


def part_body(part: bytes) -> bytes:
    return part.partition(b"\r\n\r\n")[2]


def expected_text(message: OutgoingMessage, legacy_subject: str | None = None) -> str:
    text = (
        message.text if message.text is not None else html_to_text(message.html or "")
    )
    text = text.replace("\r\n", "\n")
    if not text.endswith("\n"):
        text += "\n"
    if legacy_subject is not None:
        text = f"Subject: {legacy_subject}\n\n{text}"
    return text


def check_entity(
    entity: bytes, message: OutgoingMessage, *, legacy_subject: str | None = None
) -> EmailMessage:
    """Assert that a decrypted or signed entity contains ``message``'s content."""
    parsed = parse(entity)
    text_part = parsed.get_body(preferencelist=("plain",))
    assert text_part is not None, "no text/plain body part"
    assert text_part.get_content_charset() == "utf-8"
    text = text_part.get_content().replace("\r\n", "\n")
    assert text == expected_text(message, legacy_subject)

    if message.html is not None:
        html_part = parsed.get_body(preferencelist=("html",))
        assert html_part is not None, "no text/html body part"
        html = html_part.get_content().replace("\r\n", "\n")
        if legacy_subject is not None:
            element = re.search(
                r'<div class="header-protection-legacy-display"><pre>(.*?)</pre></div>\n',
                html,
            )
            assert element, f"no legacy display element in {html!r}"
            assert element.group(1) == "Subject: " + htmllib.escape(legacy_subject)
            html = html.replace(element.group(0), "")
        assert html == message.html.replace("\r\n", "\n").rstrip("\n") + "\n"
    attachments = {
        part.get_filename(): sha256(part.get_payload(decode=True))
        for part in parsed.iter_attachments()
    }
    assert attachments == {a.filename: sha256(a.data) for a in message.attachments}
    return parsed


def check_decryption(result: Decryption, peer_name: str) -> None:
    assert result.signatures, f"{peer_name} reported no signature"
    for signature in result.signatures:
        assert signature.valid, f"{peer_name} did not verify:\n{signature.detail}"


def check_pgpmime(
    raw: bytes,
    message: OutgoingMessage,
    peer: Peer,
    peer_name: str,
    *,
    hide_subject: bool = True,
) -> EmailMessage:
    _, parts = split_raw(raw)
    assert len(parts) == 2
    result = peer.decrypt(part_body(parts[1]))
    check_decryption(result, peer_name)
    legacy = message.subject if hide_subject else None
    return check_entity(result.plaintext, message, legacy_subject=legacy)


def check_signed(
    raw: bytes, message: OutgoingMessage, peer: Peer, peer_name: str
) -> bytes:
    _, parts = split_raw(raw)
    assert len(parts) == 2
    signed_entity, signature_part = parts
    verification = peer.verify_detached(signed_entity, part_body(signature_part))
    assert verification.valid, f"{peer_name} did not verify:\n{verification.detail}"
    check_entity(signed_entity, message)
    return signed_entity


def check_inline(
    raw: bytes,
    message: OutgoingMessage,
    peer: Peer,
    peer_name: str,
    *,
    hide_subject: bool = True,
) -> None:
    parsed = parse(raw)
    if message.attachments:
        assert parsed.get_content_type() == "multipart/mixed"
        text_part, *attachment_parts = parsed.iter_parts()
    else:
        text_part, attachment_parts = parsed, []
    assert text_part.get_content_type() == "text/plain"
    armored = text_part.get_payload(decode=True)
    assert armored.startswith(b"-----BEGIN PGP MESSAGE-----")
    result = peer.decrypt(armored)
    check_decryption(result, peer_name)
    legacy = message.subject if hide_subject else None
    assert result.plaintext.decode("utf-8").replace("\r\n", "\n") == expected_text(
        message, legacy
    )
    names = [part.get_filename() for part in attachment_parts]
    assert names == [a.filename + ".pgp" for a in message.attachments]
    for part, attachment in zip(attachment_parts, message.attachments, strict=True):
        assert part.get_content_type() == "application/octet-stream"
        decrypted = peer.decrypt(part.get_payload(decode=True))
        check_decryption(decrypted, peer_name)
        assert sha256(decrypted.plaintext) == sha256(attachment.data), (
            attachment.filename
        )
