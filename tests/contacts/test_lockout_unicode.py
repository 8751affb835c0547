"""Login lockout when the user name is written in other Unicode forms."""

from __future__ import annotations

import unicodedata
from typing import Any

from django.test import Client
from django.urls import reverse

from tests.contacts.conftest import PASSWORD

# Each variant has one fullwidth letter. Django's UsernameField applies NFKC,
# so every variant logs in as "alice".
VARIANTS = ["ａlice", "aｌice", "alｉce", "aliｃe", "alicｅ", "ＡＬＩＣＥ".lower()]


def test_variants_normalize_to_alice() -> None:
    assert {unicodedata.normalize("NFKC", name) for name in VARIANTS} == {"alice"}


def test_lockout_unicode_variants_one_user(
    world: dict[str, Any], settings
) -> None:
    """The per-user limit that stops guessing from many addresses must hold.

    test_login_locks_across_addresses locks alice after 4 failures from 4
    addresses. Writing the name differently each time must not reset that.
    """
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 1
    for number, name in enumerate(VARIANTS[:4]):
        Client(REMOTE_ADDR=f"203.0.113.{20 + number}").post(
            reverse("login"), {"username": name, "password": "wrong password"}
        )
    locked = Client(REMOTE_ADDR="203.0.113.99").post(
        reverse("login"), {"username": VARIANTS[4], "password": PASSWORD}
    )
    assert locked.status_code != 302, "the fifth guess logged in"
    assert b"Too many failed logins" in locked.content
