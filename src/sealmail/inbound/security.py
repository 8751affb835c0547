"""Security badges for staff, computed by sealmail from stored status, never from content."""

from __future__ import annotations

from dataclasses import dataclass

from sealmail.core.mime.inbound import contradicted_signers
from sealmail.inbound.models import InboundMessage, MessagePart

FAILURE_TEXT = {
    "no_key": "Encrypted to a key sealmail does not hold",
    "no_integrity": "Refused: no integrity protection, plaintext discarded",
    "tampered": "Refused: ciphertext was modified",
    "malformed": "Not valid OpenPGP data",
    "too_large": "Refused: decrypted data too large",
    "multiple_messages": "Refused: more than one OpenPGP message in one part",
}


@dataclass(frozen=True)
class Badge:
    """One status label; ``level`` is "good", "warn", "bad" or "info"."""

    level: str
    text: str


def _short(fingerprint: str | None) -> str:
    if not fingerprint:
        return "an unknown key"
    upper = fingerprint.upper()
    return " ".join(upper[i : i + 4] for i in range(0, len(upper), 4))


def signature_badge(signature: dict, contradicted: frozenset[str] = frozenset()) -> Badge:
    """Return the badge of one stored signature.

    ``contradicted`` contains the signer fingerprints that also made a
    signature that is not good over the same part (see
    :func:`~sealmail.core.mime.inbound.contradicted_signers`).
    """
    status = signature.get("status")
    signer = _short(signature.get("signer_fingerprint") or signature.get("key_id"))
    scope = "whole message" if signature.get("scope") == "message" else "this part only"
    if status == "good" and (signature.get("signer_fingerprint") or "").lower() in contradicted:
        return Badge(
            "bad",
            f"Not verified: {signer} made this good signature and also one that "
            f"fails ({scope})",
        )
    if status == "good":
        return Badge(
            "good" if scope == "whole message" else "warn",
            f"Good signature by {signer} ({scope})",
        )
    if status == "unknown_key":
        return Badge(
            "warn", f"Signature by {signer}, not a confirmed customer key ({scope})"
        )
    if status == "unchecked":
        return Badge(
            "warn", f"Signature by {signer} that could not be checked ({scope})"
        )
    if status in {"expired_key", "revoked_key"}:
        state = "expired" if status == "expired_key" else "revoked"
        return Badge("bad", f"Signature by {state} key {signer} ({scope})")
    return Badge("bad", f"Invalid signature by {signer} ({scope})")


def part_badges(part: MessagePart) -> list[Badge]:
    badges = []
    if part.encryption == "decrypted":
        where = {"inline": "inline PGP", "attachment": "encrypted attachment"}.get(
            part.kind, "PGP/MIME"
        )
        badges.append(Badge("good", f"Decrypted ({where})"))
    elif part.encryption == "failed":
        failure = part.failure or {}
        text = FAILURE_TEXT.get(failure.get("reason", ""), "Decryption failed")
        key_ids = failure.get("recipient_key_ids") or []
        if key_ids:
            text += ": " + ", ".join(key_id.upper() for key_id in key_ids)
        badges.append(Badge("bad", text))
    else:
        badges.append(Badge("warn", "Not encrypted"))
    if not part.signatures:
        badges.append(Badge("info", "Not signed"))
    contradicted = contradicted_signers(
        (signature.get("status"), signature.get("signer_fingerprint"))
        for signature in part.signatures
    )
    badges.extend(signature_badge(signature, contradicted) for signature in part.signatures)
    return badges


def message_badges(message: InboundMessage) -> list[Badge]:
    if message.state == InboundMessage.State.RECEIVED:
        return [Badge("info", "Received, not parsed yet")]
    if message.state == InboundMessage.State.FAILED:
        return [Badge("bad", "Parsing failed; only the raw message is available")]
    badges = []
    encryption = {
        "full": Badge("good", "Encrypted"),
        "partial": Badge(
            "bad", "Partially encrypted: some parts were sent in the clear"
        ),
        "none": Badge("warn", "Not encrypted"),
    }.get(message.encryption)
    if encryption:
        badges.append(encryption)
    if message.failures:
        badges.append(
            Badge("bad", f"{len(message.failures)} part(s) could not be decrypted")
        )
    if message.signed_by_customer:
        badges.append(
            Badge(
                "good", f"Signed by the customer ({_short(message.signer_fingerprint)})"
            )
        )
    else:
        badges.append(Badge("warn", "Not signed by the customer as a whole"))
    if message.protected_headers:
        badges.append(Badge("info", "Subject and sender from inside the encryption"))
    if message.repaired_mixed_up:
        badges.append(Badge("info", "Repaired the Exchange/Outlook PGP/MIME structure"))
    if message.defects:
        badges.append(
            Badge("info", f"{len(message.defects)} structure defect(s) recorded")
        )
    return badges
