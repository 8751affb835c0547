"""What a mutt user sees: mutt 2.2 (GPGME) under tmux reads sealmail's mail.

The message lies in a Maildir with LF line endings, as an MDA stores it.
mutt runs in a detached tmux session of its own; the test sends keys and
reads the screen with ``capture-pane`` until the expected text appears,
so the checks are what a person would read on the terminal.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealmail.core.mime.compose import compose
from sealmail.core.mime.message import Attachment, Format, OutgoingMessage
from tests.interop.conftest import Provider
from tests.interop.keys import RecipientKey
from tests.support import require_tool

SUBJECT = "Ihre Rechnung für Dezember"
TEXT = "Grüße aus der Buchhaltung.\nFrom now on your invoices come encrypted.\nSumme: 42,00 €\n"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8 + b"\n%%EOF\n"

MUTTRC = """\
set crypt_use_gpgme = yes
set crypt_verify_sig = yes
set mbox_type = Maildir
set folder = {maildir}
set spoolfile = {maildir}
set header_cache = ""
set mailcap_path = /dev/null
set wait_key = no
set pager_stop = yes
ignore *
unignore from: to: subject: date:
"""


class MuttScreen:
    """mutt in a private tmux server; ``wait_for`` polls the visible screen."""

    def __init__(self, home: Path, gnupg_home: Path, maildir: Path) -> None:
        self.tmux = require_tool("tmux", "tmux")
        mutt = require_tool("mutt", "mutt")
        self.socket = f"sealmail-mutt-{uuid.uuid4().hex[:8]}"
        muttrc = home / "muttrc"
        muttrc.write_text(MUTTRC.format(maildir=maildir))
        command = (
            f"env GNUPGHOME={gnupg_home} HOME={home} TERM=xterm LANG=C.UTF-8 "
            f"{mutt} -n -F {muttrc} -f {maildir}"
        )
        self._tmux("new-session", "-d", "-x", "160", "-y", "80", command)

    def _tmux(self, *args: str) -> str:
        result = subprocess.run(
            [self.tmux, "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return result.stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p")

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", *keys)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if text in screen:
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{text!r} not on the mutt screen after {timeout} s:\n{screen}"
                )
            time.sleep(0.2)

    def close(self) -> None:
        subprocess.run(
            [self.tmux, "-L", self.socket, "kill-server"],
            capture_output=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def mutt_for(tmp_path: Path) -> Iterator:
    screens: list[MuttScreen] = []

    def start(key: RecipientKey, raw: bytes) -> MuttScreen:
        assert key.gnupg is not None
        maildir = tmp_path / "Maildir"
        for sub in ("cur", "new", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        # An MDA stores messages with LF line endings.
        (maildir / "new" / "1.sealmail:2,").write_bytes(raw.replace(b"\r\n", b"\n"))
        screen = MuttScreen(tmp_path, key.gnupg.home, maildir)
        screens.append(screen)
        return screen

    yield start
    for screen in screens:
        screen.close()


def invoice() -> OutgoingMessage:
    return OutgoingMessage(
        sender="Example Provider Billing <billing@provider.test>",
        to="Customer <cv25519@customer.test>",
        subject=SUBJECT,
        text=TEXT,
        attachments=(Attachment("rechnung-2026-12.pdf", "application/pdf", PDF),),
    )


@pytest.mark.parametrize("kind", ["cv25519", "rsa3072"])
def test_mutt_decrypts_pgpmime(
    kind: str, recipient_keys: dict[str, RecipientKey], provider: Provider, mutt_for
) -> None:
    key = recipient_keys[kind]
    composed = compose(
        invoice(), Format.PGPMIME, recipients=[key.certificate], signer=provider.signer
    )
    mutt = mutt_for(key, composed.data)

    index = mutt.wait_for("Example Provide")
    assert SUBJECT not in index  # the outer Subject is "..." until mutt decrypts
    mutt.keys("Enter")
    pager = mutt.wait_for("PGP message successfully decrypted.")

    assert (
        "Good signature from: Example Provider Billing <billing@provider.test>" in pager
    )
    assert "[-- The following data is PGP/MIME signed and encrypted --]" in pager
    for line in TEXT.splitlines():
        assert line in pager
    status_line = next(line for line in pager.splitlines() if "1/1:" in line)
    assert SUBJECT in status_line  # mutt shows the protected Subject

    mutt.keys("v")
    # The attachment menu has its own help line.
    attachments = mutt.wait_for("q:Exit  s:Save  |:Pipe")
    pdf_line = next(
        line for line in attachments.splitlines() if "rechnung-2026-12.pdf" in line
    )
    assert "[applica/pdf, base64" in pdf_line


def test_mutt_verifies_signed(
    recipient_keys: dict[str, RecipientKey], provider: Provider, mutt_for
) -> None:
    key = recipient_keys["cv25519"]
    composed = compose(invoice(), Format.SIGNED, signer=provider.signer)
    mutt = mutt_for(key, composed.data)

    index = mutt.wait_for("Example Provide")
    assert SUBJECT in index
    mutt.keys("Enter")
    pager = mutt.wait_for("[-- End signature information --]")

    assert (
        "Good signature from: Example Provider Billing <billing@provider.test>" in pager
    )
    assert "[-- The following data is signed --]" in pager
    for line in TEXT.splitlines():
        assert line in pager
