"""The MIME structure of each format, byte by byte where it matters.

Every engine accepts a wrong ``micalg`` or a missing ``Version: 1``, so
only these checks catch them.
"""

from __future__ import annotations

import base64
import email.utils
import re
import warnings
from datetime import datetime, timedelta, timezone

import pysequoia
import pytest

from sealmail.core.mime.compose import HIDDEN_SUBJECT, compose
from sealmail.core.mime.headers import format_date
from sealmail.core.mime.message import Format, OutgoingMessage
from tests.mime import mailcheck
from tests.mime.engines import GnuPGPeer, make_peer

FORMATS = list(Format)


@pytest.fixture(scope="module")
def hard() -> OutgoingMessage:
    return mailcheck.hard_message()


@pytest.fixture(scope="module")
def composed(provider, customer_keys, hard) -> dict[Format, bytes]:
    key = customer_keys["cv25519"]
    message = hard
    return {
        fmt: compose(
            message, fmt, recipients=[key.certificate], signer=provider.signer
        ).data
        for fmt in FORMATS
    }


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_wire_is_7bit_crlf(fmt, composed):
    raw = composed[fmt]
    assert max(raw) < 0x80, "non-ASCII byte on the wire"
    assert b"\n" not in raw.replace(b"\r\n", b""), "bare LF"
    assert b"\r" not in raw.replace(b"\r\n", b""), "bare CR"
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 78
    header = raw.partition(b"\r\n\r\n")[0]
    for line in header.split(b"\r\n"):
        assert not line.endswith((b" ", b"\t")), f"trailing whitespace: {line!r}"


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_top_level_is_7bit(fmt, composed):
    parsed = mailcheck.parse(composed[fmt])
    assert parsed["MIME-Version"] == "1.0"
    cte = parsed.get("Content-Transfer-Encoding")
    if parsed.is_multipart():
        assert cte is None
    else:
        assert cte == "7bit"


def test_pgpmime_structure(composed):
    raw = composed[Format.PGPMIME]
    parsed = mailcheck.parse(raw)
    assert parsed.get_content_type() == "multipart/encrypted"
    assert parsed.get_param("protocol") == "application/pgp-encrypted"
    assert parsed["Subject"] == HIDDEN_SUBJECT
    control, payload = parsed.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    _, raw_parts = mailcheck.split_raw(raw)
    assert mailcheck.part_body(raw_parts[0]) == b"Version: 1\r\n"
    assert payload.get_content_type() == "application/octet-stream"
    assert payload.get_content_disposition() == "inline"
    assert payload.get_filename() == "encrypted.asc"
    assert payload.get_param("name") == "encrypted.asc"
    body = mailcheck.part_body(raw_parts[1])
    assert body.startswith(b"-----BEGIN PGP MESSAGE-----\r\n")
    assert body.endswith(b"-----END PGP MESSAGE-----\r\n")


def test_pgpmime_inner_header_protection(provider, customer_keys, tmp_path):
    key = customer_keys["cv25519"]
    message = mailcheck.hard_message()
    composed = compose(
        message, Format.PGPMIME, recipients=[key.certificate], signer=provider.signer
    )
    peer = make_peer("gpg", key, provider, tmp_path)
    inner = mailcheck.check_pgpmime(composed.data, message, peer, "gpg")
    outer = mailcheck.parse(composed.data)
    assert inner.get_param("hp") == "cipher"
    assert inner.get_param("protected-headers") == "v1"
    for name in ("From", "To", "Date", "Message-ID"):
        assert inner[name] == outer[name], name
    assert inner["Subject"] == message.subject
    hp_outer = [str(value) for value in inner.get_all("HP-Outer")]
    assert f"Subject: {HIDDEN_SUBJECT}" in hp_outer
    assert f"Message-ID: {composed.message_id}" in hp_outer
    assert f"To: {outer['To']}" in hp_outer
    assert f"From: {outer['From']}" in hp_outer
    assert len(hp_outer) == 5
    text_part = inner.get_body(preferencelist=("plain",))
    assert text_part.get_param("hp-legacy-display") == "1"


def test_pgpmime_shown_subject_has_no_legacy_display(provider, customer_keys, tmp_path):
    key = customer_keys["cv25519"]
    message = mailcheck.hard_message()
    composed = compose(
        message,
        Format.PGPMIME,
        recipients=[key.certificate],
        signer=provider.signer,
        hide_subject=False,
    )
    assert mailcheck.parse(composed.data)["Subject"] == message.subject
    peer = make_peer("gpg", key, provider, tmp_path)
    inner = mailcheck.check_pgpmime(
        composed.data, message, peer, "gpg", hide_subject=False
    )
    assert (
        inner.get_body(preferencelist=("plain",)).get_param("hp-legacy-display") is None
    )


def test_signed_structure_and_micalg(composed, provider, customer_keys, tmp_path):
    raw = composed[Format.SIGNED]
    parsed = mailcheck.parse(raw)
    assert parsed.get_content_type() == "multipart/signed"
    assert parsed.get_param("protocol") == "application/pgp-signature"
    _, (entity, signature_part) = mailcheck.split_raw(raw)
    signature = mailcheck.part_body(signature_part)
    assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----\r\n")
    # micalg must name the hash the signature really used, as GnuPG reads it.
    peer = make_peer("gpg", customer_keys["cv25519"], provider, tmp_path)
    assert isinstance(peer, GnuPGPeer)
    verification = peer.verify_detached(entity, signature)
    assert verification.valid, verification.detail
    assert parsed.get_param("micalg") == "pgp-" + verification.hash_algorithm.lower()
    assert parsed.get_param("micalg") != "pgp-sha1"
    assert mailcheck.parse(entity).get_param("hp") == "clear"


def test_signed_entity_is_spliced_verbatim(composed):
    _, (entity, _) = mailcheck.split_raw(composed[Format.SIGNED])
    # The entity is a multipart; the CRLF after its closing delimiter is signed.
    assert entity.endswith(b"--=_sealmail.mixed--\r\n")
    assert re.search(rb"^From ", entity, re.MULTILINE) is None
    assert b"=46rom the billing team" in entity
    for line in entity.split(b"\r\n"):
        assert not line.endswith((b" ", b"\t")), f"trailing whitespace: {line!r}"
    for part in mailcheck.parse(entity).walk():
        if not part.is_multipart():
            assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")


def test_signed_leaf_entity_keeps_final_line_break(provider, customer_keys, tmp_path):
    message = mailcheck.notification_message()
    raw = compose(message, Format.SIGNED, signer=provider.signer).data
    _, (entity, signature_part) = mailcheck.split_raw(raw)
    assert entity.endswith(b"15:58.\r\n")
    peer = make_peer("gpg", customer_keys["cv25519"], provider, tmp_path)
    assert peer.verify_detached(entity, mailcheck.part_body(signature_part)).valid


def test_inline_structure(composed, hard):
    parsed = mailcheck.parse(composed[Format.INLINE])
    assert parsed["Subject"] == HIDDEN_SUBJECT
    text_part, *attachments = parsed.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert text_part.get_content_charset() == "utf-8"
    assert [a.get_filename() for a in attachments] == [
        a.filename + ".pgp" for a in hard.attachments
    ]
    # Nothing in clear but the file names: no plaintext fragment leaks.
    assert b"billing team" not in composed[Format.INLINE]
    assert b"Rechnung f" not in composed[Format.INLINE]


def test_plain_is_readable_mime(composed, hard):
    parsed = mailcheck.parse(composed[Format.PLAIN])
    message = hard
    assert parsed["Subject"] == message.subject
    mailcheck.check_entity(composed[Format.PLAIN], message)


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_headers_identify_message(fmt, composed, provider):
    parsed = mailcheck.parse(composed[fmt])
    assert re.fullmatch(r"<[0-9a-f]{32}@provider\.test>", parsed["Message-ID"])
    assert email.utils.parsedate_to_datetime(parsed["Date"]).tzinfo is not None
    assert parsed["From"].addresses[0].addr_spec == "billing@provider.test"
    assert parsed["To"].addresses[0].display_name == "Jürgen Müller"
    assert "=?utf-8?" in composed[fmt].partition(b"\r\n\r\n")[0].decode()


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_autocrypt_header_carries_minimal_key(fmt, composed, provider):
    parsed = mailcheck.parse(composed[fmt])
    attributes = dict(
        item.strip().split("=", 1) for item in str(parsed["Autocrypt"]).split(";")
    )
    assert attributes["addr"] == "billing@provider.test"
    keydata = base64.b64decode("".join(attributes["keydata"].split()))
    certificate = pysequoia.Cert.from_bytes(keydata)
    assert certificate.fingerprint == provider.certificate.fingerprint
    assert [str(uid) for uid in certificate.user_ids] == [
        "Example Provider Billing <billing@provider.test>"
    ]
    assert len(keydata) <= len(bytes(provider.certificate))


def test_given_message_id_and_date_are_kept(provider, customer_keys):
    key = customer_keys["cv25519"]
    when = datetime(2026, 12, 4, 15, 58, 17, tzinfo=timezone.utc)
    message = OutgoingMessage(
        sender=mailcheck.SENDER,
        to="customer@customer.test",
        subject="Retry",
        text="Same message again.\n",
        message_id="<stored-1234@provider.test>",
        date=when,
        in_reply_to="parent@provider.test",
        references=("<root@provider.test>", "parent@provider.test"),
        headers=(("Auto-Submitted", "auto-generated"),),
    )
    for fmt in FORMATS:
        composed = compose(
            message, fmt, recipients=[key.certificate], signer=provider.signer
        )
        assert composed.message_id == "<stored-1234@provider.test>"
        parsed = mailcheck.parse(composed.data)
        assert parsed["Message-ID"] == "<stored-1234@provider.test>"
        assert parsed["Date"] == "Fri, 04 Dec 2026 15:58:17 +0000"
        assert parsed["In-Reply-To"] == "<parent@provider.test>"
        assert parsed["References"].split() == [
            "<root@provider.test>",
            "<parent@provider.test>",
        ]
        assert parsed["Auto-Submitted"] == "auto-generated"


def test_long_non_ascii_subject_folds(provider):
    subject = "Ihre Rechnung für Dezember 2026 – Grüße aus der Buchhaltung, 5 € " * 4
    message = OutgoingMessage(
        sender='"Provider, Billing Department" <billing@provider.test>',
        to='"Müller-Lüdenscheidt, Jürgen (Buchhaltung)" <customer@customer.test>',
        subject=subject,
        text="x\n",
    )
    composed = compose(message, Format.PLAIN, signer=provider.signer)
    header = composed.data.partition(b"\r\n\r\n")[0]
    assert max(len(line) for line in header.split(b"\r\n")) <= 78
    parsed = mailcheck.parse(composed.data)
    assert parsed["Subject"] == subject.strip()
    assert parsed["From"].addresses[0].display_name == "Provider, Billing Department"
    assert (
        parsed["To"].addresses[0].display_name
        == "Müller-Lüdenscheidt, Jürgen (Buchhaltung)"
    )
    assert parsed["To"].addresses[0].addr_spec == "customer@customer.test"


def test_composed_message_reports_keys(provider, customer_keys):
    key = customer_keys["cv25519"]
    message = mailcheck.notification_message()
    encrypted = compose(
        message, Format.PGPMIME, recipients=[key.certificate], signer=provider.signer
    )
    assert encrypted.format is Format.PGPMIME
    assert encrypted.encrypted_to == (key.certificate.fingerprint,)
    assert encrypted.signed_by == provider.signer.fingerprint
    signed = compose(
        message, Format.SIGNED, recipients=[key.certificate], signer=provider.signer
    )
    assert signed.encrypted_to == ()
    assert signed.signed_by == provider.signer.fingerprint
    plain = compose(message, Format.PLAIN, signer=provider.signer)
    assert plain.signed_by is None


def test_autocrypt_header_follows_certificate(provider):
    other = pysequoia.Tsk.generate(
        user_ids=["Example Provider Billing <billing@provider.test>"],
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    ).extract_certificate()
    message = mailcheck.notification_message()
    fingerprints = []
    for certificate in (provider.certificate, other, provider.certificate):
        composed = compose(
            message,
            Format.PLAIN,
            signer=provider.signer,
            autocrypt_certificate=certificate,
        )
        header = str(mailcheck.parse(composed.data)["Autocrypt"])
        keydata = "".join(header.split("keydata=", 1)[1].split())
        fingerprints.append(
            pysequoia.Cert.from_bytes(base64.b64decode(keydata)).fingerprint
        )
    assert fingerprints == [
        provider.certificate.fingerprint,
        other.fingerprint,
        provider.certificate.fingerprint,
    ]


def test_legacy_display_escapes_html(provider, customer_keys, tmp_path):
    key = customer_keys["cv25519"]
    message = OutgoingMessage(
        sender=mailcheck.SENDER,
        to="customer@customer.test",
        subject="Offer <b>50%</b> & more",
        text="Text\n",
        html="<p>HTML</p>",
    )
    composed = compose(
        message, Format.PGPMIME, recipients=[key.certificate], signer=provider.signer
    )
    peer = make_peer("gpg", key, provider, tmp_path)
    inner = mailcheck.check_pgpmime(composed.data, message, peer, "gpg")
    html = inner.get_body(preferencelist=("html",)).get_content()
    assert "Subject: Offer &lt;b&gt;50%&lt;/b&gt; &amp; more" in html
    assert "<b>50%</b>" not in html


def test_autocrypt_never_carries_secret_keys(provider):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with_secrets = pysequoia.Cert.from_bytes(bytes(provider.tsk))
        assert with_secrets.has_secret_keys
    composed = compose(
        mailcheck.notification_message(),
        Format.PLAIN,
        signer=provider.signer,
        autocrypt_certificate=with_secrets,
    )
    header = str(mailcheck.parse(composed.data)["Autocrypt"])
    keydata = base64.b64decode("".join(header.split("keydata=", 1)[1].split()))
    tags = [packet.tag for packet in pysequoia.packet.PacketPile.from_bytes(keydata)]
    assert pysequoia.packet.Tag.SecretKey not in tags
    assert pysequoia.packet.Tag.SecretSubkey not in tags
    assert pysequoia.packet.Tag.PublicKey in tags


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f.value)
def test_empty_subject_has_no_trailing_space(fmt, provider, customer_keys):
    key = customer_keys["cv25519"]
    message = OutgoingMessage(
        sender=mailcheck.SENDER, to="customer@customer.test", subject="", text="x\n"
    )
    composed = compose(
        message, fmt, recipients=[key.certificate], signer=provider.signer
    )
    header = composed.data.partition(b"\r\n\r\n")[0]
    expected = (
        b"Subject: ..." if fmt in (Format.PGPMIME, Format.INLINE) else b"Subject:"
    )
    assert expected in header.split(b"\r\n")
    for line in composed.data.split(b"\r\n"):
        assert not line.endswith((b" ", b"\t")), f"trailing whitespace: {line!r}"


def test_cached_date_keeps_its_zone():
    utc = datetime(2026, 12, 4, 12, 0, tzinfo=timezone.utc)
    berlin = datetime(2026, 12, 4, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert utc == berlin
    assert format_date(utc) == "Fri, 04 Dec 2026 12:00:00 +0000"
    assert format_date(berlin) == "Fri, 04 Dec 2026 13:00:00 +0100"
