"""The body writer matches what the email package writes for the same tree.

The reference in each test is the same tree built with ``MIMEPart`` and
flattened by the email package's BytesGenerator. Every result is also
parsed back with the email package.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Sequence
from email import quoprimime
from email.generator import BytesGenerator
from email.message import MIMEPart
from urllib.parse import unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealmail.core.errors import CompositionError
from sealmail.core.mime import body as mime_body
from sealmail.core.mime.headers import WIRE_POLICY
from sealmail.core.mime.message import Attachment, OutgoingMessage
from sealmail.core.mime.wire import make_boundary
from tests.mime import mailcheck

SHORT_MEDIA_TYPES = [
    ("application", "pdf"),
    ("text", "csv"),
    ("image", "svg+xml"),
    ("application", "x-a!b#c$d&e^f_g.h"),
    ("application", "vnd.oasis.opendocument.spreadsheet-template"),
    ("application", "x'y*z%"),
]
# With "Content-Type: " in front, this media type fills more than a line.
DOCX = ("application", "vnd.openxmlformats-officedocument.wordprocessingml.document")
MEDIA_TYPES = [*SHORT_MEDIA_TYPES, DOCX]
# Characters that may go into a directly written file name, and some that
# make the email package quote or encode the name.
PLAIN_CHARACTERS = "aZ09 !#$%&'()*+,.:;<>@[]^_`{|}~-"
OTHER_CHARACTERS = '"=?äß€中\u2028\x85'


def email_package_header(name: str, maintype: str, subtype: str) -> bytes:
    """Return the attachment header fields as the email package writes them."""
    part = MIMEPart(policy=WIRE_POLICY)
    part.set_content(
        b"",
        maintype,
        subtype,
        disposition="attachment",
        filename=name,
        cte="base64",
        params={"name": name},
    )
    return b"".join(
        WIRE_POLICY.fold_binary(field, value) for field, value in part.raw_items()
    )


def check_attachment_header(name: str, maintype: str, subtype: str) -> None:
    header = mime_body.attachment_header(name, maintype, subtype)
    if b"*=" not in header:
        # A plain name is written as the email package writes it.
        assert header == email_package_header(name, maintype, subtype)
    # A media type cannot be folded, so its line may be longer.
    unfoldable = f"Content-Type: {maintype}/{subtype};".encode()
    for line in header.split(b"\r\n"):
        assert len(line) <= 78 or line == unfoldable, line
    part = mailcheck.parse(header + b"\r\n" + b"".join(mime_body.base64_body(b"data")))
    assert part.get_content_type() == f"{maintype}/{subtype}"
    assert part.get_content_disposition() == "attachment"
    assert part.get_payload(decode=True) == b"data"
    # get_filename() is not compared: it strips whitespace and <> from the
    # parameter.
    assert part["Content-Disposition"].params["filename"] == name
    assert part.get_param("name") == name


@pytest.mark.parametrize("length", range(1, 121))
@pytest.mark.parametrize(("maintype", "subtype"), MEDIA_TYPES)
def test_attachment_header_plain_name(length, maintype, subtype):
    name = (PLAIN_CHARACTERS * 4)[-length:]
    check_attachment_header(name, maintype, subtype)


@pytest.mark.parametrize("length", range(1, 121))
def test_attachment_header_non_ascii_name(length):
    name = ("Rechnung-März-€-" * 8)[:length]
    check_attachment_header(name, "application", "pdf")
    header = mime_body.attachment_header(name, "application", "pdf")
    if not name.isascii():
        assert b"filename*" in header
        assert b"name*" in header


@pytest.mark.parametrize(
    "name",
    [
        "invoice-4711.pdf",
        "Rechnung 2026-12 (Kopie).pdf",
        " leading and trailing spaces.pdf ",
        "two  spaces.pdf",
        "x" * 34 + ".pdf",
        "x" * 65,
        "x" * 66,
        'quote".pdf',
        "Übersicht März €.csv",
        mailcheck.LONG_NAME,
    ],
)
def test_attachment_header_named_case(name):
    check_attachment_header(name, "application", "pdf")


def test_attachment_header_encoded_word_name():
    # The email package would decode a name that looks like an RFC 2047
    # encoded word, and so would readers. RFC 2231 keeps it literal.
    name = "=?utf-8?q?encoded?=.pdf"
    header = mime_body.attachment_header(name, "application", "pdf")
    assert b"filename*=utf-8''%3D%3Futf-8%3Fq%3Fencoded%3F%3D.pdf" in header
    check_attachment_header(name, "application", "pdf")


def test_non_ascii_name_long_media_type():
    # Python 3.11's email package writes this media type as an RFC 2047
    # encoded word, which the header writer must not do.
    check_attachment_header("Vertragsübersicht.docx", *DOCX)
    header = mime_body.attachment_header("Vertragsübersicht.docx", *DOCX)
    assert b"=?" not in header


def test_rfc2231_sections_keep_characters_whole():
    name = "€" * 60
    header = mime_body.attachment_header(name, "application", "pdf")
    sections = re.findall(rb"filename\*\d+\*=([^;\r]*)", header)
    assert len(sections) > 2
    for section in sections:
        # Every section decodes on its own.
        value = section.decode().removeprefix("utf-8''")
        assert unquote(value, errors="strict") == "€" * (len(value) // 9)
    check_attachment_header(name, "application", "pdf")


@settings(max_examples=300, deadline=None)
@given(
    st.text(PLAIN_CHARACTERS + OTHER_CHARACTERS, min_size=1, max_size=120),
    st.sampled_from(SHORT_MEDIA_TYPES),
)
def test_attachment_header_matches_email_package(name, media_type):
    try:
        mime_body.check_filename(name)
    except CompositionError:
        return
    check_attachment_header(name, *media_type)


@pytest.mark.parametrize(
    "size", [0, 1, 2, 3, 56, 57, 58, 3647, 3648, 3649, 7296, 7297, 100 * 1024]
)
def test_base64_body_lines(size):
    data = os.urandom(size)
    encoded = b"".join(mime_body.base64_body(data))
    lines = encoded.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) == 76 for line in lines[:-2])
    assert 0 < len(lines[-2]) <= 76 or size == 0
    assert base64.b64decode(b"".join(lines), validate=True) == data
    # The email package's base64 lines, with CRLF line breaks.
    expected = base64.encodebytes(data).replace(b"\n", b"\r\n") or b"\r\n"
    assert encoded == expected


def reference_body(
    message: OutgoingMessage,
    hp: str | None = None,
    legacy_display: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Return the body as the email package builds and flattens the same tree."""
    text, html_body = mime_body.message_text(message)
    root_params = f'; hp="{hp}"; protected-headers="v1"' if hp else ""
    attachments = message.attachments

    def text_part(content: str, subtype: str, params: str) -> MIMEPart:
        if legacy_display:
            params += '; hp-legacy-display="1"'
        content = content.replace("\r\n", "\n").replace("\r", "\n")
        if not content.endswith("\n"):
            content += "\n"
        octets = content.encode("utf-8").decode("latin-1")
        payload = quoprimime.body_encode(octets, maxlinelen=76, eol="\n")
        if any(len(line) > 74 for line in re.findall(r"^From .*", payload, re.M)):
            payload = quoprimime.body_encode(octets, maxlinelen=74, eol="\n")
        payload = re.sub(r"^From ", "=46rom ", payload, flags=re.MULTILINE)
        part = MIMEPart(policy=WIRE_POLICY)
        part["Content-Type"] = f'text/{subtype}; charset="utf-8"{params}'
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(payload)
        return part

    def multipart(subtype: str, parts: list[MIMEPart], params: str) -> MIMEPart:
        part = MIMEPart(policy=WIRE_POLICY)
        boundary = f"=_sealmail.{subtype}"
        part["Content-Type"] = f'multipart/{subtype}{params}; boundary="{boundary}"'
        part.set_payload(parts)
        return part

    root = text_part(
        mime_body._with_legacy_text(text, legacy_display),
        "plain",
        root_params if html_body is None and not attachments else "",
    )
    if html_body is not None:
        html_part = text_part(
            mime_body._with_legacy_html(html_body, legacy_display), "html", ""
        )
        params = root_params if not attachments else ""
        root = multipart("alternative", [root, html_part], params)
    if attachments:
        parts = [root]
        for attachment in attachments:
            maintype, subtype = mime_body.split_content_type(
                attachment.content_type, attachment.filename
            )
            part = MIMEPart(policy=WIRE_POLICY)
            part.set_content(
                attachment.data,
                maintype,
                subtype,
                disposition="attachment",
                filename=attachment.filename,
                cte="base64",
                params={"name": attachment.filename},
            )
            if not attachment.data:
                # The composer writes one empty line where the content
                # manager writes nothing.
                part.set_payload("\n")
            parts.append(part)
        root = multipart("mixed", parts, root_params)
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=WIRE_POLICY, mangle_from_=False).flatten(root)
    return buffer.getvalue()


HARD_TEXT = mailcheck.HARD_TEXT + "CRLF\r\nline ends\n\n" + "From x" * 40 + "\n\n"
ATTACHMENTS = (
    Attachment("invoice-4711.pdf", "application/pdf", os.urandom(5000)),
    Attachment("Übersicht März €.csv", "text/csv", b""),
    Attachment(mailcheck.LONG_NAME, "Application/PDF", os.urandom(3648)),
)
LEGACY_SUBJECT = "Grüße <b> & 5 €"


@pytest.mark.parametrize("hp", [None, "cipher", "clear"])
@pytest.mark.parametrize("legacy", [(), (("Subject", LEGACY_SUBJECT),)])
@pytest.mark.parametrize("html", [None, "<html><body><p>Grüße</p></body></html>"])
@pytest.mark.parametrize("attachment_count", [0, 1, 3])
def test_render_entity_matches_email_package(hp, legacy, html, attachment_count):
    message = OutgoingMessage(
        sender=mailcheck.SENDER,
        to=mailcheck.RECIPIENT,
        subject=LEGACY_SUBJECT,
        text=HARD_TEXT,
        html=html,
        attachments=ATTACHMENTS[:attachment_count],
    )
    header = b"Subject: x\r\n"
    entity = mime_body.render_entity(header, message, hp=hp, legacy_display=legacy)
    assert entity == header + reference_body(message, hp, legacy)
    assert entity.endswith(b"\r\n")
    legacy_subject = LEGACY_SUBJECT if legacy else None
    mailcheck.check_entity(entity, message, legacy_subject=legacy_subject)


@pytest.mark.parametrize(
    "text",
    [
        "x" * 75 + "From " + "y" * 200 + "\n",
        "From " + "y" * 72 + "\n",
        "From " + "y" * 200 + "\nFrom us\n",
        "a\nFrom =\n" + "From " * 40 + "\n",
    ],
    ids=["soft break", "77 characters", "long line", "repeated"],
)
def test_from_escape_keeps_line_limit(text):
    message = OutgoingMessage(sender="a@b.test", to="c@d.test", subject="s", text=text)
    entity = mime_body.render_entity(b"", message)
    lines = entity.split(b"\r\n")
    assert max(len(line) for line in lines) <= 76
    assert not any(line.startswith(b"From ") for line in lines)
    part = mailcheck.parse(entity)
    assert part.get_content().replace("\r\n", "\n") == text


def test_render_entity_html_only():
    message = mailcheck.html_only_message()
    entity = mime_body.render_entity(b"", message)
    assert entity == reference_body(message)
    mailcheck.check_entity(entity, message)


def test_render_entity_rejects_invalid_hp():
    with pytest.raises(CompositionError, match="hp parameter"):
        mime_body.render_entity(b"", mailcheck.notification_message(), hp="both")


def test_mixed_entity_parses_back():
    boundary = make_boundary()
    text = [b'Content-Type: text/plain; charset="utf-8"\r\n\r\n', b"Hello\r\n"]
    attachment = Attachment("a.pdf", "application/pdf", os.urandom(300))
    parts = [text, mime_body.attachment_part(attachment)]
    entity = mime_body.mixed_entity(b"MIME-Version: 1.0\r\n", boundary, parts)
    assert entity.endswith(f"\r\n--{boundary}--\r\n".encode())
    parsed = mailcheck.parse(entity)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed.get_boundary() == boundary
    text_part, attachment_part = parsed.iter_parts()
    assert text_part.get_payload(decode=True) == b"Hello\r\n"
    assert attachment_part.get_filename() == "a.pdf"
    assert attachment_part.get_payload(decode=True) == attachment.data


def test_make_boundary_is_fresh():
    boundaries = {make_boundary() for _ in range(100)}
    assert len(boundaries) == 100
    for boundary in boundaries:
        assert re.fullmatch(r"=_sealmail_[0-9a-f]{24}", boundary)
