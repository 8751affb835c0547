"""The key corpus for intake tests, generated with GnuPG 2.2 and pysequoia.

Each entry has the verdict sealmail must reach and the verdicts expected
from GnuPG 2.2 and sq 0.27. Where they differ from sealmail on purpose,
``difference`` explains why.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pysequoia

from sealmail.core.pgp import packets as pk
from tests.peers.gnupg import GnuPG

# GnuPG runs with this faked clock for keys that must be old by now.
PAST = "20230101T000000"
FUTURE = "20400101T000000"
FLOOD_CERTIFICATIONS = 3000

USABLE = "usable"
NOT_USABLE = "not usable"
UNREADABLE = "unreadable"
NOT_COMPARED = "not compared"


@dataclass
class CorpusKey:
    name: str
    data: bytes
    reason: str | None  # None: sealmail accepts the key
    gpg: str  # USABLE, NOT_USABLE, UNREADABLE or NOT_COMPARED
    sq: str
    difference: str = ""  # why GnuPG or sq legitimately disagree with sealmail
    fingerprint: str = ""


def _variant(signature: pk.RawPacket, counter: int) -> pk.RawPacket:
    """Return ``signature`` with an extra unhashed subpacket: a distinct, still valid packet."""
    body = signature.body
    hashed_length = int.from_bytes(body[4:6], "big")
    start = 6 + hashed_length
    unhashed_length = int.from_bytes(body[start : start + 2], "big")
    unhashed = body[start + 2 : start + 2 + unhashed_length]
    extra = bytes([6, 100]) + counter.to_bytes(5, "big")  # private subpacket type 100
    unhashed += extra
    rest = body[start + 2 + unhashed_length :]
    return pk.RawPacket(
        pk.TAG_SIGNATURE, body[:start] + len(unhashed).to_bytes(2, "big") + unhashed + rest
    )


def _flood(target: bytes, certification: pk.RawPacket, count: int) -> bytes:
    packets = pk.read_packets(target)
    out = []
    for packet in packets:
        out.append(packet)
        if packet.tag == pk.TAG_USER_ID:
            out.extend(_variant(certification, i) for i in range(count))
    return b"".join(packet.serialize() for packet in out)


def build_corpus(workdir: Path) -> dict[str, CorpusKey]:
    """Generate every corpus key; takes a few seconds (RSA key generation dominates)."""
    gpg = GnuPG(workdir / "gnupg")
    corpus: dict[str, CorpusKey] = {}

    def add(name: str, data: bytes, reason: str | None, gpg_verdict: str, sq_verdict: str,
            difference: str = "", fingerprint: str = "") -> None:
        corpus[name] = CorpusKey(name, data, reason, gpg_verdict, sq_verdict, difference, fingerprint)

    def export(fingerprint: str) -> bytes:
        return gpg.export(fingerprint)

    # Modern default key: Ed25519 primary, Cv25519 encryption subkey.
    fpr = gpg.generate("cv25519@corpus.test", "future-default", "2y")
    add("cv25519", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("rsa2048@corpus.test", "rsa2048", "2y", usage="cert,sign,encr")
    add("rsa2048", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("rsa3072@corpus.test", "rsa3072", "2y", usage="cert,sign")
    gpg.add_subkey(fpr, "rsa3072", "encr", "2y")
    add("rsa3072", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("rsa4096@corpus.test", "rsa4096", "2y", usage="cert,sign,encr")
    gpg.run("--quick-add-uid", fpr, "RSA Corpus <rsa4096-second@corpus.test>")
    add("rsa4096", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("rsa1024@corpus.test", "rsa1024", "2y", usage="cert,sign,encr")
    add(
        "rsa1024", export(fpr), "weak_algorithm", USABLE, NOT_USABLE,
        "GnuPG 2.2 still accepts RSA-1024; Sequoia's standard policy rejects it.",
        fingerprint=fpr,
    )

    v6 = pysequoia.Tsk.generate(
        user_ids=["<v6@corpus.test>"], profile=pysequoia.Profile.RFC9580
    ).extract_certificate()
    add(
        "v6", str(v6).encode(), None, UNREADABLE, UNREADABLE,
        "GnuPG 2.2 and sq 0.27 (sequoia-openpgp 1.12) predate RFC 9580 v6 keys.",
        fingerprint=v6.fingerprint,
    )

    no_uid = pysequoia.Tsk.generate().extract_certificate()
    add(
        "no_user_id", str(no_uid).encode(), None, USABLE, USABLE,
        "gpg --show-keys reads it, but GnuPG 2.2's --import refuses a key without a user ID.",
        fingerprint=no_uid.fingerprint,
    )

    # Two encryption subkeys: one expired in 2024, one that never expires.
    fpr = gpg.generate("twosub@corpus.test", "ed25519", "never", usage="cert,sign", faked_time=PAST)
    gpg.add_subkey(fpr, "cv25519", "encr", "1y", faked_time=PAST)
    gpg.add_subkey(fpr, "cv25519", "encr", "never")
    add("two_subkeys_one_expired", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    # The only encryption subkey expired in 2024, then a new binding extended it.
    fpr = gpg.generate("extended@corpus.test", "ed25519", "never", usage="cert,sign", faked_time=PAST)
    sub = gpg.add_subkey(fpr, "cv25519", "encr", "1y", faked_time=PAST)
    expired_only = export(fpr)
    add(
        "only_subkey_expired", expired_only, "no_encryption_key", NOT_USABLE, NOT_USABLE,
        fingerprint=fpr,
    )
    gpg.run("--quick-set-expire", fpr, "2y", sub)
    add("subkey_reextended", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    # Primary key expired in 2024; its encryption subkey never expires.
    fpr = gpg.generate("primaryexpired@corpus.test", "ed25519", "1y", usage="cert,sign", faked_time=PAST)
    gpg.add_subkey(fpr, "cv25519", "encr", "never", faked_time=PAST)
    add("primary_expired", export(fpr), "expired", NOT_USABLE, NOT_USABLE, fingerprint=fpr)

    fpr = gpg.generate("revoked@corpus.test", "future-default", "2y")
    gpg.revoke_key(fpr)
    add("revoked", export(fpr), "revoked", NOT_USABLE, NOT_USABLE, fingerprint=fpr)

    fpr = gpg.generate("subrevoked@corpus.test", "future-default", "2y")
    gpg.revoke_subkey(fpr, 1)
    add("encryption_subkey_revoked", export(fpr), "no_encryption_key", NOT_USABLE, NOT_USABLE,
        fingerprint=fpr)

    fpr = gpg.generate("Kept <kept@corpus.test>", "future-default", "2y")
    gpg.run("--quick-add-uid", fpr, "Gone <gone@corpus.test>")
    gpg.run("--quick-revoke-uid", fpr, "Gone <gone@corpus.test>")
    add("revoked_user_id", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("sha1@corpus.test", "ed25519", "2y", "--cert-digest-algo", "SHA1",
                       usage="cert,sign")
    gpg.run("--cert-digest-algo", "SHA1", "--quick-add-key", fpr, "cv25519", "encr", "2y")
    add(
        "sha1_self_signatures", export(fpr), "weak_algorithm", USABLE, NOT_USABLE,
        "GnuPG 2.2 accepts SHA-1 self-signatures; Sequoia rejects them since 2023-02-01.",
        fingerprint=fpr,
    )

    fpr = gpg.generate(
        "sha1prefs@corpus.test", "future-default", "2y",
        "--default-preference-list", "SHA1 AES256 AES Uncompressed",
    )
    add("sha1_preferences", export(fpr), None, USABLE, USABLE, fingerprint=fpr)

    fpr = gpg.generate("signonly@corpus.test", "ed25519", "2y", usage="sign")
    add("sign_only", export(fpr), "no_encryption_key", NOT_USABLE, NOT_USABLE, fingerprint=fpr)

    fpr = gpg.generate("future@corpus.test", "future-default", "never", faked_time=FUTURE)
    add("created_in_future", export(fpr), "not_yet_valid", NOT_USABLE, NOT_USABLE, fingerprint=fpr)

    secret_fpr = gpg.generate("secret@corpus.test", "future-default", "2y")
    armored_secret = gpg.export(secret_fpr, secret=True)
    note = "GnuPG and sq show a secret key like any key; intake rejects it on purpose."
    add("secret_armored", armored_secret, "secret_key", NOT_COMPARED, NOT_COMPARED, note)
    add("secret_binary", gpg.export(secret_fpr, secret=True, armor=False), "secret_key",
        NOT_COMPARED, NOT_COMPARED, note)
    relabelled = armored_secret.replace(b"PRIVATE KEY BLOCK", b"PUBLIC KEY BLOCK")
    add("secret_relabelled_public", relabelled, "secret_key", NOT_COMPARED, NOT_COMPARED, note)

    two = gpg.run("--armor", "--export", corpus["cv25519"].fingerprint,
                  corpus["rsa2048"].fingerprint).stdout
    add("two_keys", two, "multiple_keys", NOT_COMPARED, NOT_COMPARED,
        "GnuPG and sq list both keys; intake needs exactly one.")

    garbage = os.urandom(1024 * 1024)
    add("garbage_1mb", garbage, "malformed", UNREADABLE, UNREADABLE)
    add("garbage_over_1mb", garbage + b"x", "too_large", UNREADABLE, UNREADABLE)

    # Thousands of third-party certifications: one real certification by one
    # certifier, repeated with a distinct unhashed subpacket each time.
    target = gpg.generate("flooded@corpus.test", "future-default", "2y")
    certifier = gpg.generate("certifier@corpus.test", "ed25519", "2y", usage="cert,sign")
    gpg.run("--default-key", certifier, "--quick-sign-key", target)
    certified = pk.read_packets(gpg.export(target, armor=False))
    certification = next(
        packet
        for packet in certified
        if packet.tag == pk.TAG_SIGNATURE
        and pk.parse_signature(packet).issuer_fingerprint == certifier.lower()
    )
    plain = [packet for packet in certified if packet is not certification]
    flooded = _flood(b"".join(p.serialize() for p in plain), certification, FLOOD_CERTIFICATIONS)
    add("flooded", flooded, None, USABLE, USABLE, fingerprint=target)
    return corpus
