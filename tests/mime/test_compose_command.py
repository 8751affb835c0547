"""``sealmail compose`` writes what a customer would receive."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.mime import mailcheck
from tests.mime.engines import make_peer


@pytest.fixture
def files(tmp_path, provider, customer_keys) -> dict[str, Path]:
    paths = {
        "recipient": tmp_path / "customer.asc",
        "signing": tmp_path / "provider-secret.asc",
        "text": tmp_path / "body.txt",
        "html": tmp_path / "body.html",
        "pdf": tmp_path / "Rechnung März.pdf",
    }
    paths["recipient"].write_bytes(customer_keys["cv25519"].armored_certificate)
    paths["signing"].write_text(str(provider.tsk))
    paths["text"].write_text("Grüße, 5 €\nFrom us.\n", encoding="utf-8")
    paths["html"].write_text("<p>Grüße, 5 &euro;</p>", encoding="utf-8")
    paths["pdf"].write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    return paths


def run_compose(*args: str) -> bytes:
    out = io.StringIO()
    call_command("compose", *args, stdout=out)
    return out.getvalue().encode("ascii")


def base_args(files: dict[str, Path], fmt: str) -> list[str]:
    return [
        "--recipient-key",
        str(files["recipient"]),
        "--signing-key",
        str(files["signing"]),
        "--from",
        mailcheck.SENDER,
        "--to",
        "Jürgen Müller <customer@customer.test>",
        "--subject",
        "Ihre Rechnung",
        "--text",
        str(files["text"]),
        "--html",
        str(files["html"]),
        "--attach",
        str(files["pdf"]),
        "--format",
        fmt,
    ]


@pytest.mark.parametrize("fmt", ["pgpmime", "inline", "signed", "plain"])
def test_compose_command_writes_each_format(
    fmt, files, provider, customer_keys, tmp_path
):
    raw = run_compose(*base_args(files, fmt))
    parsed = mailcheck.parse(raw)
    assert parsed["From"].addresses[0].addr_spec == "billing@provider.test"
    assert parsed["Subject"] == (
        "..." if fmt in ("pgpmime", "inline") else "Ihre Rechnung"
    )
    peer = make_peer("gpg", customer_keys["cv25519"], provider, tmp_path / "gpg")
    if fmt == "pgpmime":
        _, parts = mailcheck.split_raw(raw)
        inner = mailcheck.parse(peer.decrypt(mailcheck.part_body(parts[1])).plaintext)
        names = [part.get_filename() for part in inner.iter_attachments()]
        assert names == ["Rechnung März.pdf"]
        assert (
            inner.get_body(("plain",))
            .get_content()
            .startswith("Subject: Ihre Rechnung")
        )
    elif fmt == "signed":
        _, (entity, signature) = mailcheck.split_raw(raw)
        assert peer.verify_detached(entity, mailcheck.part_body(signature)).valid
    elif fmt == "plain":
        text = mailcheck.parse(raw).get_body(("plain",)).get_content()
        assert text.replace("\r\n", "\n") == "Grüße, 5 €\nFrom us.\n"


def test_compose_command_show_subject(files):
    raw = run_compose(*base_args(files, "pgpmime"), "--show-subject")
    assert mailcheck.parse(raw)["Subject"] == "Ihre Rechnung"


def test_compose_command_writes_crlf_bytes(files, data_dir):
    command = [
        sys.executable,
        "-m",
        "sealmail",
        "compose",
        *base_args(files, "signed"),
    ]
    proc = subprocess.run(
        command, capture_output=True, timeout=60, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.startswith(b"From: ")
    assert b"\n" not in proc.stdout.replace(b"\r\n", b"")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("--recipient-key", "/nonexistent/key.asc"), "cannot read the recipient key"),
        (("--format", "pgpmime", "--to", "nobody"), "missing a local part or domain"),
    ],
)
def test_compose_command_reports_bad_input(change, expected, files):
    args = base_args(files, "pgpmime")
    for i in range(0, len(change), 2):
        index = args.index(change[i])
        args[index + 1] = change[i + 1]
    with pytest.raises(CommandError, match=expected):
        run_compose(*args)


def test_compose_command_rejects_public_signing_key(files):
    args = base_args(files, "signed")
    args[args.index("--signing-key") + 1] = str(files["recipient"])
    with pytest.raises(CommandError, match="without secret key material"):
        run_compose(*args)


def test_compose_command_needs_recipient_for_pgpmime(files):
    args = base_args(files, "pgpmime")
    del args[0:2]
    with pytest.raises(CommandError, match="at least one recipient"):
        run_compose(*args)


def test_compose_command_requires_signing_key(files):
    args = base_args(files, "plain")
    index = args.index("--signing-key")
    del args[index : index + 2]
    with pytest.raises(CommandError, match="--signing-key"):
        run_compose(*args)
