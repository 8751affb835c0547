"""The provider key store of this instance, in ``settings.KEYS_DIR``."""

from __future__ import annotations

import threading
from pathlib import Path

from django.conf import settings

from sealmail.core.pgp.keystore import KeyStore

_stores: dict[Path, KeyStore] = {}
_lock = threading.Lock()


def get_keystore() -> KeyStore:
    """Return this process's :class:`KeyStore` for ``settings.KEYS_DIR``.

    The instance is shared, so unlocked signers stay cached between calls;
    the store itself reloads when the key directory changes.
    """
    directory = Path(settings.KEYS_DIR).resolve()
    store = _stores.get(directory)
    if store is None:
        with _lock:
            store = _stores.setdefault(directory, KeyStore(directory))
    return store


def provider_user_ids() -> list[str]:
    """Return the user IDs of a new provider key: the sender and every role address."""
    addresses = [settings.SEALMAIL_FROM.lower()]
    for address in settings.SEALMAIL_ROLE_ADDRESSES:
        if address.lower() not in addresses:
            addresses.append(address.lower())
    return [f"<{address}>" for address in addresses]
