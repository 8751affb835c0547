"""Build each customer-side OpenPGP engine with one customer key loaded."""

from __future__ import annotations

from pathlib import Path

from tests.mime.conftest import CustomerKey, Provider
from tests.mime.mailcheck import Peer
from tests.peers.gnupg import GnuPG
from tests.peers.openpgpjs import OpenPgpJs
from tests.peers.results import Decryption, Verification
from tests.peers.rnp import Rnp
from tests.peers.sop import Sop
from tests.peers.sq import Sq

# OpenPGP hash algorithm IDs, as the hash field of GnuPG's VALIDSIG status line.
HASH_NAMES = {
    "1": "MD5",
    "2": "SHA1",
    "3": "RIPEMD160",
    "8": "SHA256",
    "9": "SHA384",
    "10": "SHA512",
    "11": "SHA224",
    "12": "SHA3-256",
    "14": "SHA3-512",
}


class GnuPGPeer:
    """GnuPG 2.2 behind the same decrypt/verify interface as the other peers."""

    def __init__(self, gpg: GnuPG, scratch: Path) -> None:
        self.gpg = gpg
        self.scratch = scratch

    def decrypt(self, ciphertext: bytes) -> Decryption:
        result = self.gpg.decrypt(ciphertext, check=False)
        assert "DECRYPTION_OKAY" in result.status, result.stderr
        return Decryption(result.stdout, _signatures(result.status, result.stderr))

    def verify_detached(self, data: bytes, signature: bytes) -> Verification:
        result = self.gpg.verify_detached(data, signature, self.scratch)
        signatures = _signatures(result.status, result.stderr)
        return signatures[0] if signatures else Verification(False, result.stderr)


def _signatures(status: list[str], stderr: str) -> list[Verification]:
    results = []
    for line in status:
        fields = line.split()
        if fields[0] == "VALIDSIG":
            results.append(Verification(True, stderr, HASH_NAMES.get(fields[8])))
        elif fields[0] in ("BADSIG", "ERRSIG", "EXPSIG", "REVKEYSIG"):
            results.append(Verification(False, stderr))
    return results


def make_peer(name: str, key: CustomerKey, provider: Provider, home: Path) -> Peer:
    """Return peer ``name`` with ``key``'s secret and the provider certificate."""
    if name == "gpg":
        assert key.gnupg is not None, f"GnuPG 2.2 cannot read the {key.name} key"
        home.mkdir(parents=True, exist_ok=True)
        return GnuPGPeer(key.gnupg, home)
    peer: Sq | Rnp | OpenPgpJs | Sop
    if name == "sq":
        peer = Sq(home)
    elif name == "rnp":
        peer = Rnp(home)
    elif name == "openpgpjs":
        peer = OpenPgpJs()
    else:
        peer = Sop(name, home)
    peer.add_secret_key(key.armored_secret)
    peer.add_certificate(provider.armored_certificate)
    return peer
