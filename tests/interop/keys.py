"""The recipient key kinds of the interop matrix, made the way customers make them.

Every v4 key comes from GnuPG 2.2 in its own home directory, because that is
what most customers paste into the portal. GnuPG 2.2 cannot make v6 (RFC 9580)
keys, so pysequoia makes that one.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pysequoia

from tests.peers.gnupg import GnuPG

# GnuPG's --faked-system-time for the subkey that has expired: it was made
# on this day and lived for one day.
EXPIRED_SUBKEY_TIME = "20240101T120000"


@dataclass
class RecipientKey:
    """A customer's key pair as every peer gets it."""

    kind: str
    description: str
    certificate: pysequoia.Cert
    armored_secret: bytes
    armored_certificate: bytes
    # GnuPG home holding the secret key and the provider certificate; None
    # when GnuPG 2.2 cannot read the key (v6).
    gnupg: GnuPG | None
    # Key IDs (upper-case hex) of encryption subkeys that must receive the
    # session key, and of those that must not because they expired.
    live_encryption_key_ids: set[str] = field(default_factory=set)
    expired_encryption_key_ids: set[str] = field(default_factory=set)

    @property
    def name(self) -> str:
        """The kind, under the name the peer factory uses in its messages."""
        return self.kind


def _encryption_subkeys(gpg: GnuPG, uid: str) -> tuple[set[str], set[str]]:
    """Return the live and the expired encryption subkey IDs of ``uid``'s key."""
    listing = gpg.run("--with-colons", "--list-keys", uid).stdout.decode()
    live, expired = set(), set()
    for line in listing.splitlines():
        fields = line.split(":")
        if fields[0] != "sub" or "e" not in fields[11]:
            continue
        (expired if fields[1] == "e" else live).add(fields[4].upper())
    return live, expired


def _from_gnupg(gpg: GnuPG, kind: str, description: str, uid: str) -> RecipientKey:
    armored = gpg.export(uid)
    live, expired = _encryption_subkeys(gpg, uid)
    return RecipientKey(
        kind=kind,
        description=description,
        certificate=pysequoia.Cert.from_bytes(armored),
        armored_secret=gpg.export(uid, secret=True),
        armored_certificate=armored,
        gnupg=gpg,
        live_encryption_key_ids=live,
        expired_encryption_key_ids=expired,
    )


def _uid(kind: str) -> str:
    return f"Customer {kind} <{kind}@customer.test>"


def simple_key(
    root: Path, kind: str, algorithm: str, description: str, *options: str
) -> RecipientKey:
    """Make a key with ``gpg --quick-generate-key UID ALGORITHM``."""
    gpg = GnuPG(root / kind)
    uid = _uid(kind)
    gpg.run(*options, "--quick-generate-key", uid, algorithm, "default", "2y")
    key = _from_gnupg(gpg, kind, description, uid)
    assert key.live_encryption_key_ids, f"gpg made no encryption subkey for {kind}"
    return key


def rsa_key(root: Path, bits: int) -> RecipientKey:
    """Make an RSA signing primary with an RSA encryption subkey of ``bits`` bits.

    This is what ``gpg --full-generate-key`` makes for "RSA and RSA". A bare
    ``--quick-generate-key UID rsa3072`` would make a primary key without
    any encryption capability.
    """
    kind = f"rsa{bits}"
    gpg = GnuPG(root / kind)
    parameters = (
        f"Key-Type: RSA\nKey-Length: {bits}\nKey-Usage: sign\n"
        f"Subkey-Type: RSA\nSubkey-Length: {bits}\nSubkey-Usage: encrypt\n"
        f"Name-Real: Customer {kind}\nName-Email: {kind}@customer.test\n"
        "Expire-Date: 2y\n%no-protection\n%commit\n"
    )
    gpg.run("--generate-key", input=parameters.encode())
    return _from_gnupg(
        gpg, kind, f"RSA-{bits} primary and encryption subkey", _uid(kind)
    )


def several_subkeys_key(root: Path) -> RecipientKey:
    """Make a certification-only primary with four subkeys, one of them expired.

    The subkeys: a Cv25519 encryption subkey that expired in 2024, a live
    Cv25519 and a live RSA-3072 encryption subkey, and an Ed25519 signing
    subkey. Mail must be encrypted to both live subkeys and never to the
    expired one.
    """
    kind = "subkeys"
    gpg = GnuPG(root / kind)
    uid = _uid(kind)
    # Frozen ("!"): a ticking fake clock restarts in each call, so the subkey
    # could be dated before the primary key made by the previous call.
    past = ("--faked-system-time", EXPIRED_SUBKEY_TIME + "!")
    gpg.run(*past, "--quick-generate-key", uid, "ed25519", "cert", "never")
    fingerprint = gpg.fingerprint(uid)
    gpg.run(*past, "--quick-add-key", fingerprint, "cv25519", "encr", "1d")
    gpg.run("--quick-add-key", fingerprint, "cv25519", "encr", "2y")
    gpg.run("--quick-add-key", fingerprint, "rsa3072", "encr", "2y")
    gpg.run("--quick-add-key", fingerprint, "ed25519", "sign", "2y")
    key = _from_gnupg(
        gpg,
        kind,
        "Ed25519 primary, expired and live Cv25519, live RSA-3072 encryption subkeys",
        uid,
    )
    assert len(key.expired_encryption_key_ids) == 1, "gpg made no expired subkey"
    assert len(key.live_encryption_key_ids) == 2, "gpg made the wrong live subkeys"
    return key


def v6_key() -> RecipientKey:
    tsk = pysequoia.Tsk.generate(
        user_ids=[_uid("v6")],
        profile=pysequoia.Profile.RFC9580,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    )
    certificate = tsk.extract_certificate()
    return RecipientKey(
        kind="v6",
        description="v6 (RFC 9580) Ed25519/X25519 key made by pysequoia",
        certificate=certificate,
        armored_secret=str(tsk).encode(),
        armored_certificate=str(certificate).encode(),
        gnupg=None,
    )


def _sha1_preferences_key(root: Path) -> RecipientKey:
    return simple_key(
        root,
        "sha1prefs",
        "future-default",
        "Cv25519 key whose hash preferences list only SHA-1",
        "--default-preference-list",
        "AES256 AES SHA1 ZLIB Uncompressed",
    )


# Each maker takes the directory for the GnuPG homes and returns one kind.
KIND_MAKERS: dict[str, Callable[[Path], RecipientKey]] = {
    "cv25519": lambda root: simple_key(
        root,
        "cv25519",
        "future-default",
        "Ed25519 primary, Cv25519 subkey (gpg default)",
    ),
    "rsa2048": lambda root: rsa_key(root, 2048),
    "rsa3072": lambda root: rsa_key(root, 3072),
    "rsa4096": lambda root: rsa_key(root, 4096),
    "subkeys": several_subkeys_key,
    "sha1prefs": _sha1_preferences_key,
    "v6": lambda root: v6_key(),
}


def key_fingerprints(armored_certificate: bytes) -> set[str]:
    """Return the fingerprints of the primary key and every subkey (upper case)."""
    with tempfile.TemporaryDirectory(prefix="sealmail-gpg-") as home:
        listing = subprocess.run(
            [
                "gpg",
                "--homedir",
                home,
                "--with-colons",
                "--with-subkey-fingerprints",
                "--show-keys",
            ],
            input=armored_certificate,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
    return {
        line.split(":")[9].upper()
        for line in listing.splitlines()
        if line.startswith("fpr:")
    }


def session_key_recipients(gpg: GnuPG, ciphertext: bytes) -> set[str]:
    """Return the key IDs that ``ciphertext``'s PKESK packets address (upper case)."""
    listing = gpg.run("--list-packets", "--list-only", input=ciphertext, check=False)
    return {
        match.upper()
        for match in re.findall(
            r"pubkey enc packet: version \d+, algo \d+, keyid ([0-9A-Fa-f]+)",
            listing.stdout.decode() + listing.stderr,
        )
    }
