"""user_id_address: the address of a user ID, compared with GnuPG's reading."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sealmail.core.pgp.userid import user_id_address
from tests.support import missing, require_tool

# User IDs and the address GnuPG takes from each (None: no address).
CASES = [
    ("Sales <sales@provider.test>", "sales@provider.test"),
    ("sales@provider.test <support@provider.test>", "support@provider.test"),
    ("support@provider.test, sales@provider.test", None),
    ("Sales <Sales@Provider.TEST>", "sales@provider.test"),
    ("plain@provider.test", "plain@provider.test"),
    ("Plain@Provider.Test", "plain@provider.test"),
    ("<first@provider.test> <second@provider.test>", "first@provider.test"),
    ('"Quoted, Name" <q@provider.test>', "q@provider.test"),
    ("<x@provider.test>trailing text", "x@provider.test"),
    ("(comment) x@provider.test", None),
    ("x@provider.test (comment)", None),
    ("Name <x@provider.test", None),
    ("Name x@provider.test> more", None),
    ("<>", None),
    ("<@provider.test>", None),
    ("<x@>", None),
    ("<x@provider.test.>", None),
    ("<x y@provider.test>", None),
    ("<x@provider..test>", None),
    ("<x..y@provider.test>", "x..y@provider.test"),
    ("x..y@provider.test", None),
    ("<a@b@provider.test>", None),
    ("a+tag@provider.test", "a+tag@provider.test"),
    ("a!b@provider.test", "a!b@provider.test"),
    ("a@pro!vider.test", None),
    ("<a@pro!vider.test>", "a@pro!vider.test"),
    ("Jörg <jörg@exämple.test>", "jörg@exämple.test"),
    ("JÖRG@EXÄMPLE.TEST", "jÖrg@exÄmple.test"),
    ("no address at all", None),
]


@pytest.mark.parametrize(("user_id", "expected"), CASES)
def test_user_id_address(user_id: str, expected: str | None) -> None:
    assert user_id_address(user_id) == expected


def test_user_id_ends_at_nul() -> None:
    assert user_id_address("sales@provider.test\0<support@provider.test>") == (
        "sales@provider.test"
    )


def wks_client() -> Path:
    """Return gpg-wks-client, which GnuPG installs beside its helper programs."""
    gpgconf = require_tool("gpgconf", "gpgconf")
    directory = subprocess.run(
        [gpgconf, "--list-dirs", "libexecdir"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    path = Path(directory) / "gpg-wks-client"
    if not path.exists():
        missing(f"{path}", "install the Debian package 'gpg-wks-client'")
    return path


@pytest.mark.parametrize(("user_id", "expected"), CASES)
def test_gnupg_reads_same_address(user_id: str, expected: str | None) -> None:
    """gpg-wks-client --print-wkd-hash prints the address that GnuPG takes."""
    result = subprocess.run(
        [wks_client(), "--print-wkd-hash", user_id],
        capture_output=True,
        timeout=30,
        check=False,
    )
    output = result.stdout.decode("utf-8").split()
    if expected is None:
        assert result.returncode != 0
        assert output == []
    else:
        assert result.returncode == 0
        assert output[1:] == [expected]
