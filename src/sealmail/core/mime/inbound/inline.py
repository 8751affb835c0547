"""Inline PGP in text parts: find armored blocks and normalise what mail clients did.

Mail clients and gateways damage armor in transit: they turn spaces into
non-breaking spaces, change line endings and add trailing spaces. These
helpers undo exactly that before the armor reaches the OpenPGP layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NBSP = re.compile(rb"\xc2\xa0|\xa0")
_BEGIN = re.compile(
    rb"(?m)^[ \t]*(?:\xc2\xa0|\xa0)*-----BEGIN PGP (MESSAGE|SIGNED MESSAGE)-----"
)
_END = re.compile(
    rb"(?m)^[ \t]*(?:\xc2\xa0|\xa0)*-----END PGP (?:MESSAGE|SIGNATURE)-----"
)
_ARMOR_LINE = re.compile(rb"^\s*-----(?:BEGIN|END) PGP [A-Z ]+-----\s*$")
_CHARSET = re.compile(rb"(?mi)^Charset:[ \t]*([A-Za-z0-9._:-]+)[ \t]*$")


@dataclass(frozen=True)
class Segment:
    """A stretch of a text part: plain text, an encrypted block or a signed block."""

    kind: str  # "plain", "encrypted" or "signed"
    data: bytes


def contains_armor(data: bytes) -> bool:
    return b"-----BEGIN PGP " in data


def split_segments(data: bytes) -> list[Segment]:
    """Split a decoded text part into plain stretches and armored blocks.

    Each search continues from the previous match, so the scan stays linear
    even for a part with many unterminated BEGIN lines.
    """
    segments: list[Segment] = []
    position = 0
    while True:
        begin = _BEGIN.search(data, position)
        if begin is None:
            break
        end = _END.search(data, begin.end())
        if end is None:
            break
        line_end = data.find(b"\n", end.end())
        block_end = len(data) if line_end == -1 else line_end
        if begin.start() > position:
            segments.append(Segment("plain", data[position : begin.start()]))
        kind = "encrypted" if begin.group(1) == b"MESSAGE" else "signed"
        segments.append(Segment(kind, data[begin.start() : block_end]))
        position = block_end
    if position < len(data):
        segments.append(Segment("plain", data[position:]))
    return segments


def message_blocks(data: bytes) -> list[bytes]:
    """Return each armored ``PGP MESSAGE`` block in ``data``, in order."""
    return [
        segment.data for segment in split_segments(data) if segment.kind == "encrypted"
    ]


def normalise_encrypted(block: bytes) -> bytes:
    """Return an armored message with NBSP, CRLF and stray spaces removed.

    Inside ``PGP MESSAGE`` armor no line may carry leading or trailing
    white space, so every line is stripped.
    """
    text = _NBSP.sub(b" ", block).replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return b"\n".join(line.strip() for line in text.split(b"\n")) + b"\n"


def normalise_signed(block: bytes) -> bytes:
    """Return a cleartext-signed block with LF line endings and no trailing spaces.

    Trailing white space is not part of what a cleartext signature covers
    (RFC 4880, section 7.1), so removing it cannot change the outcome.
    Non-breaking spaces are replaced only on the armor lines because inside
    the signed text they are content.
    """
    text = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = []
    for line in text.split(b"\n"):
        line = line.rstrip(b" \t")
        if _ARMOR_LINE.match(_NBSP.sub(b" ", line)):
            line = _NBSP.sub(b" ", line).strip()
        lines.append(line)
    return b"\n".join(lines) + b"\n"


def armor_charset(block: bytes) -> str | None:
    """Return the ``Charset`` armor header of ``block``, if it has one."""
    head = block.split(b"\n\n", 1)[0]
    match = _CHARSET.search(head)
    return match.group(1).decode("ascii") if match else None
