"""The provider key store of this instance, in ``settings.KEYS_DIR``."""

from __future__ import annotations

from django.conf import settings

from sealmail.core.pgp.keystore import KeyStore


def get_keystore() -> KeyStore:
    return KeyStore(settings.KEYS_DIR)
