"""The provider key store: generation, import, rotation, roles, passphrases, caching."""

from __future__ import annotations

import logging
import stat

import pysequoia
import pytest

from sealmail.core.errors import KeyImportError, KeyStoreError
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.inspect import inspect_key
from sealmail.core.pgp.keystore import KeyStore
from tests.peers.gnupg import GnuPG


@pytest.fixture
def store(tmp_path) -> KeyStore:
    return KeyStore(tmp_path / "keys")


def test_generated_key_profile(store, tmp_path):
    assert store.is_empty()
    cert = store.generate(["<billing@provider.test>", "<support@provider.test>"])
    assert not store.is_empty()
    packets = pk.read_packets(bytes(cert))
    primary = pk.parse_key(packets[0])
    assert (primary.version, primary.algorithm) == (4, "ed25519")
    subkeys = [pk.parse_key(p) for p in packets if p.tag == pk.TAG_PUBLIC_SUBKEY]
    assert [key.algorithm for key in subkeys] == ["cv25519"]
    signatures = [pk.parse_signature(p) for p in packets if p.tag == pk.TAG_SIGNATURE]
    for signature in signatures:
        assert signature.hash_algorithm == "SHA512"
        features = signature.features
        assert features is None or not features & pk.FEATURE_SEIPD_V2
    report = inspect_key(bytes(cert))
    assert report.usable_until is None
    assert report.user_ids == ["<billing@provider.test>", "<support@provider.test>"]


def test_gnupg_reads_generated_key(store, tmp_path):
    store.generate(["<billing@provider.test>"])
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.import_key(store.export().encode())
    listing = gpg.run("--with-colons", "--list-keys").stdout.decode()
    assert store.current_fingerprint().upper() in listing
    assert "pub:-:255:22:" in listing
    assert ":scESC:" in listing
    secret_dir = tmp_path / "gnupg-secret"
    secret_gpg = GnuPG(secret_dir)
    key_file = store.directory / f"{store.current_fingerprint()}.key"
    secret_gpg.import_key(key_file.read_bytes())
    assert "sec:" in secret_gpg.run("--with-colons", "-K").stdout.decode()


def test_file_modes(store):
    store.generate(["<billing@provider.test>"])
    assert stat.S_IMODE(store.directory.stat().st_mode) == 0o700
    for path in store.directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_rotate_keeps_old_keys(store):
    first = store.generate(["<billing@provider.test>"]).fingerprint
    second = store.rotate().fingerprint
    assert store.current_fingerprint() == second
    assert store.signer().fingerprint == second
    listing = store.list()
    assert [key.fingerprint for key in listing] == [second, first]
    assert listing[0].current and listing[1].retired is not None
    assert [cert.fingerprint for cert in store.certificates()] == [second, first]
    assert {key.fingerprint for key in store.decryption_keys()} == {first, second}


def test_signer_cache_follows_changes(store):
    store.generate(["<billing@provider.test>"])
    first = store.signer()
    assert store.signer() is first
    other = KeyStore(store.directory)
    other.rotate()
    assert store.signer() is not first
    assert store.signer().fingerprint == other.current_fingerprint()


def test_role_keys(store):
    provider = store.generate(["<billing@provider.test>"])
    role = store.generate(["<support@provider.test>"], role="Support@Provider.test")
    assert store.roles() == {"support@provider.test": role.fingerprint}
    assert store.current_fingerprint() == provider.fingerprint
    assert store.certificate_for_address("support@provider.test").fingerprint == role.fingerprint
    assert store.certificate_for_address("sales@provider.test").fingerprint == provider.fingerprint
    assert [cert.fingerprint for cert in store.certificates()] == [provider.fingerprint]
    with pytest.raises(KeyStoreError):
        store.generate(["<x>"], role="not-an-address")


def test_import_protected_key_with_passphrase_env(tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.run("--passphrase", "s3cret", "--quick-generate-key", "imported@provider.test",
            "future-default", "default", "never")
    fingerprint = gpg.fingerprint("imported@provider.test")
    secret = gpg.run("--armor", "--export-secret-keys", fingerprint, passphrase="s3cret").stdout
    environ = {"ORG_PASS": "s3cret"}
    store = KeyStore(tmp_path / "keys", environ=environ)
    with pytest.raises(KeyStoreError) as missing:
        store.import_key(secret, passphrase_env="ORG_PASS_MISSING")
    assert "ORG_PASS_MISSING" in str(missing.value)
    key = store.import_key(secret, passphrase_env="ORG_PASS")
    assert key.protected
    assert key.fingerprint == fingerprint.lower()
    assert store.signer().fingerprint == fingerprint.lower()
    index = (tmp_path / "keys" / "keys.json").read_text()
    assert "s3cret" not in index
    assert len(store.decryption_keys()) == 1


def test_import_passphrase_file(tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.run("--passphrase", "from-file", "--quick-generate-key", "file@provider.test",
            "future-default", "default", "never")
    fingerprint = gpg.fingerprint("file@provider.test")
    secret = gpg.run("--armor", "--export-secret-keys", fingerprint, passphrase="from-file").stdout
    passphrase_file = tmp_path / "passphrase"
    passphrase_file.write_text("from-file\n")
    store = KeyStore(tmp_path / "keys", environ={})
    store.import_key(secret, passphrase_file=str(passphrase_file))
    assert store.signer().fingerprint == fingerprint.lower()


def test_wrong_passphrase_names_no_secret(tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.run("--passphrase", "right", "--quick-generate-key", "wrong@provider.test",
            "future-default", "default", "never")
    fingerprint = gpg.fingerprint("wrong@provider.test")
    secret = gpg.run("--armor", "--export-secret-keys", fingerprint, passphrase="right").stdout
    store = KeyStore(tmp_path / "keys", environ={"SEALMAIL_KEY_PASSPHRASE": "wrong"})
    with pytest.raises(KeyImportError) as failed:
        store.import_key(secret)
    message = str(failed.value)
    assert "passphrase" in message
    assert "wrong" not in message.replace("wrong@", "")
    assert "BEGIN PGP" not in message
    assert store.is_empty()


def test_import_rejects_public_key(store, tmp_path):
    cert = pysequoia.Tsk.generate(user_ids=["<p@provider.test>"]).extract_certificate()
    with pytest.raises(KeyImportError) as failed:
        store.import_key(str(cert).encode())
    assert "public key" in str(failed.value)


def test_import_rsa_warns(store, tmp_path, caplog):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.generate("rsa@provider.test", "rsa2048", "never", usage="cert,sign,encr")
    secret = gpg.export(gpg.fingerprint("rsa@provider.test"), secret=True)
    with caplog.at_level(logging.WARNING):
        key = store.import_key(secret)
    assert any("RUSTSEC-2023-0071" in warning for warning in key.warnings)
    assert "RUSTSEC-2023-0071" in caplog.text
    assert "PRIVATE KEY" not in caplog.text


def test_missing_store_error(store):
    with pytest.raises(KeyStoreError) as failed:
        store.signer()
    assert "orgkey generate" in str(failed.value)


def test_damaged_key_file(store):
    store.generate(["<billing@provider.test>"])
    path = store.directory / f"{store.current_fingerprint()}.key"
    path.write_text("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nAAAA\n-----END PGP PRIVATE KEY BLOCK-----\n")
    fresh = KeyStore(store.directory)
    with pytest.raises(KeyStoreError) as failed:
        fresh.signer()
    assert str(path) in str(failed.value)
    assert "AAAA" not in str(failed.value)


def test_import_subkeys_only_export_explained(tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.run("--quick-generate-key", "Stub <stub@provider.test>", "future-default", "default", "1y")
    stubbed = gpg.run("--armor", "--export-secret-subkeys", "stub@provider.test").stdout
    store = KeyStore(tmp_path / "keys")
    with pytest.raises(KeyImportError) as failed:
        store.import_key(stubbed)
    assert "lacks part of its secret material" in str(failed.value)
    assert "--export-secret-keys" in str(failed.value)
    assert "passphrase" not in str(failed.value)
    assert store.is_empty()
