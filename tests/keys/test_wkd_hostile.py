"""WKD copies of provider keys with unusual user IDs or very many signatures."""

from __future__ import annotations

import pysequoia
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sealmail.core.pgp import generate
from sealmail.core.pgp.packets import (
    TAG_SECRET_KEY,
    TAG_USER_ID,
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


def with_certifications(tsk: bytes, count: int) -> bytes:
    """Add ``count`` third-party certifications to the first user ID of ``tsk``.

    Keyservers let anyone add such signatures, and a key refreshed from one
    can carry tens of thousands of them.
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
    packets[3:3] = certifications
    return b"".join(packet.serialize() for packet in packets)


def test_many_certifications_served(client, keystore):
    tsk = generate.generate_provider_key(["Support <support@provider.test>"])
    keystore.import_key(with_certifications(tsk, 10_000))
    [cert] = keystore.certificates()
    assert len(read_packets(bytes(cert))) > 10_000
    response = wkd_get(client, "support")
    assert response.status_code == 200


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
    response = wkd_get(client, "support")
    assert response.status_code == 200
    served = pysequoia.Cert.from_bytes(response.content)
    assert [str(user_id) for user_id in served.user_ids] == [
        "sales@provider.test <support@provider.test>"
    ]


def test_bare_two_address_user_id_matches_none(client, keystore):
    keystore.generate(
        ["Sales <sales@provider.test>", "support@provider.test, sales@provider.test"]
    )
    sales = wkd_get(client, "sales")
    assert sales.status_code == 200
    served = pysequoia.Cert.from_bytes(sales.content)
    assert [str(user_id) for user_id in served.user_ids] == [
        "Sales <sales@provider.test>"
    ]
    assert wkd_get(client, "support").status_code == 404
