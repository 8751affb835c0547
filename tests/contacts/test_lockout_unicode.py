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


def test_user_key_matches_django_login_name() -> None:
    from sealmail.contacts.ratelimit import user_key

    assert {user_key(name) for name in VARIANTS} == {"alice"}
    assert user_key("  ALICE\t") == "alice"
    # NFKC turns the ligature into two letters, as Django's UsernameField does.
    assert user_key("ﬁona") == "fiona"


def test_admin_lockout_unicode_variants(settings, django_user_model) -> None:
    settings.SEALMAIL_LOGIN_MAX_FAILURES = 1
    django_user_model.objects.create_superuser("staff", "staff@provider.test", PASSWORD)
    spellings = ["ｓtaff", "sｔaff", "stａff", "staｆf"]
    admin_login = reverse("admin:login")
    for number, name in enumerate(spellings):
        Client(REMOTE_ADDR=f"203.0.113.{40 + number}").post(
            admin_login, {"username": name, "password": "wrong password"}
        )
    client = Client(REMOTE_ADDR="203.0.113.98")
    locked = client.post(admin_login, {"username": "staff", "password": PASSWORD})
    assert b"Too many failed logins" in locked.content
    assert "_auth_user_id" not in client.session


def test_long_user_name_fits_bucket(world: dict[str, Any], settings) -> None:
    """A user name of the maximum length still fits the bucket column.

    "İ" lower-cases to two characters, so the key is twice as long as the
    name, and an IPv6 client address makes the bucket longer still.
    """
    from sealmail.contacts.models import RateLimitHit

    settings.SEALMAIL_LOGIN_MAX_FAILURES = 1
    name = "İ" * 150
    client = Client(REMOTE_ADDR="2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
    first = client.post(reverse("login"), {"username": name, "password": "x"})
    assert first.status_code == 200
    buckets = list(RateLimitHit.objects.values_list("bucket", flat=True))
    assert len(buckets) == 3
    assert max(len(bucket) for bucket in buckets) <= 200
    assert len(set(buckets)) == 3
    again = client.post(reverse("login"), {"username": name, "password": "x"})
    assert b"Too many failed logins" in again.content


def test_reset_mails_limited_per_address(world, sent) -> None:
    """Reset mails to one address are limited across clients and spellings."""
    from sealmail.contacts.accounts import RESET_LIMIT_ADDRESS

    spellings = ["alice@customer.test", "ALICE@customer.test", " Alice@Customer.Test"]
    for number in range(RESET_LIMIT_ADDRESS + 2):
        response = Client(REMOTE_ADDR=f"203.0.113.{60 + number}").post(
            reverse("password_reset"), {"email": spellings[number % len(spellings)]}
        )
        assert response.status_code == 302
        assert response.url == reverse("password_reset_done")
    assert len(sent.calls) == RESET_LIMIT_ADDRESS
    other = Client(REMOTE_ADDR="203.0.113.99").post(
        reverse("password_reset"), {"email": "bob@beta.test"}
    )
    assert other.status_code == 302
    assert len(sent.calls) == RESET_LIMIT_ADDRESS + 1
