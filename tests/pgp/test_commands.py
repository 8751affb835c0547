"""The `sealmail key inspect` and `sealmail orgkey` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from io import StringIO

import pysequoia
import pytest
from django.core.management import call_command
from django.test import override_settings

from sealmail.keys.store import get_keystore


def sealmail(*args: str, input: bytes = b"", env: dict[str, str] | None = None):
    return subprocess.run(
        [sys.executable, "-m", "sealmail", *args],
        input=input, capture_output=True, timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_key_inspect_usable_json(corpus, tmp_path):
    path = tmp_path / "key.asc"
    path.write_bytes(corpus["cv25519"].data)
    result = sealmail("key", "inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["usable"] is True
    assert report["fingerprint"] == corpus["cv25519"].fingerprint.lower()
    assert report["version"] == 4
    assert report["usable_until"] is not None
    assert report["user_ids"] == ["cv25519@corpus.test"]
    assert report["warnings"] == []


def test_key_inspect_rejected_from_stdin(corpus):
    result = sealmail("key", "inspect", "-", "--json", input=corpus["secret_armored"].data)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["usable"] is False
    assert report["reason"] == "secret_key"
    assert "exposed" in report["message"]
    assert b"PRIVATE KEY" not in result.stdout + result.stderr


def test_key_inspect_readable_report(corpus, tmp_path):
    path = tmp_path / "key.asc"
    path.write_bytes(corpus["two_subkeys_one_expired"].data)
    result = sealmail("key", "inspect", str(path))
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "usable       yes" in text
    assert "expired on 2024-01-01" in text


def test_key_inspect_escapes_user_ids(tmp_path):
    tsk = pysequoia.Tsk.generate("plain@customer.test", profile=pysequoia.Profile.RFC4880)
    forged = "x\nusable       yes\x1b[2J\u202e <forged@customer.test>"
    certificate = tsk.extract_certificate().add_user_id(forged, tsk.certifier())
    path = tmp_path / "key.pgp"
    path.write_bytes(bytes(certificate))
    result = sealmail("key", "inspect", str(path))
    assert result.returncode == 0
    text = result.stdout.decode()
    assert [line for line in text.splitlines() if line.startswith("usable  ")] == [
        "usable       yes"
    ]
    assert "\x1b" not in text
    assert "\u202e" not in text
    assert "x\\x0ausable       yes\\x1b[2J\\u202e <forged@customer.test>" in text


def test_key_inspect_usage_errors(tmp_path):
    assert sealmail("key", "inspect").returncode == 2
    missing = sealmail("key", "inspect", str(tmp_path / "absent.asc"))
    assert missing.returncode == 2
    assert b"absent.asc" in missing.stderr


def test_orgkey_lifecycle(tmp_path):
    keys = tmp_path / "keys"
    out = StringIO()
    with override_settings(KEYS_DIR=keys, SEALMAIL_FROM="billing@provider.test",
                           SEALMAIL_ROLE_ADDRESSES=["support@provider.test"]):
        call_command("orgkey", "generate", "--if-missing", stdout=out)
        call_command("orgkey", "generate", "--if-missing", stdout=out)
        store = get_keystore()
        first = store.current_fingerprint()
        assert out.getvalue().count("generated provider key") == 1
        assert [str(uid) for uid in store.certificate().user_ids] == [
            "<billing@provider.test>", "<support@provider.test>",
        ]

        exported = StringIO()
        call_command("orgkey", "export", stdout=exported)
        assert exported.getvalue().startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
        assert "PRIVATE" not in exported.getvalue()

        call_command("orgkey", "rotate", stdout=out)
        assert store.current_fingerprint() != first

        call_command("orgkey", "generate", "--role", "support@provider.test", stdout=out)
        listing = StringIO()
        call_command("orgkey", "list", "--json", stdout=listing)
        rows = json.loads(listing.getvalue())
        assert [row["current"] for row in rows].count(True) == 1
        assert {row["role"] for row in rows} == {None, "support@provider.test"}
        assert any(row["fingerprint"] == first and row["retired"] for row in rows)

        role_export = StringIO()
        call_command("orgkey", "export", "--role", "support@provider.test", stdout=role_export)
        assert role_export.getvalue() != exported.getvalue()


def test_get_keystore_is_shared(tmp_path):
    with override_settings(KEYS_DIR=tmp_path / "keys"):
        store = get_keystore()
        assert get_keystore() is store
        store.generate(["<billing@provider.test>"])
        assert get_keystore().signer() is store.signer()
    with override_settings(KEYS_DIR=tmp_path / "other"):
        assert get_keystore() is not store


def test_orgkey_import_from_file(tmp_path, customer):
    gpg, _ = customer
    fingerprint = gpg.generate("import@provider.test", "future-default", "never")
    key_file = tmp_path / "secret.asc"
    key_file.write_bytes(gpg.export(fingerprint, secret=True))
    out = StringIO()
    with override_settings(KEYS_DIR=tmp_path / "keys"):
        call_command("orgkey", "import", str(key_file), stdout=out)
        assert get_keystore().current_fingerprint() == fingerprint.lower()
    assert fingerprint in out.getvalue()


def test_orgkey_import_rejects_public(tmp_path, corpus):
    from django.core.management.base import CommandError

    key_file = tmp_path / "public.asc"
    key_file.write_bytes(corpus["cv25519"].data)
    with override_settings(KEYS_DIR=tmp_path / "keys"):
        with pytest.raises(CommandError) as failed:
            call_command("orgkey", "import", str(key_file))
    assert "public key" in str(failed.value)
