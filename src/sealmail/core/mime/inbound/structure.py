"""Split a raw MIME entity into headers, body and child parts without re-serialising.

Signatures must be checked over the bytes as they were received, so the
parser works on byte ranges of the original message and uses the ``email``
package only to read headers and to undo transfer encodings of leaves.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser

# compat32 leaves header values unparsed until they are read, which makes
# parsing several times faster than with email.policy.default. Entity.header()
# decodes the few headers the parser reads.
POLICY = email.policy.compat32
_HEADER_PARSER = BytesParser(policy=POLICY)
_BODY_SEPARATOR = re.compile(rb"\r?\n\r?\n")


@dataclass
class Entity:
    """One MIME entity: its raw bytes, parsed headers and raw body."""

    raw: bytes
    headers: Message
    body: bytes
    defects: list[str] = field(default_factory=list)

    @property
    def content_type(self) -> str:
        try:
            return self.headers.get_content_type()
        except Exception:  # email raises assorted errors on hostile headers
            return "text/plain"

    def param(self, name: str) -> str | None:
        try:
            value = self.headers.get_param(name)
        except Exception:  # email raises assorted errors on hostile headers
            return None
        if isinstance(value, tuple):
            value = email.utils.collapse_rfc2231_value(value)
        return str(value) if value is not None else None

    def header(self, name: str) -> str:
        """Return a header as text with RFC 2047 words decoded; ``""`` when missing."""
        value = self.headers.get(name)
        if value is None:
            return ""
        try:
            text = str(make_header(decode_header(str(value))))
        except Exception:  # email raises assorted errors on hostile headers
            text = str(value)
        return clean_text(text)


def clean_text(text: str) -> str:
    """Replace undecodable bytes (kept as surrogates by ``email``) and NUL characters."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text.replace("\x00", "\ufffd")


def parse_entity(raw: bytes) -> Entity:
    """Parse ``raw`` into headers and body, recording header defects."""
    match = _BODY_SEPARATOR.search(raw)
    if raw.startswith((b"\r\n", b"\n")):
        head, body = b"", raw[2 if raw.startswith(b"\r\n") else 1 :]
    elif match is None:
        head, body = raw, b""
    else:
        head, body = raw[: match.start()], raw[match.end() :]
    headers = _HEADER_PARSER.parsebytes(head + b"\r\n\r\n", headersonly=True)
    defects = [type(defect).__name__ for defect in headers.defects]
    return Entity(raw, headers, body, defects)


def split_multipart(
    body: bytes, boundary: str, max_parts: int
) -> tuple[list[bytes], list[str]]:
    """Return the raw bytes of each child between the ``boundary`` delimiters.

    The line break before a delimiter belongs to the delimiter (RFC 2046,
    section 5.1.1), so each child is exactly the bytes a signature covers.
    """
    defects: list[str] = []
    delimiter = re.compile(
        rb"(?m)^--"
        + re.escape(boundary.encode("ascii", "replace"))
        + rb"(--)?[ \t]*\r?$"
    )
    children: list[bytes] = []
    start: int | None = None
    closed = False
    for match in delimiter.finditer(body):
        if start is not None:
            end = match.start()
            if body[end - 2 : end] == b"\r\n":
                end -= 2
            elif body[end - 1 : end] == b"\n":
                end -= 1
            children.append(body[start : max(start, end)])
            if len(children) >= max_parts:
                defects.append(f"more than {max_parts} parts; the rest was not parsed")
                return children, defects
        if match.group(1):
            closed = True
            break
        start = match.end()
        if body[start : start + 2] == b"\r\n":
            start += 2
        elif body[start : start + 1] == b"\n":
            start += 1
    if start is None:
        defects.append(f"no part delimited by boundary {boundary!r}")
    elif not closed:
        defects.append(f"the closing boundary {boundary!r} is missing")
        children.append(body[start:])
    return children, defects


def decoded_payload(entity: Entity) -> tuple[bytes, list[str]]:
    """Undo the Content-Transfer-Encoding of a leaf, recording defects instead of raising."""
    message = _HEADER_PARSER.parsebytes(entity.raw)
    try:
        payload = message.get_payload(decode=True)
    except Exception as exc:  # email raises assorted errors on hostile input
        return entity.body, [f"transfer encoding could not be undone: {exc}"]
    defects = [type(defect).__name__ for defect in message.defects]
    if isinstance(payload, bytes):
        return payload, defects
    return entity.body, defects


def decode_text(data: bytes, charsets: list[str | None]) -> tuple[str, str]:
    """Decode ``data`` with the first charset that works, ending with Windows-1252.

    Returns the text and the charset used; never raises, because the last
    resort replaces the few bytes that Windows-1252 leaves undefined.
    """
    for charset in [*charsets, "utf-8"]:
        if not charset:
            continue
        try:
            return data.decode(charset), charset.lower()
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("windows-1252", errors="replace"), "windows-1252"
