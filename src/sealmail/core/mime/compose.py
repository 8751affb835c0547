"""Compose a logical message into the exact bytes that go on the wire.

NOTE: contract only; the composer replaces this stub.
"""

from __future__ import annotations

from collections.abc import Sequence

import pysequoia

from sealmail.core.mime.message import ComposedMessage, Format, OutgoingMessage
from sealmail.core.pgp.ops import ProviderSigner


def compose(
    message: OutgoingMessage,
    format: Format,
    *,
    recipients: Sequence[pysequoia.Cert] = (),
    signer: ProviderSigner | None = None,
    autocrypt_certificate: pysequoia.Cert | None = None,
    hide_subject: bool = True,
) -> ComposedMessage:
    """Return ``message`` as wire bytes in ``format``; never falls back to plaintext."""
    raise NotImplementedError("the composer is not built yet")
