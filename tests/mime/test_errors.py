"""Bad input raises a clear error, and encryption never falls back to plaintext."""

from __future__ import annotations

import pysequoia
import pytest

import sealmail.core.pgp.ops
from sealmail.core.errors import CompositionError, EncryptionError, SigningError
from sealmail.core.mime.compose import compose
from sealmail.core.mime.htmltext import html_to_text
from sealmail.core.mime.message import Attachment, Format, OutgoingMessage
from tests.mime import mailcheck
from tests.peers.gnupg import GnuPG


def message(**changes) -> OutgoingMessage:
    fields = {
        "sender": mailcheck.SENDER,
        "to": "customer@customer.test",
        "subject": "Hello",
        "text": "Body\n",
    }
    fields.update(changes)
    return OutgoingMessage(**fields)


@pytest.mark.parametrize("fmt", [Format.PGPMIME, Format.INLINE], ids=lambda f: f.value)
def test_encrypted_format_without_recipients_raises(fmt, provider):
    with pytest.raises(EncryptionError, match="at least one recipient"):
        compose(message(), fmt, signer=provider.signer)


def test_signed_without_signer_raises():
    with pytest.raises(SigningError, match="signing key"):
        compose(message(), Format.SIGNED)


@pytest.mark.parametrize("fmt", [Format.PGPMIME, Format.INLINE], ids=lambda f: f.value)
def test_failed_encryption_raises_without_output(fmt, provider, monkeypatch):
    # A key of its own, because the encryption layer caches what it learns
    # about a certificate while pysequoia is patched.
    recipient = pysequoia.Tsk.generate(
        user_ids=["Customer <customer@customer.test>"],
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    ).extract_certificate()

    def fail(*args, **kwargs):
        raise RuntimeError("simulated engine failure")

    monkeypatch.setattr(sealmail.core.pgp.ops.pysequoia, "encrypt", fail)
    with pytest.raises(EncryptionError):
        compose(message(), fmt, recipients=[recipient], signer=provider.signer)


@pytest.mark.parametrize("fmt", [Format.PGPMIME, Format.INLINE], ids=lambda f: f.value)
def test_expired_recipient_key_raises(fmt, provider, tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    uid = "Expired <expired@customer.test>"
    # A key made in 2020 that expired a day later, as a customer's old key.
    gpg.run(
        "--faked-system-time",
        "20200101T000000",
        "--quick-generate-key",
        uid,
        "future-default",
        "default",
        "1d",
    )
    expired = pysequoia.Cert.from_bytes(gpg.export(uid))
    with pytest.raises(EncryptionError, match="no live encryption subkey"):
        compose(message(), fmt, recipients=[expired], signer=provider.signer)


def test_unknown_format_raises(provider):
    with pytest.raises(CompositionError, match="unknown format"):
        compose(message(), "pgpmime", signer=provider.signer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"to": "not an address"}, "missing a local part or domain"),
        ({"to": "a@example.test, b@example.test"}, "not a single mail address"),
        ({"to": "Jürgen <jürgen@example.test>"}, "non-ASCII local part"),
        ({"sender": "billing"}, "missing a local part or domain"),
        ({"subject": "Hello\r\nBcc: victim@example.test"}, "line break"),
        ({"to": "a@example.test\r\nBcc: victim@example.test"}, "line break"),
        ({"text": None, "html": None}, "neither text nor HTML"),
        ({"message_id": "no spaces allowed@x"}, "not a valid message identifier"),
        ({"message_id": "missing-domain"}, "not a valid message identifier"),
        (
            {"message_id": "<" + "x" * 980 + "@provider.test>"},
            "not a valid message identifier",
        ),
        ({"headers": (("Content-Type", "text/html"),)}, "set by the composer"),
        ({"headers": (("Bad Name", "x"),)}, "header name"),
        ({"headers": (("X-Note", "a\nb"),)}, "line break"),
        (
            {"attachments": (Attachment("../etc/passwd", "text/plain", b"x"),)},
            "path separator",
        ),
        ({"attachments": (Attachment("", "text/plain", b"x"),)}, "empty file name"),
        (
            {"attachments": (Attachment("a.bin", "binary", b"x"),)},
            "invalid content type",
        ),
        (
            {"attachments": (Attachment("a.eml", "multipart/mixed", b"x"),)},
            "invalid content type",
        ),
    ],
)
@pytest.mark.parametrize("fmt", list(Format), ids=lambda f: f.value)
def test_invalid_input_raises_composition_error(
    fmt, changes, expected, provider, customer_keys
):
    key = customer_keys["cv25519"]
    with pytest.raises(CompositionError, match=expected):
        compose(
            message(**changes),
            fmt,
            recipients=[key.certificate],
            signer=provider.signer,
        )


def test_non_ascii_domain_becomes_idna(provider):
    composed = compose(
        message(to="Jürgen <j@müller.test>"), Format.PLAIN, signer=provider.signer
    )
    parsed = mailcheck.parse(composed.data)
    assert parsed["To"].addresses[0].addr_spec == "j@xn--mller-kva.test"


def test_html_to_text_keeps_structure():
    html = (
        "<html><head><title>T</title><style>p {}</style></head><body>"
        "<h1>Rechnung</h1><p>Grüße, 5&nbsp;&euro;<br>zweite Zeile</p>"
        "<ul><li>eins</li><li>zwei <a href='https://provider.test/pay'>bezahlen</a></li></ul>"
        "<pre>  eingerückt\n  bleibt</pre><script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == (
        "Rechnung\n\n"
        "Grüße, 5 €\nzweite Zeile\n\n"
        "* eins\n* zwei bezahlen <https://provider.test/pay>\n\n"
        "  eingerückt\n  bleibt\n"
    )


def test_html_only_inline_sends_converted_text(provider, customer_keys, tmp_path):
    from tests.mime.engines import make_peer

    key = customer_keys["cv25519"]
    html_only = mailcheck.html_only_message()
    composed = compose(
        html_only, Format.INLINE, recipients=[key.certificate], signer=provider.signer
    )
    peer = make_peer("gpg", key, provider, tmp_path)
    mailcheck.check_inline(composed.data, html_only, peer, "gpg")
    assert (
        b"<h1>"
        not in peer.decrypt(
            mailcheck.parse(composed.data).get_payload(decode=True)
        ).plaintext
    )
