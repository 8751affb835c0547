"""Fuzz the inbound parser: arbitrary and mutated messages never raise."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealmail.core.mime.inbound import parse_message
from sealmail.core.mime.inbound.openpgp import SequoiaOpenPGP
from sealmail.core.pgp.keystore import KeyStore
from tests.inbound import shapes

FRAGMENTS = [
    b"Content-Type: multipart/mixed; boundary=b\r\n",
    b"Content-Type: multipart/encrypted; boundary=b; protocol=application/pgp-encrypted\r\n",
    b'Content-Type: multipart/signed; boundary=b; protocol="application/pgp-signature"\r\n',
    b"Content-Type: message/rfc822\r\n",
    b"Content-Type: application/pgp-encrypted\r\n",
    b"Content-Type: text/plain; charset=x-unknown\r\n",
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b'Content-Disposition: attachment; filename="a.pgp"\r\n',
    b"Content-Disposition: attachment; filename*=utf-8''%FF%00.gpg\r\n",
    b"Subject: =?utf-8?q?=FF?=\r\n",
    b"\r\n",
    b"--b\r\n",
    b"--b--\r\n",
    b"Version: 1\r\n",
    b"-----BEGIN PGP MESSAGE-----\r\n",
    b"-----END PGP MESSAGE-----\r\n",
    b"-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\n",
    b"-----BEGIN PGP SIGNATURE-----\r\n",
    b"-----END PGP SIGNATURE-----\r\n",
    b"\xa0\xc2\xa0 \t",
    b"wcBMA5ZCUNWx6iXpAQf/ZRZXZhAZvCdnECNbVxat\r\n",
    b"\x85\x01\x0c\x03",
]


@pytest.fixture(scope="module")
def openpgp(tmp_path_factory):
    store = KeyStore(tmp_path_factory.mktemp("fuzz-keys"))
    store.generate(["support@provider.test"])
    return SequoiaOpenPGP(store, lambda key_ids: [], max_plaintext_bytes=1 << 20)


def _check(raw: bytes, openpgp) -> None:
    parsed = parse_message(raw, openpgp)
    assert isinstance(parsed.defects, list)
    for part in parsed.parts:
        assert isinstance(part.content, bytes)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(openpgp, raw):
    _check(raw, openpgp)


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=40), max_size=40))
def test_mime_fragments_never_raise(openpgp, fragments):
    _check(b"".join(fragments), openpgp)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.data())
def test_mutated_message_never_raises(openpgp, data):
    raw = bytearray(
        shapes.multipart(
            "mixed",
            [shapes.text_entity("hello\n"), b"Content-Type: text/html\r\n\r\n<b>x</b>"],
            "b",
        )
    )
    for _ in range(data.draw(st.integers(0, 10))):
        position = data.draw(st.integers(0, len(raw) - 1))
        raw[position] = data.draw(st.integers(0, 255))
    _check(bytes(raw), openpgp)
