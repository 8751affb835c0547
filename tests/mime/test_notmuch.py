"""A real mail client's MIME stack (notmuch: GMime and GPGME) reads our mail.

notmuch is strict about multipart/signed boundaries: a signed entity whose
final line break is not covered by the signature shows up as a bad
signature here even where the OpenPGP engines alone accept it. notmuch
decrypts PGP/MIME only, so test_interop.py checks inline PGP.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from sealmail.core.mime import wire
from sealmail.core.mime.compose import HIDDEN_SUBJECT, compose
from sealmail.core.mime.message import Format, OutgoingMessage
from sealmail.core.pgp.ops import sign_detached
from tests.mime import mailcheck
from tests.peers.notmuch import Notmuch


def leaf_parts(node: dict[str, Any] | list[Any]) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [leaf for child in node for leaf in leaf_parts(child)]
    content = node.get("content")
    if isinstance(content, list):
        return leaf_parts(content)
    return [node]


@pytest.fixture
def notmuch(tmp_path, customer_keys) -> Notmuch:
    gnupg = customer_keys["cv25519"].gnupg
    assert gnupg is not None
    return Notmuch(tmp_path / "notmuch", gnupg.home)


def check_in_notmuch(
    notmuch: Notmuch,
    raw: bytes,
    message_id: str,
    message: OutgoingMessage,
    *,
    encrypted: bool,
    signed: bool,
    legacy_subject: str | None,
) -> dict[str, Any]:
    notmuch.deliver(raw)
    displayed = notmuch.show(message_id)
    crypto = displayed.get("crypto", {})
    if signed:
        statuses = crypto["signed"]["status"]
        assert [s["status"] for s in statuses] == ["good"], statuses
    else:
        assert "signed" not in crypto
    if encrypted:
        assert crypto["decrypted"]["status"] == "full"
        # notmuch takes the protected Subject from inside the encryption.
        assert displayed["headers"]["Subject"] == message.subject
    parts = leaf_parts(displayed["body"])
    texts = [
        p for p in parts if p["content-type"] == "text/plain" and "filename" not in p
    ]
    assert texts[0]["content"] == mailcheck.expected_text(message, legacy_subject)

    attachments = [p for p in parts if p.get("content-disposition") == "attachment"]
    attachments = [p for p in attachments if p.get("filename") != "signature.asc"]
    assert [p["filename"] for p in attachments] == [
        a.filename for a in message.attachments
    ]
    for part, attachment in zip(attachments, message.attachments, strict=True):
        data = notmuch.part(message_id, part["id"])
        assert hashlib.sha256(data).hexdigest() == mailcheck.sha256(attachment.data)
    return displayed


@pytest.mark.parametrize("case", ["hard", "html_only", "notification"])
def test_notmuch_reads_pgpmime(case, notmuch, provider, customer_keys):
    message = mailcheck.CASES[case]()
    key = customer_keys["cv25519"]
    composed = compose(
        message, Format.PGPMIME, recipients=[key.certificate], signer=provider.signer
    )
    displayed = check_in_notmuch(
        notmuch,
        composed.data,
        composed.message_id,
        message,
        encrypted=True,
        signed=True,
        legacy_subject=message.subject,
    )
    assert displayed["crypto"]["decrypted"]["header-mask"] == {
        "Subject": HIDDEN_SUBJECT
    }


@pytest.mark.parametrize("case", ["hard", "html_only", "notification"])
def test_notmuch_reads_signed(case, notmuch, provider):
    message = mailcheck.CASES[case]()
    composed = compose(message, Format.SIGNED, signer=provider.signer)
    check_in_notmuch(
        notmuch,
        composed.data,
        composed.message_id,
        message,
        encrypted=False,
        signed=True,
        legacy_subject=None,
    )


def test_notmuch_reads_plain(notmuch, provider):
    message = mailcheck.hard_message()
    composed = compose(message, Format.PLAIN, signer=provider.signer)
    displayed = check_in_notmuch(
        notmuch,
        composed.data,
        composed.message_id,
        message,
        encrypted=False,
        signed=False,
        legacy_subject=None,
    )
    assert displayed["headers"]["Subject"] == message.subject


def test_notmuch_shows_subject_when_not_hidden(notmuch, provider, customer_keys):
    message = mailcheck.notification_message()
    key = customer_keys["cv25519"]
    composed = compose(
        message,
        Format.PGPMIME,
        recipients=[key.certificate],
        signer=provider.signer,
        hide_subject=False,
    )
    displayed = check_in_notmuch(
        notmuch,
        composed.data,
        composed.message_id,
        message,
        encrypted=True,
        signed=True,
        legacy_subject=None,
    )
    assert "header-mask" not in displayed["crypto"]["decrypted"]


def test_notmuch_rejects_unsigned_final_line_break(notmuch, provider):
    # The control case for the docstring above: signing the entity without its
    # final CRLF, as a composer that ignores RFC 3156 delimiters would, fails.
    message = mailcheck.hard_message()
    composed = compose(message, Format.SIGNED, signer=provider.signer)
    header, (entity, signature_part) = mailcheck.split_raw(composed.data)
    wrong = sign_detached(entity[:-2], provider.signer)
    header_block = header.split(b"MIME-Version:")[0]
    raw = wire.multipart_signed(header_block, entity, wrong.armored, wrong.micalg)
    notmuch.deliver(raw)
    displayed = notmuch.show(composed.message_id)
    statuses = displayed["crypto"]["signed"]["status"]
    assert [s["status"] for s in statuses] == ["bad"], statuses
