"""The per-address password reset limit and the addresses Django matches.

Django's PasswordResetForm.get_users finds users by ``email__iexact`` and
then keeps those whose address equals the input after NFKC and casefold().
PostgreSQL's UPPER() maps the Greek final sigma (ς) and σ to Σ, so a reset
request for one spelling mails the user stored with the other.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.forms import _unicode_ci_compare

from sealmail.contacts.ratelimit import user_key

# Pairs that Django's reset form treats as one address on PostgreSQL.
# "ß" and "SS" are not among them: UPPER('ß') is 'ß' there, so iexact
# finds no user.
SAME_ADDRESS = [
    ("σοφια@example.gr", "ςοφια@example.gr"),
    ("σοφια@example.gr", "ΣΟΦΙΑ@example.gr"),
]


@pytest.mark.parametrize(("stored", "requested"), SAME_ADDRESS)
def test_reset_key_same_for_django_match(stored: str, requested: str) -> None:
    assert _unicode_ci_compare(stored, requested)
    assert user_key(stored) == user_key(requested)
