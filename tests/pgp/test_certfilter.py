"""keep_user_ids: a certificate with some user IDs, checked by GnuPG and Sequoia."""

from __future__ import annotations

from pathlib import Path

import pysequoia
import pytest

from sealmail.core.pgp.certfilter import keep_user_ids
from sealmail.core.pgp.generate import generate_provider_key
from sealmail.core.pgp.packets import (
    TAG_MARKER,
    TAG_SIGNATURE,
    TAG_TRUST,
    TAG_USER_ATTRIBUTE,
    PacketError,
    RawPacket,
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


def test_revoked_user_id_stays_revoked(tmp_path):
    gpg = GnuPG(tmp_path / "bob")
    fingerprint = gpg.generate("Bob <bob@home.test>")
    gpg.run("--quick-add-uid", fingerprint, "Bob Old <bob@old.test>")
    gpg.run("--quick-revoke-uid", fingerprint, "Bob Old <bob@old.test>")
    full = gpg.export(fingerprint, armor=False)
    filtered = keep_user_ids(full, lambda user_id: "bob@old.test" in user_id)
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
