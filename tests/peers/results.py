"""What an OpenPGP peer reports after decrypting or verifying."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Verification:
    """One signature as a peer judged it."""

    valid: bool
    detail: str  # the peer's own words, for assertion messages
    hash_algorithm: str | None = (
        None  # upper case, e.g. "SHA512", when the peer reports it
    )


@dataclass
class Decryption:
    plaintext: bytes
    signatures: list[Verification] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return bool(self.signatures) and all(sig.valid for sig in self.signatures)
