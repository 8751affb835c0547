"""keep_user_ids: a certificate with some user IDs, checked by GnuPG and Sequoia."""

from __future__ import annotations

from pathlib import Path

import pysequoia
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealmail.core.pgp import generate
from sealmail.core.pgp.certfilter import MAX_PACKETS, keep_user_ids
from sealmail.core.pgp.generate import generate_provider_key
from sealmail.core.pgp.packets import (
    SIG_CERTIFICATIONS,
    SIG_KEY_REVOCATION,
    TAG_MARKER,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    PacketError,
    RawPacket,
    parse_signature,
    read_packets,
)
from tests.peers.gnupg import GnuPG

HOME = "Alice <alice@home.test>"
WORK = "Alice Work <alice@work.test>"


@pytest.fixture(scope="module")
def alice(tmp_path_factory: pytest.TempPathFactory) -> tuple[GnuPG, str]:
    """A GnuPG key with two user IDs; returns the keyring and the fingerprint."""
    gpg = GnuPG(tmp_path_factory.mktemp("alice") / "gnupg")
    fingerprint = gpg.generate(HOME)
    gpg.run("--quick-add-uid", fingerprint, WORK)
    return gpg, fingerprint


def provider_certificate() -> bytes:
    tsk = pysequoia.Tsk.from_bytes(
        generate_provider_key(["<billing@provider.test>", "<support@provider.test>"])
    )
    return bytes(tsk.extract_certificate())


def gpg_records(tmp_path: Path, certificate: bytes) -> list[list[str]]:
    """Return gpg's --check-sigs records after importing into an empty keyring."""
    gpg = GnuPG(tmp_path / "check")
    gpg.import_key(certificate)
    listing = gpg.run("--with-colons", "--check-sigs").stdout.decode()
    return [line.split(":") for line in listing.splitlines()]


def test_gnupg_key_keeps_one_user_id(alice, tmp_path):
    gpg, fingerprint = alice
    full = gpg.export(fingerprint, armor=False)
    filtered = keep_user_ids(full, lambda user_id: user_id == WORK)
    records = gpg_records(tmp_path, filtered)
    assert [fields[9] for fields in records if fields[0] == "uid"] == [WORK]
    assert [fields[9] for fields in records if fields[0] == "fpr"][0] == fingerprint
    assert len([fields for fields in records if fields[0] == "sub"]) == 1
    signatures = [fields[1] for fields in records if fields[0] == "sig"]
    assert signatures == ["!", "!"]  # user ID self-signature, subkey binding


@pytest.mark.parametrize("third_party", [True, False])
def test_revoked_user_id_stays_revoked(tmp_path, third_party):
    gpg = GnuPG(tmp_path / "bob")
    fingerprint = gpg.generate("Bob <bob@home.test>")
    gpg.run("--quick-add-uid", fingerprint, "Bob Old <bob@old.test>")
    gpg.run("--quick-revoke-uid", fingerprint, "Bob Old <bob@old.test>")
    full = gpg.export(fingerprint, armor=False)
    filtered = keep_user_ids(
        full,
        lambda user_id: "bob@old.test" in user_id,
        third_party_certifications=third_party,
    )
    records = gpg_records(tmp_path, filtered)
    user_ids = [fields for fields in records if fields[0] == "uid"]
    assert [fields[9] for fields in user_ids] == ["Bob Old <bob@old.test>"]
    assert user_ids[0][1] == "r"
    assert "rev" in [fields[0] for fields in records]


def test_provider_key_keeps_packets_unchanged():
    full = provider_certificate()
    filtered = keep_user_ids(full, lambda user_id: "support@" in user_id)
    packets = read_packets(full)
    # Primary key, its second user ID with its self-signature, subkey and binding.
    assert read_packets(filtered) == [packets[i] for i in (0, 3, 4, 5, 6)]
    cert = pysequoia.Cert.from_bytes(filtered)
    assert [str(user_id) for user_id in cert.user_ids] == ["<support@provider.test>"]


def test_user_attribute_dropped_with_signature():
    packets = read_packets(provider_certificate())
    photo = RawPacket(TAG_USER_ATTRIBUTE, b"\x10\x01" + b"\xff" * 15)
    photo_signature = RawPacket(TAG_SIGNATURE, packets[2].body + b"photo")
    crafted = packets[:3] + [photo, photo_signature] + packets[3:]
    data = b"".join(packet.serialize() for packet in crafted)
    filtered = read_packets(keep_user_ids(data, lambda user_id: True))
    assert photo not in filtered
    assert photo_signature not in filtered
    assert filtered == packets


def test_trust_and_marker_packets_dropped():
    packets = read_packets(provider_certificate())
    trust = RawPacket(TAG_TRUST, b"\x00\x00")
    marker = RawPacket(TAG_MARKER, b"PGP")
    crafted = [marker, *packets[:2], trust, *packets[2:]]
    data = b"".join(packet.serialize() for packet in crafted)
    with pytest.raises(PacketError, match="does not start with a public key"):
        keep_user_ids(data, lambda user_id: True)
    crafted = [packets[0], trust, *packets[1:3], marker, *packets[3:]]
    data = b"".join(packet.serialize() for packet in crafted)
    assert read_packets(keep_user_ids(data, lambda user_id: True)) == packets


def test_no_user_id_kept_rejected():
    with pytest.raises(PacketError, match="no user ID"):
        keep_user_ids(provider_certificate(), lambda user_id: False)


def test_secret_key_rejected():
    secret = generate_provider_key(["<billing@provider.test>"])
    with pytest.raises(PacketError, match="secret key material"):
        keep_user_ids(secret, lambda user_id: True)


def test_two_certificates_rejected():
    both = provider_certificate() + provider_certificate()
    with pytest.raises(PacketError, match="more than one certificate"):
        keep_user_ids(both, lambda user_id: True)


def test_invalid_utf8_user_id_replaced():
    packets = read_packets(provider_certificate())
    odd = RawPacket(packets[1].tag, b"<caf\xe9@provider.test>")
    data = b"".join(packet.serialize() for packet in [packets[0], odd, *packets[2:]])
    seen: list[str] = []

    def keep(user_id: str) -> bool:
        seen.append(user_id)
        return True

    keep_user_ids(data, keep)
    assert seen == ["<caf\ufffd@provider.test>", "<support@provider.test>"]


# Third-party certifications: signatures by other keys on a user ID.

BOB = "Bob <bob@home.test>"
CAROL = "Carol <carol@home.test>"


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, str]:
    """Alice's key with a certification by Bob and a revoked one by Carol.

    Returns the exported key and Alice's key ID.
    """
    gpg = GnuPG(tmp_path_factory.mktemp("certified") / "gnupg")
    alice = gpg.generate(HOME)
    bob = gpg.generate(BOB)
    carol = gpg.generate(CAROL)
    gpg.run("-u", bob, "--quick-sign-key", alice)
    gpg.run("-u", carol, "--quick-sign-key", alice)
    gpg.run("-u", carol, "--quick-revoke-sig", alice, carol)
    return gpg.export(alice, armor=False), alice[-16:]


def signature_types_by_issuer(certificate: bytes) -> list[tuple[int, str | None]]:
    return [
        (info.type, info.issuer_key_id)
        for info in (
            parse_signature(packet)
            for packet in read_packets(certificate)
            if packet.tag == TAG_SIGNATURE
        )
    ]


def test_certified_key_keeps_third_party_by_default(certified):
    full, _ = certified
    assert keep_user_ids(full, lambda user_id: True) == b"".join(
        packet.serialize() for packet in read_packets(full)
    )


def test_third_party_certifications_dropped(certified, tmp_path):
    full, alice_key_id = certified
    issuers = {issuer for _, issuer in signature_types_by_issuer(full)}
    assert len(issuers) == 3, "the fixture should carry Bob's and Carol's signatures"
    filtered = keep_user_ids(
        full, lambda user_id: True, third_party_certifications=False
    )
    remaining_signatures = signature_types_by_issuer(filtered)
    assert {issuer for _, issuer in remaining_signatures} == {alice_key_id.lower()}
    # The user ID self-signature and the subkey binding.
    assert [signature_type for signature_type, _ in remaining_signatures] == [0x13, 0x18]
    records = gpg_records(tmp_path, filtered)
    assert [fields[9] for fields in records if fields[0] == "uid"] == [HOME]
    assert [fields[1] for fields in records if fields[0] == "sig"] == ["!", "!"]
    assert "rev" not in [fields[0] for fields in records]
    # Nothing but the dropped signatures differs from the input.
    assert set(read_packets(filtered)) <= set(read_packets(full))


def stranger_signature(signature_type: int, signed: bytes) -> RawPacket:
    """Sign ``signed`` with a new key, naming that key as the issuer."""
    stranger = generate._KeyMaterial(b"\x04" + b"\x00" * 50)
    return generate._sign(
        Ed25519PrivateKey.generate(),
        stranger,
        signature_type,
        signed,
        generate._subpacket(2, (1_600_000_000).to_bytes(4, "big")),
    )


def test_designated_revocation_kept():
    """A key revocation by another key (a designated revoker) is no certification."""
    packets = read_packets(provider_certificate())
    revocation = stranger_signature(SIG_KEY_REVOCATION, b"revoked")
    crafted = [packets[0], revocation, *packets[1:]]
    data = b"".join(packet.serialize() for packet in crafted)
    filtered = keep_user_ids(
        data, lambda user_id: True, third_party_certifications=False
    )
    assert read_packets(filtered) == crafted


def test_v6_self_signatures_kept():
    tsk = pysequoia.Tsk.generate(
        user_ids=["<support@provider.test>"], profile=pysequoia.Profile.RFC9580
    )
    full = bytes(tsk.extract_certificate())
    filtered = keep_user_ids(
        full, lambda user_id: True, third_party_certifications=False
    )
    assert read_packets(filtered) == read_packets(full)


def flooded(packets: list[RawPacket], count: int, signature: RawPacket) -> bytes:
    """Return ``packets`` with ``count`` copies of ``signature`` on the user ID."""
    crafted = packets[:3] + [signature] * count + packets[3:]
    return b"".join(packet.serialize() for packet in crafted)


def test_packet_limit_counts_kept_packets():
    packets = read_packets(provider_certificate())
    certification = stranger_signature(0x10, b"user ID")
    data = flooded(packets, MAX_PACKETS, certification)
    with pytest.raises(PacketError, match=f"more than {MAX_PACKETS} packets"):
        keep_user_ids(data, lambda user_id: True)
    filtered = keep_user_ids(
        data, lambda user_id: True, third_party_certifications=False
    )
    assert read_packets(filtered) == packets


def test_certification_without_issuer_kept():
    """A certification that names no issuer may be the key's own, so it counts."""
    packets = read_packets(provider_certificate())
    anonymous = RawPacket(TAG_SIGNATURE, b"\x04\x10\x16\x0a\x00\x00\x00\x00\x00\x00")
    assert parse_signature(anonymous).type in SIG_CERTIFICATIONS
    assert parse_signature(anonymous).issuer_key_id is None
    filtered = keep_user_ids(
        flooded(packets, 2, anonymous),
        lambda user_id: True,
        third_party_certifications=False,
    )
    assert read_packets(filtered).count(anonymous) == 2
    with pytest.raises(PacketError, match=f"more than {MAX_PACKETS} packets"):
        keep_user_ids(
            flooded(packets, MAX_PACKETS, anonymous),
            lambda user_id: True,
            third_party_certifications=False,
        )
