"""Encrypt, sign, decrypt and verify against GnuPG 2.2 and sq 0.27."""

from __future__ import annotations

import zlib
from dataclasses import replace
from datetime import timedelta

import pysequoia
import pytest

from sealmail.core.errors import DecryptionError, EncryptionError
from sealmail.core.pgp import inner
from sealmail.core.pgp import packets as pk
from sealmail.core.pgp.keystore import KeyStore
from sealmail.core.pgp.ops import (
    RecipientCert,
    RecipientCheck,
    decrypt,
    encrypt_and_sign,
    recipient_check,
    remember_recipient_checks,
    sign_detached,
    verify_detached,
    verify_inline,
)
from tests.peers.gnupg import GnuPG
from tests.pgp.corpus import PAST


@pytest.fixture
def store(tmp_path) -> KeyStore:
    store = KeyStore(tmp_path / "keys")
    store.generate(["<billing@provider.test>"])
    return store


@pytest.fixture
def customer_gpg(customer, store) -> tuple[GnuPG, str, pysequoia.Cert]:
    gpg, fingerprint = customer
    gpg.import_key(store.export().encode())
    return gpg, fingerprint, pysequoia.Cert.from_bytes(gpg.export(fingerprint))


def outline(message: bytes) -> pk.MessageOutline:
    return pk.outline_message(message)


def status_field(status: list[str], keyword: str) -> list[str]:
    line = next(line for line in status if line.startswith(keyword + " "))
    return line.split()


def test_gnupg_decrypts_and_verifies(store, customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    message = encrypt_and_sign(b"Invoice 42\r\n", [cert], store.signer())
    result = gpg.decrypt(message)
    assert result.stdout == b"Invoice 42\r\n"
    validsig = status_field(result.status, "VALIDSIG")
    assert validsig[-1].lower() == store.current_fingerprint()
    assert int(validsig[8]) in (8, 9, 10)  # SHA-256, SHA-384 or SHA-512
    info = status_field(result.status, "DECRYPTION_INFO")
    assert info[1] == "2"  # SEIPDv1 with MDC


def test_signature_ignores_sha1_preference(store, corpus, tmp_path):
    gpg = GnuPG(tmp_path / "sha1prefs")
    gpg.import_key(corpus["sha1_preferences"].data)
    cert = pysequoia.Cert.from_bytes(corpus["sha1_preferences"].data)
    message = encrypt_and_sign(b"x", [cert], store.signer(), armor=False)
    packets = pk.read_packets(message)
    assert packets[-1].tag == pk.TAG_SEIPD
    assert packets[-1].body[0] == 1
    detached = sign_detached(b"x", store.signer())
    assert detached.hash_algorithm in {"SHA256", "SHA384", "SHA512"}


def test_gnupg_to_provider_round_trip(store, customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    message = gpg.encrypt(b"Ticket body", store.current_fingerprint(), sign_as=fingerprint)
    result = decrypt(message, store, certificates_for=lambda ids: [cert])
    assert result.plaintext == b"Ticket body"
    assert result.integrity_protected is True
    assert result.decrypted_with == store.current_fingerprint()
    (signature,) = result.signatures
    assert signature.status == "good"
    assert signature.signer_fingerprint == fingerprint.lower()


def test_unknown_signer(store, customer_gpg):
    gpg, fingerprint, _ = customer_gpg
    message = gpg.encrypt(b"who am I", store.current_fingerprint(), sign_as=fingerprint)
    result = decrypt(message, store, certificates_for=lambda ids: [])
    (signature,) = result.signatures
    assert signature.status == "unknown_key"
    assert signature.signer_fingerprint is None
    assert signature.key_id is not None


def test_unsigned_message_has_no_signatures(store, customer_gpg):
    gpg, _, _ = customer_gpg
    message = gpg.encrypt(b"plain", store.current_fingerprint())
    result = decrypt(message, store, certificates_for=lambda ids: [])
    assert result.plaintext == b"plain"
    assert result.signatures == []


@pytest.mark.parametrize("algorithm", ["zip", "zlib", "bzip2"])
def test_compressed_signed_message(store, customer_gpg, algorithm):
    gpg, fingerprint, cert = customer_gpg
    message = gpg.run(
        "--compress-algo", algorithm, "--encrypt", "--sign", "--recipient",
        store.current_fingerprint(), "--local-user", fingerprint, input=b"zipped " * 50,
    ).stdout
    result = decrypt(message, store, certificates_for=lambda ids: [cert])
    assert result.plaintext == b"zipped " * 50
    (signature,) = result.signatures
    assert signature.status == "good"
    assert signature.signer_fingerprint == fingerprint.lower()
    assert signature.hash_algorithm is not None


def test_compressed_message_with_forged_signature(store, customer_gpg, tmp_path):
    gpg, fingerprint, cert = customer_gpg
    impostor = GnuPG(tmp_path / "impostor")
    impostor.import_key(store.export().encode())
    # Same user ID, different key: the signature names a key the lookup does not return.
    impostor.generate("customer@example.test", "future-default", "2y")
    message = impostor.run(
        "--compress-algo", "zlib", "--encrypt", "--sign", "--recipient",
        store.current_fingerprint(), input=b"forged",
    ).stdout
    result = decrypt(message, store, certificates_for=lambda ids: [cert])
    assert [sig.status for sig in result.signatures] == ["unknown_key"]


def _protected_store(tmp_path, algorithm: str) -> tuple[KeyStore, GnuPG, str]:
    """Return a key store with one passphrase-protected key that GnuPG made and exported."""
    provider = GnuPG(tmp_path / "provider")
    provider.run("--passphrase", "pw", "--quick-generate-key", "p@provider.test",
                 algorithm, "default", "never")
    provider_fpr = provider.fingerprint("p@provider.test")
    if algorithm.startswith("rsa"):
        # GnuPG gives an RSA primary key no encryption subkey of its own.
        provider.run("--quick-add-key", provider_fpr, algorithm, "encr", "never", passphrase="pw")
    secret = provider.run("--armor", "--export-secret-keys", provider_fpr, passphrase="pw").stdout
    store = KeyStore(tmp_path / "keys", environ={"SEALMAIL_KEY_PASSPHRASE": "pw"})
    store.import_key(secret)
    return store, provider, provider_fpr


@pytest.mark.parametrize(
    ("algorithm", "status"), [("future-default", "good"), ("rsa2048", "unchecked")]
)
def test_compressed_message_to_protected_key(tmp_path, customer_gpg, algorithm, status):
    """A protected Cv25519 subkey is unlocked to check the signature, while RSA stays unchecked."""
    gpg, fingerprint, cert = customer_gpg
    store, provider, provider_fpr = _protected_store(tmp_path, algorithm)
    gpg.import_key(provider.export(provider_fpr))
    message = gpg.run(
        "--compress-algo", "zlib", "--encrypt", "--sign", "--recipient", provider_fpr,
        "--local-user", fingerprint, input=b"zipped",
    ).stdout
    result = decrypt(message, store, certificates_for=lambda ids: [cert])
    assert result.plaintext == b"zipped"
    assert [sig.status for sig in result.signatures] == [status]


@pytest.mark.parametrize("algorithm", ["future-default", "rsa2048"])
def test_protected_key_bomb_refused_before_pysequoia(
    tmp_path, customer_gpg, monkeypatch, algorithm
):
    """Cv25519 is unlocked and measured in this process, RSA in a child process."""
    gpg, _, _ = customer_gpg
    store, provider, provider_fpr = _protected_store(tmp_path, algorithm)
    gpg.import_key(provider.export(provider_fpr))
    bomb = gpg.run(
        "--compress-algo", "zlib", "--compress-level", "9", "--encrypt",
        "--recipient", provider_fpr, input=b"\0" * (32 * 1024 * 1024),
    ).stdout
    assert len(bomb) < 200_000

    def expand_nothing(*args, **kwargs):
        raise AssertionError("pysequoia was given the bomb")

    monkeypatch.setattr(pysequoia, "decrypt", expand_nothing)
    with pytest.raises(DecryptionError) as refused:
        decrypt(bomb, store, certificates_for=lambda ids: [], max_plaintext=1024 * 1024)
    assert refused.value.reason == "too_large"


def test_unlock_rejects_wrong_passphrase(tmp_path):
    store, _, _ = _protected_store(tmp_path, "future-default")
    [key] = store.decryption_keys()
    assert key.passphrase == "pw"
    assert len(inner._ecdh_secrets(key.secret, "pw")) == 1
    assert inner._ecdh_secrets(key.secret, "wrong") == []
    assert inner._ecdh_secrets(key.secret, None) == []


def test_hidden_recipient(store, customer_gpg):
    gpg, _, _ = customer_gpg
    message = gpg.run("--encrypt", "--hidden-recipient", store.current_fingerprint(),
                      input=b"hidden").stdout
    result = decrypt(message, store, certificates_for=lambda ids: [])
    assert result.plaintext == b"hidden"
    assert result.recipient_key_ids == []


def test_tampered_ciphertext(store, customer_gpg):
    gpg, _, _ = customer_gpg
    message = bytearray(gpg.encrypt(b"x" * 200, store.current_fingerprint(), armor=False))
    message[-40] ^= 0x01
    with pytest.raises(DecryptionError) as failed:
        decrypt(bytes(message), store, certificates_for=lambda ids: [])
    assert failed.value.reason == "tampered"


def test_message_without_mdc_is_refused(store, customer_gpg):
    gpg, _, _ = customer_gpg
    message = gpg.run(
        "--rfc2440", "--cipher-algo", "CAST5", "--disable-mdc", "--encrypt",
        "--recipient", store.current_fingerprint(), input=b"legacy secret",
    ).stdout
    assert outline(message).encrypted_tag == pk.TAG_SED
    with pytest.raises(DecryptionError) as failed:
        decrypt(message, store, certificates_for=lambda ids: [])
    assert failed.value.reason == "no_integrity"
    assert "legacy secret" not in str(failed.value)
    assert failed.value.recipient_key_ids


def test_no_key_names_recipients(store, customer_gpg):
    gpg, fingerprint, _ = customer_gpg
    message = gpg.encrypt(b"for the customer", fingerprint)
    with pytest.raises(DecryptionError) as failed:
        decrypt(message, store, certificates_for=lambda ids: [])
    assert failed.value.reason == "no_key"
    expected = {sub[-16:].lower() for sub in gpg.subkey_fingerprints(fingerprint)}
    assert set(failed.value.recipient_key_ids) <= expected
    assert failed.value.recipient_key_ids


def test_malformed_message(store):
    with pytest.raises(DecryptionError) as failed:
        decrypt(b"\x00\x01garbage", store, certificates_for=lambda ids: [])
    assert failed.value.reason == "malformed"


def test_rotated_key_still_decrypts(store, customer_gpg):
    gpg, _, _ = customer_gpg
    old = store.current_fingerprint()
    message = gpg.encrypt(b"to the old key", old)
    store.rotate()
    assert store.current_fingerprint() != old
    result = decrypt(message, store, certificates_for=lambda ids: [])
    assert result.plaintext == b"to the old key"
    assert result.decrypted_with == old


def test_role_key_decrypts(store, customer_gpg):
    gpg, _, _ = customer_gpg
    role_cert = store.generate(["<support@provider.test>"], role="support@provider.test")
    gpg.import_key(str(role_cert).encode())
    message = gpg.encrypt(b"help", role_cert.fingerprint)
    result = decrypt(message, store, certificates_for=lambda ids: [])
    assert result.decrypted_with == role_cert.fingerprint


def test_sq_round_trips(store, sq):
    key = sq.generate("sqcustomer@example.test")
    cert_bytes = sq.extract_cert(key)
    cert = pysequoia.Cert.from_bytes(cert_bytes)
    provider_cert = str(store.certificate()).encode()

    to_provider = sq.encrypt(b"from sq", provider_cert, signer_key=key, compression="none")
    result = decrypt(to_provider, store, certificates_for=lambda ids: [cert])
    assert result.plaintext == b"from sq"
    assert [sig.status for sig in result.signatures] == ["good"]

    # sq's default padding puts a compressed data packet around the signed data.
    padded = sq.encrypt(b"padded", provider_cert, signer_key=key)
    result = decrypt(padded, store, certificates_for=lambda ids: [cert])
    assert result.plaintext == b"padded"
    assert [sig.status for sig in result.signatures] == ["good"]

    to_customer = encrypt_and_sign(b"to sq", [cert], store.signer())
    opened = sq.decrypt_with(to_customer, key, signer_cert=provider_cert)
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == b"to sq"
    assert "Good signature" in opened.stderr


def test_detached_signature_with_peers(store, customer_gpg, sq, tmp_path):
    gpg, _, _ = customer_gpg
    data = b"Content-Type: text/plain\r\n\r\nHello\r\n"
    signature = sign_detached(data, store.signer())
    assert signature.micalg == "pgp-" + signature.hash_algorithm.lower()
    assert signature.hash_algorithm in {"SHA256", "SHA384", "SHA512"}
    assert gpg.verify_detached(data, signature.armored, tmp_path).returncode == 0
    assert gpg.verify_detached(data.replace(b"\r\n", b"\n"), signature.armored, tmp_path).returncode != 0
    provider_cert = str(store.certificate()).encode()
    assert sq.verify_detached_with(data, signature.armored, provider_cert).returncode == 0


def test_verify_detached_statuses(store, customer_gpg, tmp_path):
    gpg, fingerprint, cert = customer_gpg
    data = b"exact bytes\r\n"
    signature = gpg.run("--armor", "--detach-sign", "--local-user", fingerprint, input=data).stdout
    good = verify_detached(data, signature, certificates_for=lambda ids: [cert])
    assert [(r.status, r.signer_fingerprint) for r in good] == [("good", fingerprint.lower())]
    assert good[0].hash_algorithm is not None
    assert good[0].created is not None
    bad = verify_detached(data + b"x", signature, certificates_for=lambda ids: [cert])
    assert [r.status for r in bad] == ["bad"]
    unknown = verify_detached(data, signature, certificates_for=lambda ids: [])
    assert [r.status for r in unknown] == ["unknown_key"]


def test_signature_by_revoked_key(tmp_path):
    gpg = GnuPG(tmp_path / "revoking")
    fingerprint = gpg.generate("revoker@example.test", "future-default", "2y")
    data = b"signed before revocation"
    signature = gpg.run("--detach-sign", "--local-user", fingerprint, input=data).stdout
    gpg.revoke_key(fingerprint)
    cert = pysequoia.Cert.from_bytes(gpg.export(fingerprint))
    (result,) = verify_detached(data, signature, certificates_for=lambda ids: [cert])
    assert result.status == "revoked_key"
    assert result.signer_fingerprint == fingerprint.lower()


def test_signature_by_expired_key(tmp_path):
    gpg = GnuPG(tmp_path / "expiring")
    fingerprint = gpg.generate("expiring@example.test", "ed25519", "never", usage="cert,sign",
                               faked_time=PAST)
    data = b"signed in June 2023"
    signature = gpg.run("--detach-sign", "--local-user", fingerprint, input=data,
                        faked_time="20230601T000000").stdout
    # A self-signature dated May 2023 (older than the signature) that lets the
    # key expire in mid-May: the signature was made after the key expired.
    gpg.run("--quick-set-expire", fingerprint, "14d", faked_time="20230501T000000")
    cert = pysequoia.Cert.from_bytes(gpg.export(fingerprint))
    (result,) = verify_detached(data, signature, certificates_for=lambda ids: [cert])
    assert result.status == "expired_key"
    assert result.signer_fingerprint == fingerprint.lower()


def test_encrypt_refuses_unusable_keys(store, corpus):
    for name in ("only_subkey_expired", "encryption_subkey_revoked", "sign_only", "primary_expired"):
        cert = pysequoia.Cert.from_bytes(corpus[name].data)
        with pytest.raises(EncryptionError) as refused:
            encrypt_and_sign(b"x", [cert], store.signer())
        assert cert.fingerprint in str(refused.value)


def test_encrypts_only_to_live_subkey(store, corpus):
    data = corpus["two_subkeys_one_expired"].data
    cert = pysequoia.Cert.from_bytes(data)
    message = encrypt_and_sign(b"x", [cert], store.signer(), armor=False)
    from sealmail.core.pgp.inspect import inspect_key

    live = {sub.key_id for sub in inspect_key(data).encryption_subkeys if sub.usable}
    used = {recipient.key_id for recipient in outline(message).recipients}
    assert used == live


def test_seipd_version_by_recipient_version(store):
    v4_advertising_v2 = pysequoia.Tsk.generate(
        user_ids=["<v4@example.test>"], profile=pysequoia.Profile.RFC4880
    ).extract_certificate()
    v6 = pysequoia.Tsk.generate(
        user_ids=["<v6@example.test>"], profile=pysequoia.Profile.RFC9580
    ).extract_certificate()
    # pysequoia alone would pick SEIPDv2 for this v4 key, because it advertises it.
    plain = outline(pysequoia.encrypt(b"x", [v4_advertising_v2], armor=False))
    assert plain.encrypted_version == 2
    only_v4 = outline(encrypt_and_sign(b"x", [v4_advertising_v2], store.signer(), armor=False))
    assert (only_v4.encrypted_tag, only_v4.encrypted_version) == (pk.TAG_SEIPD, 1)
    mixed = outline(encrypt_and_sign(b"x", [v6, v4_advertising_v2], store.signer(), armor=False))
    assert mixed.encrypted_version == 1
    only_v6 = outline(encrypt_and_sign(b"x", [v6], store.signer(), armor=False))
    assert only_v6.encrypted_version == 2


def test_encrypt_without_recipients(store):
    with pytest.raises(EncryptionError):
        encrypt_and_sign(b"x", [], store.signer())


def test_verify_inline_signed_message(customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    signed = gpg.run("--sign", "--local-user", fingerprint, input=b"inline body").stdout
    content, results = verify_inline(signed, certificates_for=lambda ids: [cert])
    assert content == b"inline body"
    assert [(r.status, r.signer_fingerprint) for r in results] == [("good", fingerprint.lower())]
    _, unknown = verify_inline(signed, certificates_for=lambda ids: [])
    assert [r.status for r in unknown] == ["unknown_key"]


def test_verify_inline_cleartext(customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    text = b"- starts with a dash\nsecond line\n"
    signed = gpg.run("--clearsign", "--local-user", fingerprint, input=text).stdout
    content, results = verify_inline(signed, certificates_for=lambda ids: [cert])
    assert content.rstrip(b"\n") == text.rstrip(b"\n")
    assert [r.status for r in results] == ["good"]
    tampered = signed.replace(b"second line", b"second lime")
    content, results = verify_inline(tampered, certificates_for=lambda ids: [cert])
    assert b"second lime" in content
    assert [r.status for r in results] == ["bad"]


def test_cleartext_second_signature_fails(customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    marker = b"-----BEGIN PGP SIGNATURE-----"
    signed = gpg.run("--clearsign", "--local-user", fingerprint, input=b"Pay 10 EUR\n").stdout
    other = gpg.run("--clearsign", "--local-user", fingerprint, input=b"Pay 99 EUR\n").stdout
    packets = [pk.dearmor(block[block.index(marker) :]).data for block in (signed, other)]
    both = pysequoia.armor(b"".join(packets), pysequoia.ArmorKind.Signature).encode()
    content, results = verify_inline(
        signed[: signed.index(marker)] + both, certificates_for=lambda ids: [cert]
    )
    assert content.rstrip(b"\n") == b"Pay 10 EUR"
    assert [r.status for r in results] == ["good", "bad"]
    assert [r.signer_fingerprint for r in results] == [fingerprint.lower()] * 2


def test_cleartext_quoting_signature_line(customer_gpg):
    gpg, fingerprint, cert = customer_gpg
    text = b"You wrote:\n-----BEGIN PGP SIGNATURE-----\nend of quote\n"
    signed = gpg.run("--clearsign", "--local-user", fingerprint, input=text).stdout
    assert b"- -----BEGIN PGP SIGNATURE-----" in signed
    content, results = verify_inline(signed, certificates_for=lambda ids: [cert])
    assert content.rstrip(b"\n") == text.rstrip(b"\n")
    assert [r.status for r in results] == ["good"]


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_concatenated_messages_are_named(store, customer_gpg, armor):
    gpg, _, _ = customer_gpg
    messages = [
        gpg.encrypt(text, store.current_fingerprint(), armor=armor) for text in (b"one", b"two")
    ]
    with pytest.raises(DecryptionError) as failed:
        decrypt(b"".join(messages), store, certificates_for=lambda ids: [], max_plaintext=1 << 20)
    assert failed.value.reason == "multiple_messages"
    assert "contains 2 OpenPGP messages" in str(failed.value)


def test_openpgpjs_reads_provider_messages(store, customer_gpg):
    from tests.peers.openpgpjs import OpenPgpJs

    peer = OpenPgpJs()
    gpg, fingerprint, cert = customer_gpg
    peer.add_secret_key(gpg.export(fingerprint, secret=True))
    peer.add_certificate(store.export().encode())
    result = peer.decrypt(encrypt_and_sign(b"hello OpenPGP.js", [cert], store.signer()))
    assert result.plaintext == b"hello OpenPGP.js"
    assert result.verified, [sig.detail for sig in result.signatures]


def test_outline_of_armor_reads_past_a_long_head(store):
    """The outline of armored data decodes more of the armor when the head needs it."""
    customer = pysequoia.Tsk.generate(user_ids=["<c@example.test>"]).extract_certificate()
    binary = encrypt_and_sign(b"x" * 50_000, [customer], store.signer(), armor=False)
    marker = pk.RawPacket(pk.TAG_MARKER, b"PGP").serialize()
    # 20 KB of marker packets put the session keys past the first decoded block.
    padded = marker * 4000 + binary
    armored = pysequoia.armor(padded, pysequoia.ArmorKind.Message).encode()
    expected = outline(binary)
    got = outline(armored)
    assert got.recipients == expected.recipients
    assert (got.encrypted_tag, got.encrypted_version) == (pk.TAG_SEIPD, 1)


def test_dearmor_accepts_headers_crlf_and_a_missing_checksum(store):
    customer = pysequoia.Tsk.generate(user_ids=["<c@example.test>"]).extract_certificate()
    binary = encrypt_and_sign(b"hello", [customer], store.signer(), armor=False)
    armored = pysequoia.armor(binary, pysequoia.ArmorKind.Message)
    lines = armored.splitlines()
    lines.insert(1, "Comment: made by a test")
    with_headers = "\r\n".join(lines).encode()
    assert pk.dearmor(with_headers).data == binary
    assert outline(with_headers).recipients == outline(binary).recipients
    no_checksum = "\n".join(line for line in lines if not line.startswith("=")).encode()
    assert pk.dearmor(no_checksum).data == binary
    damaged = with_headers.replace(lines[3][5:9].encode(), b"!!!!", 1)
    with pytest.raises(pk.PacketError, match="damaged"):
        pk.dearmor(damaged)
    with pytest.raises(pk.PacketError, match="damaged"):
        outline(damaged)


def test_recipient_check_holds_until_the_key_expires(corpus):
    data = corpus["primary_expired"].data
    expires = pysequoia.Cert.from_bytes(data).expiration
    assert expires is not None
    before = recipient_check(data, expires - timedelta(hours=1))
    assert before.problem is None
    assert before.live_key_ids
    assert before.valid_until == expires
    assert before.is_valid_at(expires - timedelta(seconds=1))
    assert not before.is_valid_at(expires)
    after = recipient_check(data, expires)
    assert after.problem is not None
    assert not after.live_key_ids
    assert after.valid_until <= expires + timedelta(days=1)


def test_stored_recipient_checks(store, corpus):
    data = corpus["cv25519"].data
    cert = pysequoia.Cert.from_bytes(data)
    check = recipient_check(bytes(cert))
    assert RecipientCheck.from_json(check.to_json()) == check
    too_long = {**check.to_json(), "valid_until": "9999-01-01T00:00:00+00:00"}
    for damaged in (None, [], {"digest": "x"}, {**check.to_json(), "checked_at": "yesterday"}, too_long):
        assert RecipientCheck.from_json(damaged) is None
    # A stored check that claims no live subkey for this certificate stops encryption.
    remember_recipient_checks([replace(check, live_key_ids=frozenset())])
    with pytest.raises(EncryptionError, match="no live encryption subkey"):
        encrypt_and_sign(b"x", [cert], store.signer())
    # A check stored for other bytes is never used for these.
    remember_recipient_checks([replace(check, digest="0" * 64, live_key_ids=frozenset())])
    remember_recipient_checks([replace(check, valid_until=check.checked_at)])
    assert encrypt_and_sign(b"x", [cert], store.signer())


@pytest.mark.parametrize("algorithm", ["zip", "zlib", "bzip2"])
def test_compression_bomb_is_refused_before_pysequoia(store, customer_gpg, monkeypatch, algorithm):
    gpg, fingerprint, cert = customer_gpg
    bomb = gpg.run(
        "--compress-algo", algorithm, "--compress-level", "9", "--encrypt", "--sign",
        "--recipient", store.current_fingerprint(), "--local-user", fingerprint,
        input=b"\0" * (32 * 1024 * 1024),
    ).stdout
    assert len(bomb) < 200_000

    def expand_nothing(*args, **kwargs):
        raise AssertionError("pysequoia was given the bomb")

    monkeypatch.setattr(pysequoia, "decrypt", expand_nothing)
    with pytest.raises(DecryptionError) as refused:
        decrypt(bomb, store, certificates_for=lambda ids: [cert], max_plaintext=1024 * 1024)
    assert refused.value.reason == "too_large"
    monkeypatch.undo()
    # Below the limit the same message decrypts as before.
    result = decrypt(bomb, store, certificates_for=lambda ids: [cert], max_plaintext=64 * 1024 * 1024)
    assert len(result.plaintext) == 32 * 1024 * 1024
    assert [signature.status for signature in result.signatures] == ["good"]


def test_expansion_counts_nested_layers():
    literal = pk.RawPacket(pk.TAG_LITERAL, b"b\x00\x00\x00\x00\x00" + b"x" * 1000).serialize()

    def compressed(packets: bytes) -> bytes:
        return pk.RawPacket(pk.TAG_COMPRESSED, b"\x02" + zlib.compress(packets)).serialize()

    assert inner._expanded(literal, 10_000, 0) == 1006
    assert inner._expanded(compressed(literal), 10_000, 0) == 1006
    assert inner._expanded(compressed(literal), 500, 0) > 500
    nested = literal
    for _ in range(inner.MAX_NESTING):
        nested = compressed(nested)
    assert inner._expanded(nested, 10_000, 0) == 1006
    assert inner._expanded(compressed(nested), 10_000, 0) == 10_001
    # A layer is never expanded past what is left of the limit.
    zeros = compressed(pk.RawPacket(pk.TAG_LITERAL, b"\0" * 50_000_000).serialize())
    assert len(zeros) < 100_000
    assert inner._expanded(zeros, 1_000_000, 0) == 1_000_001


def test_recipient_cert_uses_its_bytes(store, corpus):
    data = corpus["cv25519"].data
    cert = pysequoia.Cert.from_bytes(data)
    binary = bytes(cert)
    recipient = RecipientCert(cert, binary)
    assert recipient.fingerprint == cert.fingerprint
    message = encrypt_and_sign(b"x", [recipient], store.signer(), armor=False)
    assert {r.key_id for r in outline(message).recipients} & recipient_check(binary).live_key_ids
    # The check comes from the given bytes, without serializing the certificate.
    remember_recipient_checks([replace(recipient_check(binary), live_key_ids=frozenset())])
    with pytest.raises(EncryptionError, match="no live encryption subkey"):
        encrypt_and_sign(b"x", [recipient], store.signer())
