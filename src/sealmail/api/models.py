from __future__ import annotations

import hashlib
import secrets

from django.db import models

TOKEN_PREFIX = "sm_"


def hash_token(token: str) -> str:
    """Return the stored form of an API token: its SHA-256 hex digest."""
    return hashlib.sha256(token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token of one calling system; only its hash is stored."""

    name = models.CharField(max_length=100, unique=True)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)
    active = models.BooleanField(default=True)

    class Meta:
        verbose_name = "API token"

    def __str__(self) -> str:
        return self.name

    @classmethod
    def issue(cls, name: str) -> tuple[ApiToken, str]:
        """Create a token for ``name`` and return it with the clear token, shown once."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        return cls.objects.create(name=name, token_hash=hash_token(token)), token
