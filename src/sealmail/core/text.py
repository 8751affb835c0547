"""Show untrusted text, such as the user IDs on a customer's key, safely."""

from __future__ import annotations

import unicodedata


def printable(text: str) -> str:
    """Return ``text`` with control and format characters written as escapes.

    User IDs are chosen by the key's creator: a newline, a terminal escape
    or a right-to-left override in one could fake a line of a report or
    reorder what a reader sees. Categories Cc, Cf, Cs, Co and Cn are escaped.
    """
    if text.isprintable():
        return text
    pieces = []
    for character in text:
        if unicodedata.category(character).startswith("C"):
            code = ord(character)
            pieces.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            pieces.append(character)
    return "".join(pieces)
