"""Key intake verdicts on the corpus, compared with GnuPG 2.2 and sq 0.27."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pysequoia
import pytest

from sealmail.core.errors import KeyRejected
from sealmail.core.pgp.inspect import MAX_USER_IDS, check_certificate, inspect_key
from tests.peers.gnupg import GnuPG, show_keys
from tests.pgp.corpus import FLOOD_CERTIFICATIONS, NOT_COMPARED, UNREADABLE, USABLE, CorpusKey

NAMES = [
    "cv25519", "rsa2048", "rsa3072", "rsa4096", "rsa1024", "v6", "no_user_id",
    "two_subkeys_one_expired", "only_subkey_expired", "subkey_reextended",
    "primary_expired", "revoked", "encryption_subkey_revoked", "revoked_user_id",
    "sha1_self_signatures", "sha1_preferences", "sign_only", "created_in_future",
    "secret_armored", "secret_binary", "secret_relabelled_public", "two_keys",
    "garbage_1mb", "garbage_over_1mb", "flooded",
]


def verdict(key: CorpusKey) -> str | None:
    try:
        inspect_key(key.data)
    except KeyRejected as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("name", NAMES)
def test_corpus_verdict(corpus, name):
    key = corpus[name]
    assert verdict(key) == key.reason


@pytest.mark.parametrize("name", NAMES)
def test_corpus_agrees_with_gnupg(corpus, name, gpg_home):
    key = corpus[name]
    if key.gpg == NOT_COMPARED:
        pytest.skip(key.difference)
    gpg = show_keys(key.data, gpg_home)
    if key.gpg == UNREADABLE:
        assert gpg is None or not gpg.can_encrypt, key.difference
        return
    assert gpg is not None, f"GnuPG could not read {name}"
    assert gpg.can_encrypt == (key.gpg == USABLE), gpg.output
    if not key.difference:
        assert gpg.can_encrypt == (key.reason is None), gpg.output


@pytest.mark.parametrize("name", NAMES)
def test_corpus_agrees_with_sq(corpus, name, sq):
    key = corpus[name]
    if key.sq == NOT_COMPARED:
        pytest.skip(key.difference)
    result = sq.inspect(key.data)
    if key.sq == UNREADABLE:
        assert result is None or not result.can_encrypt, key.difference
        return
    assert result is not None, f"sq could not read {name}"
    assert result.can_encrypt == (key.sq == USABLE), result.output
    if not key.difference:
        assert result.can_encrypt == (key.reason is None), result.output


def test_report_fields_for_rsa4096(corpus):
    report = inspect_key(corpus["rsa4096"].data)
    assert report.fingerprint == corpus["rsa4096"].fingerprint.lower()
    assert report.version == 4
    assert report.algorithm == "rsa4096"
    assert report.key_size == 4096
    assert "RSA Corpus <rsa4096-second@corpus.test>" in report.user_ids
    assert report.expires is not None
    assert report.usable_until == report.expires
    assert report.encryption_subkeys[0].key_size == 4096


def test_report_on_two_subkeys(corpus):
    report = inspect_key(corpus["two_subkeys_one_expired"].data)
    states = sorted((sub.usable, sub.problem or "") for sub in report.encryption_subkeys)
    assert len(states) == 2
    assert states[0][0] is False
    assert "expired on 2024-01-01" in states[0][1]
    assert states[1] == (True, "")
    assert report.usable_until is None


def test_reextended_subkey_uses_new_binding(corpus):
    report = inspect_key(corpus["subkey_reextended"].data)
    (sub,) = report.encryption_subkeys
    assert sub.usable
    assert sub.expires is not None
    assert sub.expires > datetime.now(timezone.utc) + timedelta(days=365)
    assert report.usable_until == sub.expires


def test_rejection_messages_name_details(corpus):
    with pytest.raises(KeyRejected) as expired:
        inspect_key(corpus["primary_expired"].data)
    assert "2024-01-01" in expired.value.message
    with pytest.raises(KeyRejected) as subkey:
        inspect_key(corpus["only_subkey_expired"].data)
    assert "expired on 2024-01-01" in subkey.value.message
    with pytest.raises(KeyRejected) as two:
        inspect_key(corpus["two_keys"].data)
    assert corpus["cv25519"].fingerprint[:4] in two.value.message
    assert corpus["rsa2048"].fingerprint[:4] in two.value.message
    with pytest.raises(KeyRejected) as sha1:
        inspect_key(corpus["sha1_self_signatures"].data)
    assert "SHA-1" in sha1.value.message
    with pytest.raises(KeyRejected) as rsa:
        inspect_key(corpus["rsa1024"].data)
    assert "1024" in rsa.value.message


def test_secret_key_message_says_exposed(corpus):
    with pytest.raises(KeyRejected) as rejected:
        inspect_key(corpus["secret_relabelled_public"].data)
    assert "exposed" in rejected.value.message
    assert "PRIVATE" not in rejected.value.message


def test_revoked_user_id_not_listed(corpus):
    report = inspect_key(corpus["revoked_user_id"].data)
    assert report.user_ids == ["Kept <kept@corpus.test>"]


def test_no_user_id_warns(corpus):
    report = inspect_key(corpus["no_user_id"].data)
    assert report.user_ids == []
    assert any("no user ID" in warning for warning in report.warnings)


def test_v6_report(corpus):
    report = inspect_key(corpus["v6"].data)
    assert report.version == 6
    assert len(report.fingerprint) == 64
    assert report.encryption_subkeys[0].algorithm == "x25519"


def test_sha1_preferences_warn(corpus):
    report = inspect_key(corpus["sha1_preferences"].data)
    assert any("SHA-1" in warning for warning in report.warnings)


def test_flooded_key_stripped_in_bounded_time(corpus):
    data = corpus["flooded"].data
    assert len(data) < 1024 * 1024
    start = time.perf_counter()
    report = inspect_key(data)
    elapsed = time.perf_counter() - start
    assert report.removed_certifications == FLOOD_CERTIFICATIONS
    assert len(report.certificate) < 2000
    # Generous bound for a loaded CI machine; the benchmark page has real numbers.
    assert elapsed < 5


def test_stripped_certificate_round_trips(corpus):
    report = inspect_key(corpus["flooded"].data)
    again = check_certificate(report.certificate)
    assert again.fingerprint == report.fingerprint
    assert again.removed_certifications == 0
    cert = pysequoia.Cert.from_bytes(report.certificate)
    assert cert.fingerprint == report.fingerprint


def test_check_certificate_at_later_time(corpus):
    report = inspect_key(corpus["rsa3072"].data)
    assert report.usable_until is not None
    later = report.usable_until + timedelta(days=1)
    with pytest.raises(KeyRejected) as rejected:
        check_certificate(report.certificate, now=later)
    assert rejected.value.reason == "expired"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"   \n", "malformed"),
        ("not a key at all", "malformed"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n", "malformed"),
        (b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!notbase64\n-----END PGP PUBLIC KEY BLOCK-----\n", "malformed"),
    ],
)
def test_malformed_inputs(data, reason):
    with pytest.raises(KeyRejected) as rejected:
        inspect_key(data)
    assert rejected.value.reason == reason


def test_damaged_armor_checksum(corpus):
    armored = corpus["cv25519"].data.decode()
    lines = armored.splitlines()
    checksum_index = next(i for i, line in enumerate(lines) if line.startswith("="))
    body_line = checksum_index - 1
    flipped = lines[body_line][:-2] + ("A" if lines[body_line][-2] != "A" else "B") + lines[body_line][-1]
    lines[body_line] = flipped
    with pytest.raises(KeyRejected) as rejected:
        inspect_key("\n".join(lines))
    assert rejected.value.reason == "malformed"


def test_truncated_binary_key(corpus):
    binary = pysequoia.Cert.from_bytes(corpus["cv25519"].data)
    with pytest.raises(KeyRejected) as rejected:
        inspect_key(bytes(binary)[:-10])
    assert rejected.value.reason == "malformed"


def certificate_with_user_ids(count: int) -> bytes:
    tsk = pysequoia.Tsk.generate("Many <many0@customer.test>", profile=pysequoia.Profile.RFC4880)
    certificate = tsk.extract_certificate()
    certifier = tsk.certifier()
    for number in range(1, count):
        certificate = certificate.add_user_id(f"Many <many{number}@customer.test>", certifier)
    return bytes(certificate)


def test_too_many_user_ids_rejected():
    with pytest.raises(KeyRejected) as caught:
        inspect_key(certificate_with_user_ids(MAX_USER_IDS + 1))
    assert caught.value.reason == "too_large"
    assert f"{MAX_USER_IDS + 1} user IDs" in caught.value.message
    assert "export-minimal" in caught.value.message


def test_user_id_limit_itself_accepted():
    report = inspect_key(certificate_with_user_ids(MAX_USER_IDS))
    assert len(report.user_ids) == MAX_USER_IDS


def test_dsa_elgamal_key_is_weak_algorithm(tmp_path):
    gpg = GnuPG(tmp_path / "gnupg")
    gpg.run("--quick-generate-key", "DSA <dsa@customer.test>", "dsa2048", "sign", "1y")
    fingerprint = gpg.fingerprint("dsa@customer.test")
    gpg.run("--quick-add-key", fingerprint, "elg2048", "encr", "1y")
    with pytest.raises(KeyRejected) as caught:
        inspect_key(gpg.export("dsa@customer.test"))
    assert caught.value.reason == "weak_algorithm"
    assert "DSA" in caught.value.message
