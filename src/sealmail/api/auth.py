"""Bearer-token authentication for the JSON API."""

from __future__ import annotations

import logging

from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from sealmail.api.models import ApiToken, hash_token

logger = logging.getLogger(__name__)


class TokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        try:
            api_token = ApiToken.objects.get(token_hash=hash_token(token), active=True)
        except ApiToken.DoesNotExist:
            logger.warning("API request with an unknown or revoked token rejected")
            return None
        ApiToken.objects.filter(pk=api_token.pk).update(last_used=timezone.now())
        return api_token
