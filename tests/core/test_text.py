from __future__ import annotations

import pytest

from sealmail.core.text import printable


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Alice <alice@example.org>", "Alice <alice@example.org>"),
        ("Grüße 5 €", "Grüße 5 €"),
        ("a\nfingerprint AAAA", "a\\x0afingerprint AAAA"),
        ("\x1b[2Jclear", "\\x1b[2Jclear"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),
        ("tab\there", "tab\\x09here"),
    ],
)
def test_printable_escapes_controls(text, expected):
    assert printable(text) == expected
