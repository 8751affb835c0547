"""Single-use confirmation tokens: the link carries the token, the database its HMAC."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

TOKEN_BYTES = 32


def new_token() -> str:
    """Return a fresh URL-safe token with 256 bits of randomness."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    """Return the stored form of ``token``: HMAC-SHA256 keyed with a derived secret.

    The key is derived from Django's SECRET_KEY, so a copy of the database
    alone cannot turn stored hashes into working links.
    """
    key = hashlib.sha256(
        b"sealmail confirmation token\0" + settings.SECRET_KEY.encode()
    ).digest()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def token_matches(stored_hash: str, token: str) -> bool:
    """Compare ``token`` with ``stored_hash`` in constant time."""
    return hmac.compare_digest(stored_hash, hash_token(token))
