"""WKD copies of provider keys with unusual user IDs or very many signatures."""

from __future__ import annotations

import pysequoia
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealmail.core.pgp import generate
from sealmail.core.pgp.packets import (
    TAG_SECRET_KEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    RawPacket,
    parse_key,
    parse_signature,
    read_packets,
)
from sealmail.keys import wkd
from tests.peers.gnupg import GnuPG


@pytest.fixture
def keystore(settings, tmp_path):
    settings.KEYS_DIR = tmp_path / "keys"
    settings.SEALMAIL_WKD_DOMAINS = ["provider.test"]
    settings.ALLOWED_HOSTS = ["testserver", "provider.test"]
    from sealmail.keys.store import get_keystore

    return get_keystore()


def wkd_get(client, local: str):
    digest = wkd.local_part_hash(local)
    return client.get(f"/.well-known/openpgpkey/provider.test/hu/{digest}")


def served_user_ids(client, local: str) -> list[str]:
    """Return the user IDs of the one key that WKD serves for ``local``@provider.test."""
    response = wkd_get(client, local)
    assert response.status_code == 200
    served = pysequoia.Cert.from_bytes(response.content)
    return [str(user_id) for user_id in served.user_ids]


def without_issuer(signature: RawPacket) -> RawPacket:
    """Return a v4 ``signature`` with an empty unhashed area, so it names no issuer."""
    body = signature.body
    hashed_end = 6 + int.from_bytes(body[4:6], "big")
    unhashed_end = (
        hashed_end + 2 + int.from_bytes(body[hashed_end : hashed_end + 2], "big")
    )
    return RawPacket(
        TAG_SIGNATURE, body[:hashed_end] + b"\x00\x00" + body[unhashed_end:]
    )


def with_certifications(tsk: bytes, count: int, *, issuer: bool = True) -> bytes:
    """Add ``count`` third-party certifications to the first user ID of ``tsk``.

    Keyservers let anyone add such signatures, and a key refreshed from one
    can carry tens of thousands of them. With ``issuer=False`` the
    certifications name no issuer, so nothing shows that they are not the
    key's own.
    """
    packets = read_packets(tsk)
    assert packets[0].tag == TAG_SECRET_KEY
    assert packets[1].tag == TAG_USER_ID
    # The public part of an EdDSA v4 key body: version, time, algorithm,
    # curve OID and the 263-bit MPI of the point.
    primary = generate._KeyMaterial(packets[0].body[:51])
    user_id = packets[1].body
    signed = primary.hashed_form + b"\xb4" + len(user_id).to_bytes(4, "big") + user_id
    stranger_secret = Ed25519PrivateKey.generate()
    stranger = generate._KeyMaterial(b"\x04" + b"\x00" * 50)
    certifications = [
        generate._sign(
            stranger_secret,
            stranger,
            0x10,
            signed,
            generate._subpacket(2, (1_600_000_000 + n).to_bytes(4, "big")),
        )
        for n in range(count)
    ]
    if not issuer:
        certifications = [without_issuer(signature) for signature in certifications]
    packets[3:3] = certifications
    return b"".join(packet.serialize() for packet in packets)


def test_many_certifications_served(client, keystore):
    tsk = generate.generate_provider_key(["Support <support@provider.test>"])
    keystore.import_key(with_certifications(tsk, 10_000))
    [cert] = keystore.certificates()
    assert len(read_packets(bytes(cert))) > 10_000
    response = wkd_get(client, "support")
    assert response.status_code == 200
    served = read_packets(response.content)
    primary = parse_key(served[0])
    signatures = [parse_signature(p) for p in served if p.tag == TAG_SIGNATURE]
    # The user ID self-signature and the subkey binding, without the others.
    assert len(signatures) == 2
    assert all(signature.issued_by(primary) for signature in signatures)
    assert [
        str(user_id) for user_id in pysequoia.Cert.from_bytes(response.content).user_ids
    ] == ["Support <support@provider.test>"]


def test_many_anonymous_certifications_unavailable(client, keystore, caplog):
    """Too many packets left after filtering: 503, and the reason logged once."""
    tsk = generate.generate_provider_key(["Support <support@provider.test>"])
    keystore.import_key(with_certifications(tsk, 10_000, issuer=False))
    [cert] = keystore.certificates()
    assert len(read_packets(bytes(cert))) > 10_000
    first = wkd_get(client, "support")
    second = wkd_get(client, "support")
    for response in (first, second):
        assert response.status_code == 503
        assert b"cannot be served" in response.content
    errors = [
        record
        for record in caplog.records
        if record.name == "sealmail.keys.wkd" and record.levelname == "ERROR"
    ]
    assert len(errors) == 1, "the reason should be logged once, not per request"
    assert cert.fingerprint.upper() in errors[0].getMessage()
    assert "more than 10000 packets" in errors[0].getMessage()


def test_other_key_served_when_one_fails(client, keystore):
    good = keystore.generate(["Support <support@provider.test>"])
    tsk = generate.generate_provider_key(["Support <support@provider.test>"])
    keystore.import_key(
        with_certifications(tsk, 10_000, issuer=False), make_current=False
    )
    assert len(keystore.certificates()) == 2
    response = wkd_get(client, "support")
    assert response.status_code == 200
    served = pysequoia.Cert.split_bytes(response.content)
    assert [cert.fingerprint for cert in served] == [good.fingerprint]


def test_key_page_and_download_with_many_certifications(client, keystore):
    tsk = generate.generate_provider_key(["Support <support@provider.test>"])
    keystore.import_key(with_certifications(tsk, 10_000))
    [cert] = keystore.certificates()
    page = client.get("/keys/")
    assert page.status_code == 200
    assert cert.fingerprint.upper()[:4].encode() in page.content
    download = client.get(f"/keys/{cert.fingerprint.upper()}.pgp")
    assert download.status_code == 200
    assert download.content == bytes(cert)


def test_two_address_user_id_like_gnupg(client, keystore, tmp_path):
    """GnuPG takes the address in angle brackets as a user ID's mailbox.

    A lookup for sales@ must not serve a user ID whose mailbox is support@.
    """
    keystore.generate(
        ["Sales <sales@provider.test>", "sales@provider.test <support@provider.test>"]
    )
    response = wkd_get(client, "sales")
    assert response.status_code == 200
    served = pysequoia.Cert.from_bytes(response.content)
    assert [str(user_id) for user_id in served.user_ids] == [
        "Sales <sales@provider.test>"
    ]
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.import_key(response.content)
    listing = gpg.run("--with-colons", "--list-keys").stdout.decode()
    assert "<support@provider.test>" not in listing


def test_angle_address_served_for_its_mailbox(client, keystore):
    keystore.generate(
        ["Sales <sales@provider.test>", "sales@provider.test <support@provider.test>"]
    )
    assert served_user_ids(client, "support") == [
        "sales@provider.test <support@provider.test>"
    ]


def test_bare_two_address_user_id_matches_none(client, keystore):
    keystore.generate(
        ["Sales <sales@provider.test>", "support@provider.test, sales@provider.test"]
    )
    assert served_user_ids(client, "sales") == ["Sales <sales@provider.test>"]
    assert wkd_get(client, "support").status_code == 404
