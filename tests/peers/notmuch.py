"""notmuch (GMime and GPGME, Debian 12: notmuch 0.37) as a mail client.

The message is delivered into a Maildir, indexed, and read back with
``notmuch show --decrypt=true``; GPGME uses the GnuPG home that contains the
customer's secret key.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.support import require_tool


class Notmuch:
    def __init__(self, home: Path, gnupg_home: Path) -> None:
        self.binary = require_tool("notmuch", "notmuch")
        self.home = Path(home)
        self.maildir = self.home / "mail"
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        self.config = self.home / "notmuch-config"
        self.config.write_text(
            f"[database]\npath={self.maildir}\n"
            "[user]\nname=Customer\nprimary_email=customer@example.test\n"
            "[new]\ntags=unread;inbox;\n"
            "[crypto]\n"
        )
        self.env = {
            **os.environ,
            "GNUPGHOME": str(gnupg_home),
            "NOTMUCH_CONFIG": str(self.config),
            "HOME": str(self.home),
        }
        self.count = 0

    def _run(self, *args: str) -> bytes:
        proc = subprocess.run(
            [self.binary, *args], capture_output=True, timeout=60, env=self.env
        )
        if proc.returncode != 0:
            raise AssertionError(
                f"notmuch {' '.join(args)} failed ({proc.returncode}):\n"
                + proc.stderr.decode("utf-8", "replace")
            )
        return proc.stdout

    def deliver(self, message: bytes) -> None:
        self.count += 1
        (self.maildir / "new" / f"{self.count}.sealmail:2,").write_bytes(message)
        self._run("new", "--quiet")

    def show(self, message_id: str) -> dict[str, Any]:
        """Return the message as ``notmuch show --format=json`` decrypts it."""
        output = self._run(
            "show",
            "--format=json",
            "--decrypt=true",
            "--include-html",
            "--entire-thread=false",
            f"id:{message_id.strip('<>')}",
        )
        return json.loads(output)[0][0][0]

    def part(self, message_id: str, number: int) -> bytes:
        """Return the decoded content of MIME part ``number``."""
        return self._run(
            "show",
            "--format=raw",
            "--decrypt=true",
            f"--part={number}",
            f"id:{message_id.strip('<>')}",
        )
