"""Parse inbound mail: PGP/MIME and inline PGP, per-part security status."""

from sealmail.core.mime.inbound.model import (
    DecryptionFailure,
    Encryption,
    MessageEncryption,
    ParsedMessage,
    Part,
    Scope,
    Signature,
    SignatureStatus,
    contradicted_signers,
)
from sealmail.core.mime.inbound.openpgp import OpenPGP, SequoiaOpenPGP
from sealmail.core.mime.inbound.parse import Limits, parse_message

__all__ = [
    "DecryptionFailure",
    "Encryption",
    "Limits",
    "MessageEncryption",
    "OpenPGP",
    "ParsedMessage",
    "Part",
    "Scope",
    "SequoiaOpenPGP",
    "Signature",
    "SignatureStatus",
    "contradicted_signers",
    "parse_message",
]
