"""Web Key Directory: hashes and URLs, the provider's WKD views and the client."""

from __future__ import annotations

import pysequoia
import pytest

from sealmail.core.pgp.packets import (
    TAG_PUBLIC_KEY,
    TAG_PUBLIC_SUBKEY,
    TAG_SIGNATURE,
    TAG_USER_ID,
    read_packets,
)
from sealmail.keys import wkd
from sealmail.keys.wkd import WkdClient, WkdError
from tests.notifications.wkd_server import WkdServer
from tests.peers.gnupg import GnuPG


def generate(*user_ids: str) -> pysequoia.Tsk:
    return pysequoia.Tsk.generate(
        user_ids=list(user_ids),
        profile=pysequoia.Profile.RFC4880,
        cipher_suite=pysequoia.CipherSuite.Cv25519,
    )


def test_hash_matches_draft_example():
    # The example address of draft-koch-openpgp-webkey-service.
    assert wkd.local_part_hash("Joe.Doe") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"


def test_hash_lowercases_ascii_only():
    assert wkd.local_part_hash("ALICE") == wkd.local_part_hash("alice")
    assert wkd.local_part_hash("ÄRGER") != wkd.local_part_hash("ärger")


def test_zbase32_length_and_alphabet():
    encoded = wkd.zbase32(bytes(range(20)))
    assert len(encoded) == 32
    assert set(encoded) <= set(wkd.ZBASE32_ALPHABET)
    assert wkd.zbase32(b"\x00") == "yy"
    assert wkd.zbase32(b"\xff") == "9h"


def test_paths_of_both_layouts():
    paths = wkd.wkd_paths("Joe.Doe@Example.ORG")
    assert paths.domain == "example.org"
    assert paths.advanced == (
        "/.well-known/openpgpkey/example.org/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
    )
    assert (
        paths.direct
        == "/.well-known/openpgpkey/hu/iy9q119eutrkn8s1mk4r39qejnbu3n5q?l=Joe.Doe"
    )


def test_client_urls_use_domain_hosts():
    client = WkdClient()
    advanced, direct = client.urls("joe.doe@example-isp.de")
    assert advanced.startswith(
        "https://openpgpkey.example-isp.de/.well-known/openpgpkey/example-isp.de/hu/"
    )
    assert direct.startswith("https://example-isp.de/.well-known/openpgpkey/hu/")


@pytest.mark.parametrize(
    "address", ["a@customer.test", "b@example.com", "c@x.example", "d@localhost"]
)
def test_reserved_domain_never_looked_up(address):
    with pytest.raises(WkdError) as excinfo:
        WkdClient().lookup(address)
    assert excinfo.value.reason == "reserved_domain"


@pytest.mark.parametrize("address", ["no-at-sign", "@example.net", "a@", "a@bad/host"])
def test_invalid_address_rejected(address):
    with pytest.raises(WkdError) as excinfo:
        WkdClient().urls(address)
    assert excinfo.value.reason == "invalid_address"


# The provider side: the views serve the key store's certificates.


@pytest.fixture
def provider(settings, tmp_path):
    settings.KEYS_DIR = tmp_path
    settings.SEALMAIL_WKD_DOMAINS = ["provider.test"]
    settings.ALLOWED_HOSTS = ["testserver", "provider.test", "openpgpkey.provider.test"]
    from sealmail.keys.store import get_keystore

    return get_keystore().generate(
        ["Billing <billing@provider.test>", "support@provider.test"]
    )


def test_advanced_layout_serves_key(client, provider):
    digest = wkd.local_part_hash("billing")
    response = client.get(
        f"/.well-known/openpgpkey/provider.test/hu/{digest}?l=billing",
        HTTP_HOST="openpgpkey.provider.test",
    )
    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    assert response["Access-Control-Allow-Origin"] == "*"
    served = pysequoia.Cert.from_bytes(response.content)
    assert served.fingerprint == provider.fingerprint
    assert not served.has_secret_keys


def test_direct_layout_serves_key_by_host(client, provider):
    digest = wkd.local_part_hash("support")
    response = client.get(
        f"/.well-known/openpgpkey/hu/{digest}", HTTP_HOST="provider.test"
    )
    assert response.status_code == 200
    assert (
        pysequoia.Cert.from_bytes(response.content).fingerprint == provider.fingerprint
    )


def test_direct_layout_unknown_host_not_found(client, provider):
    digest = wkd.local_part_hash("support")
    response = client.get(f"/.well-known/openpgpkey/hu/{digest}")
    assert response.status_code == 404


def test_unknown_address_not_found(client, provider):
    digest = wkd.local_part_hash("nobody")
    response = client.get(f"/.well-known/openpgpkey/provider.test/hu/{digest}")
    assert response.status_code == 404


def test_unknown_domain_not_found(client, provider):
    digest = wkd.local_part_hash("billing")
    response = client.get(f"/.well-known/openpgpkey/other.test/hu/{digest}")
    assert response.status_code == 404


def test_policy_files_served(client, provider):
    advanced = client.get("/.well-known/openpgpkey/provider.test/policy")
    direct = client.get("/.well-known/openpgpkey/policy", HTTP_HOST="provider.test")
    assert advanced.status_code == 200
    assert direct.status_code == 200
    assert advanced.content == b""
    assert client.get("/.well-known/openpgpkey/other.test/policy").status_code == 404


def test_key_page_lists_fingerprint(client, provider):
    response = client.get("/keys/")
    assert response.status_code == 200
    page = response.content.decode()
    fingerprint = provider.fingerprint.upper()
    grouped = " ".join(fingerprint[i : i + 4] for i in range(0, 40, 4))
    assert grouped in page
    assert "billing@provider.test" in page
    assert f"/keys/{fingerprint}.asc" in page


def test_key_downloads(client, provider):
    fingerprint = provider.fingerprint.upper()
    armored = client.get(f"/keys/{fingerprint}.asc")
    binary = client.get(f"/keys/{fingerprint}.pgp")
    assert armored.status_code == 200
    assert armored.content.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert b"PRIVATE" not in armored.content
    assert pysequoia.Cert.from_bytes(binary.content).fingerprint == provider.fingerprint
    assert client.get(f"/keys/{'0' * 40}.asc").status_code == 404


# The client against servers on loopback.


def test_client_fetches_from_provider_views(live_server, provider, settings):
    settings.ALLOWED_HOSTS = ["*"]
    client = WkdClient(base_urls={"provider.test": live_server.url}, timeout=5)
    certs = client.lookup("billing@provider.test")
    assert [cert.fingerprint for cert in certs] == [provider.fingerprint]


@pytest.fixture
def server():
    with WkdServer() as running:
        yield running


def test_client_advanced_layout(server):
    cert = generate("alice@customer.test").extract_certificate()
    paths = wkd.wkd_paths("alice@customer.test")
    server.publish(paths.advanced.split("?")[0], bytes(cert))
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    found = client.lookup("alice@customer.test")
    assert [c.fingerprint for c in found] == [cert.fingerprint]
    assert server.requests == [paths.advanced]


def test_client_falls_back_to_direct_layout_on_mirror(server):
    cert = generate("bob@customer.test").extract_certificate()
    paths = wkd.wkd_paths("Bob@customer.test")
    server.publish(paths.direct.split("?")[0], bytes(cert))
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    found = client.lookup("Bob@customer.test")
    assert [c.fingerprint for c in found] == [cert.fingerprint]
    assert server.requests == [paths.advanced, paths.direct]
    assert server.requests[1].endswith("?l=Bob")


def test_client_not_found(server):
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    with pytest.raises(WkdError) as excinfo:
        client.lookup("carol@customer.test")
    assert excinfo.value.reason == "not_found"


def test_client_rejects_untrusted_certificate(server):
    client = WkdClient(base_urls={"customer.test": server.url})
    with pytest.raises(WkdError) as excinfo:
        client.lookup("carol@customer.test")
    assert excinfo.value.reason == "network"
    assert "CERTIFICATE_VERIFY_FAILED" in excinfo.value.message


def test_client_rejects_malformed_answer(server):
    paths = wkd.wkd_paths("dave@customer.test")
    server.publish(paths.advanced.split("?")[0], b"<html>not a key</html>")
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    with pytest.raises(WkdError) as excinfo:
        client.lookup("dave@customer.test")
    assert excinfo.value.reason == "malformed"


def test_client_rejects_oversized_answer(server):
    paths = wkd.wkd_paths("erin@customer.test")
    server.publish(paths.advanced.split("?")[0], b"\x99" * 5000)
    client = WkdClient(
        base_urls={"customer.test": server.url},
        ssl_context=server.client_context(),
        max_bytes=4096,
    )
    with pytest.raises(WkdError) as excinfo:
        client.lookup("erin@customer.test")
    assert excinfo.value.reason == "too_large"


def test_client_refuses_redirect(server):
    paths = wkd.wkd_paths("frank@customer.test")
    server.responses[paths.advanced.split("?")[0]] = (
        302,
        b"",
        {"Location": "https://elsewhere.test/key"},
    )
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    with pytest.raises(WkdError) as excinfo:
        client.lookup("frank@customer.test")
    assert excinfo.value.reason == "http"
    assert server.requests == [paths.advanced]


def test_client_drops_secret_key_material(server):
    tsk = generate("gina@customer.test")
    paths = wkd.wkd_paths("gina@customer.test")
    server.publish(paths.advanced.split("?")[0], str(tsk).encode())
    client = WkdClient(
        base_urls={"customer.test": server.url}, ssl_context=server.client_context()
    )
    with pytest.raises(WkdError) as excinfo:
        client.lookup("gina@customer.test")
    assert excinfo.value.reason == "malformed"


# One address per lookup: the served copy carries only that address's user IDs.


def wkd_copy(client, local: str) -> bytes:
    digest = wkd.local_part_hash(local)
    response = client.get(f"/.well-known/openpgpkey/provider.test/hu/{digest}")
    assert response.status_code == 200
    return response.content


def test_wkd_copy_has_only_looked_up_user_id(client, provider):
    served = pysequoia.Cert.from_bytes(wkd_copy(client, "support"))
    assert [str(user_id) for user_id in served.user_ids] == ["support@provider.test"]
    assert served.fingerprint == provider.fingerprint


def test_wkd_copy_keeps_keys_and_bindings(client, provider):
    full = read_packets(bytes(provider))
    served = read_packets(wkd_copy(client, "billing"))
    assert [packet.tag for packet in full] == [
        TAG_PUBLIC_KEY, TAG_USER_ID, TAG_SIGNATURE, TAG_USER_ID, TAG_SIGNATURE,
        TAG_PUBLIC_SUBKEY, TAG_SIGNATURE,
    ]  # fmt: skip
    assert served == [full[0], full[1], full[2], full[5], full[6]]


def test_gnupg_sees_only_looked_up_user_id(client, provider, tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.import_key(wkd_copy(client, "billing"))
    listing = gpg.run("--with-colons", "--check-sigs").stdout.decode()
    records = [line.split(":") for line in listing.splitlines()]
    user_ids = [fields[9] for fields in records if fields[0] == "uid"]
    assert user_ids == ["Billing <billing@provider.test>"]
    assert "support@provider.test" not in listing
    subkeys = [fields for fields in records if fields[0] == "sub"]
    assert len(subkeys) == 1
    assert "e" in subkeys[0][11]  # the encryption subkey is usable
    # "!" in field 2 of a sig record: gpg checked the signature and it is good.
    signatures = [fields[1] for fields in records if fields[0] == "sig"]
    assert signatures == ["!", "!"]  # user ID self-signature, subkey binding


def test_gnupg_verifies_provider_signature_with_wkd_copy(client, provider, tmp_path):
    from sealmail.core.pgp.ops import sign_detached
    from sealmail.keys.store import get_keystore

    gpg = GnuPG(tmp_path / "gnupg")
    gpg.import_key(wkd_copy(client, "support"))
    data = b"Your invoice for December\r\n"
    signature = sign_detached(data, get_keystore().signer())
    result = gpg.verify_detached(data, signature.armored, tmp_path)
    assert result.returncode == 0, result.stderr
    assert any(
        line.startswith(f"VALIDSIG {provider.fingerprint.upper()}")
        for line in result.status
    )
    goodsig = [line for line in result.status if line.startswith("GOODSIG")]
    key_id = provider.fingerprint.upper()[-16:]
    assert goodsig == [f"GOODSIG {key_id} support@provider.test"]


def test_wkd_filters_every_matching_key(client, provider):
    from sealmail.keys.store import get_keystore

    second = get_keystore().rotate(["Support <support@provider.test>"])
    certs = pysequoia.Cert.split_bytes(wkd_copy(client, "support"))
    assert sorted(cert.fingerprint for cert in certs) == sorted(
        [provider.fingerprint, second.fingerprint]
    )
    for cert in certs:
        assert len(cert.user_ids) == 1
    assert client.get(
        f"/.well-known/openpgpkey/provider.test/hu/{wkd.local_part_hash('billing')}"
    ).status_code == 200
