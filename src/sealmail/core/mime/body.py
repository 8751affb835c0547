"""Build the MIME body tree of a message with the ``email`` package.

The tree is 7-bit clean, so it can be signed and sent unchanged. Text parts
are quoted-printable, which also encodes trailing whitespace. A line that
starts with ``From `` is written ``=46rom `` so no mbox tool rewrites it.
Attachments are base64.
"""

from __future__ import annotations

import binascii
import html
import io
import re
from collections.abc import Sequence
from email import quoprimime
from email.generator import BytesGenerator
from email.message import MIMEPart

from sealmail.core.errors import CompositionError
from sealmail.core.mime.headers import WIRE_POLICY
from sealmail.core.mime.htmltext import html_to_text
from sealmail.core.mime.message import Attachment, OutgoingMessage

_FROM_LINE = re.compile(r"^From ", re.MULTILINE)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MIME_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_LEGACY_DISPLAY_CLASS = "header-protection-legacy-display"
_QP_LINE_LENGTH = 76
_BASE64_LINE_LENGTH = 76
# Fixed boundaries keep the Content-Type headers cacheable. They are safe
# because every leaf part is quoted-printable or base64, and neither can
# produce a line starting with "--=_" (base64 has no "-" or "_", and
# quoted-printable writes "=" only before two hex digits or a line end).
# Neither boundary is a prefix of the other or of the random outer ones.
_BOUNDARIES = {"mixed": "=_sealmail.mixed", "alternative": "=_sealmail.alternative"}


def build_body(
    message: OutgoingMessage,
    *,
    hp: str | None = None,
    legacy_display: Sequence[tuple[str, str]] = (),
) -> MIMEPart:
    """Return the body tree: text and HTML alternatives, then attachments.

    ``hp`` sets the RFC 9788 ``hp`` parameter ("cipher" or "clear") and
    ``protected-headers="v1"`` on the root part. ``legacy_display`` lists the
    (name, value) header fields that the outer header hides. Each text part
    then starts with them, and its Content-Type carries
    ``hp-legacy-display="1"``, so clients without header protection still
    show them.
    """
    if hp not in (None, "cipher", "clear"):
        raise CompositionError(
            f"hp parameter {hp!r} is invalid; use 'cipher' or 'clear'"
        )
    text, html_body = message_text(message)
    attachments = message.attachments
    # The parameters belong to the root part, whichever part that is.
    # protected-headers="v1" is the older marker from the Autocrypt
    # protected-headers draft, which notmuch 0.37, Thunderbird and K-9 Mail
    # read to show the protected Subject.
    root_params = f'; hp="{hp}"; protected-headers="v1"' if hp else ""
    text_params = root_params if html_body is None and not attachments else ""
    alternative_params = root_params if not attachments else ""

    root = _text_part(
        _with_legacy_text(text, legacy_display), "plain", legacy_display, text_params
    )
    if html_body is not None:
        html_part = _text_part(
            _with_legacy_html(html_body, legacy_display), "html", legacy_display, ""
        )
        root = _multipart("alternative", [root, html_part], alternative_params)
    if attachments:
        parts = [root] + [attachment_part(attachment) for attachment in attachments]
        root = _multipart("mixed", parts, root_params)
    return root


def message_text(message: OutgoingMessage) -> tuple[str, str | None]:
    """Return the plain text and the HTML of ``message``.

    The text is converted from the HTML when only HTML was given.
    """
    if message.text is None and message.html is None:
        raise CompositionError(
            f"message {message.subject!r} has neither text nor HTML; give at least one"
        )
    if message.text is not None:
        return message.text, message.html
    assert message.html is not None
    return html_to_text(message.html), message.html


def attachment_part(attachment: Attachment) -> MIMEPart:
    """Return a base64 attachment part named by RFC 2231 parameters."""
    name = attachment.filename
    check_filename(name)
    maintype, subtype = split_content_type(attachment.content_type, name)
    part = MIMEPart(policy=WIRE_POLICY)
    # The content manager writes the headers, with RFC 2231 parameters for
    # long or non-ASCII names. The payload is encoded in one call because
    # the manager's line-by-line base64 costs more than the encryption.
    part.set_content(
        b"",
        maintype,
        subtype,
        disposition="attachment",
        filename=name,
        cte="base64",
        params={"name": name},
    )
    encoded = binascii.b2a_base64(bytes(attachment.data), newline=False).decode("ascii")
    lines = [
        encoded[i : i + _BASE64_LINE_LENGTH]
        for i in range(0, len(encoded), _BASE64_LINE_LENGTH)
    ]
    part.set_payload("\n".join(lines) + "\n")
    return part


def check_filename(name: str) -> None:
    """Raise CompositionError unless ``name`` is a plain file name."""
    if not name or not name.strip():
        raise CompositionError("an attachment has an empty file name; give it a name")
    if any(ch in name for ch in "/\\") or any(
        ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name
    ):
        raise CompositionError(
            f"attachment file name {name!r} contains a path separator or a control "
            "character; give the bare file name"
        )


def split_content_type(content_type: str, filename: str) -> tuple[str, str]:
    """Split ``type/subtype`` into its two lower-case tokens."""
    maintype, slash, subtype = content_type.strip().partition("/")
    if (
        not slash
        or not _MIME_TOKEN.fullmatch(maintype)
        or not _MIME_TOKEN.fullmatch(subtype)
        or maintype.lower() in ("multipart", "message")
    ):
        raise CompositionError(
            f"attachment {filename!r} has the invalid content type {content_type!r}; "
            "use a leaf media type such as application/pdf"
        )
    return maintype.lower(), subtype.lower()


class _WireGenerator(BytesGenerator):
    """A BytesGenerator that writes each body in one piece.

    The stock generator writes a body line by line, which for a 100 KB
    attachment takes longer than encrypting it. The output is the same:
    every CR, LF or CRLF becomes the policy's line separator.
    """

    def _write_lines(self, lines: str) -> None:
        if not lines:
            return
        if "\r" in lines:
            lines = _LINE_BREAK.sub("\n", lines)
        self.write(lines.replace("\n", self._NL))


def serialize(part: MIMEPart) -> bytes:
    """Return ``part`` as CRLF bytes that always end with a line break.

    The generator writes a multipart's closing delimiter without a line
    break; the break is added here so it belongs to the entity.
    """
    buffer = io.BytesIO()
    try:
        _WireGenerator(buffer, policy=WIRE_POLICY, mangle_from_=False).flatten(part)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise CompositionError(f"the message body cannot be serialized: {exc}") from exc
    data = buffer.getvalue()
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


def _text_part(
    text: str, subtype: str, legacy_display: Sequence[tuple[str, str]], params: str
) -> MIMEPart:
    if legacy_display:
        params += '; hp-legacy-display="1"'
    # Line endings become LF here; the generator writes them as CRLF.
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.endswith("\n"):
        text += "\n"
    try:
        octets = text.encode("utf-8").decode("latin-1")
    except UnicodeError as exc:
        raise CompositionError(
            f"the text/{subtype} body cannot be encoded: {exc}"
        ) from exc
    # body_encode works on characters below 256, hence the latin-1 view of
    # the UTF-8 octets; it also encodes whitespace at the end of a line.
    payload = quoprimime.body_encode(octets, maxlinelen=_QP_LINE_LENGTH, eol="\n")
    if "From " in payload:
        payload = _FROM_LINE.sub("=46rom ", payload)
    part = MIMEPart(policy=WIRE_POLICY)
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"{params}'
    part["Content-Transfer-Encoding"] = "quoted-printable"
    part.set_payload(payload)
    return part


def _multipart(subtype: str, parts: list[MIMEPart], params: str) -> MIMEPart:
    part = MIMEPart(policy=WIRE_POLICY)
    part["Content-Type"] = (
        f'multipart/{subtype}{params}; boundary="{_BOUNDARIES[subtype]}"'
    )
    part.set_payload(parts)
    return part


def _with_legacy_text(text: str, legacy_display: Sequence[tuple[str, str]]) -> str:
    if not legacy_display:
        return text
    lines = "".join(f"{name}: {value}\n" for name, value in legacy_display)
    return f"{lines}\n{text}"


def _with_legacy_html(body: str, legacy_display: Sequence[tuple[str, str]]) -> str:
    if not legacy_display:
        return body
    # RFC 9788 shows the fields as preformatted lines inside a marked div.
    lines = "\n".join(
        f"{html.escape(name)}: {html.escape(value)}" for name, value in legacy_display
    )
    element = f'<div class="{_LEGACY_DISPLAY_CLASS}"><pre>{lines}</pre></div>\n'
    match = re.search(r"<body\b[^>]*>", body, re.IGNORECASE)
    if match is None:
        return element + body
    return body[: match.end()] + element + body[match.end() :]
