"""Read what the outbox delivered to the Maildir and decrypt it as the customer."""

from __future__ import annotations

import email
import mailbox
import re
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage

import pytest
from django.conf import settings

from tests.peers.gnupg import GnuPG

ARMORED_MESSAGE = re.compile(
    rb"-----BEGIN PGP MESSAGE-----.*?-----END PGP MESSAGE-----", re.DOTALL
)
CONFIRM_LINK = re.compile(r"https?://\S+/confirm/\d+/[A-Za-z0-9_-]+/")


def messages_to(address: str) -> list[EmailMessage]:
    """Return the messages in the Maildir addressed to ``address``, oldest first."""
    box = mailbox.Maildir(settings.MAILDIR, create=True)
    found = []
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        message = email.message_from_bytes(raw, policy=policy.default)
        if address in str(message.get("To", "")):
            found.append((message["Date"].datetime, key, message))
    found.sort(key=lambda item: (item[0], item[1]))
    return [message for _, _, message in found]


def decrypt_text(gpg: GnuPG, message: EmailMessage) -> str:
    """Decrypt a message with gpg, check the provider's signature, return the text.

    ``gpg`` must hold the provider's public key (see :func:`trust_provider`).
    """
    blocks = []
    for part in message.walk():
        if not part.is_multipart():
            blocks += ARMORED_MESSAGE.findall(part.get_payload(decode=True) or b"")
    assert blocks, f"the message is not encrypted:\n{message}"
    result = gpg.decrypt(blocks[0])
    assert "DECRYPTION_OKAY" in result.status
    assert any(line.startswith("GOODSIG") for line in result.status), result.stderr
    inner = email.message_from_bytes(result.stdout, policy=policy.default)
    if inner.get("Content-Type") is None:
        return result.stdout.decode()
    return "\n".join(
        part.get_content()
        for part in inner.walk()
        if part.get_content_type() == "text/plain"
    )


@pytest.fixture
def outbox_runs_inline() -> Iterator[None]:
    """Run outbox tasks inside the request that queues them, on an empty Maildir."""
    from huey.contrib.djhuey import HUEY

    box = mailbox.Maildir(settings.MAILDIR, create=True)
    for key in box.iterkeys():
        box.discard(key)

    previous = HUEY.immediate
    HUEY.immediate = True
    yield
    HUEY.immediate = previous


def trust_provider(gpg: GnuPG) -> None:
    """Import the provider's public keys, as a customer does from the portal."""
    from sealmail.keys.store import get_keystore

    store = get_keystore()
    if store.is_empty():
        store.generate([f"<{settings.SEALMAIL_FROM}>"])
    for certificate in store.certificates():
        gpg.import_key(str(certificate).encode())
